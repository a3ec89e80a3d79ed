"""ProjectX contracts: a ticker to the gateway's contract (`MES1!` -> `MESZ6`), a contract id to the engine's ticker.

Contracts are cached for the life of the adapter. Orders, positions and fills of the current front-month
contract are reported under the continuous ticker (`ES1!`), other contracts under their name (`ESH7`), so
they match the symbols of the signals that traded them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from brokers.base import BrokerError, UnknownSymbol
from brokers.projectx import models as px
from brokers.projectx.session import ProjectXSession
from brokers.symbols import POINT_VALUES, normalize, symbol_root

log = logging.getLogger(__name__)


class Contracts:
    """Contract lookups of one adapter (see the module docstring)."""

    def __init__(self, session: ProjectXSession, clock: Callable[[], datetime]) -> None:
        self.session, self.clock = session, clock
        self._by_id: dict[str, px.PxContract] = {}
        self._by_name: dict[str, px.PxContract] = {}

    def _cache(self, contract: px.PxContract) -> px.PxContract:
        self._by_id[contract.id] = self._by_name[contract.name.upper()] = contract
        return contract

    async def for_ticker(self, ticker: str) -> px.PxContract:
        """The contract a TradingView ticker means today; `UnknownSymbol` if the gateway has none."""
        name = normalize(ticker, on=self.clock().date())
        if name in self._by_name:
            return self._by_name[name]
        answer = await self.session.post("/api/Contract/search", {"searchText": name, "live": False},
                                         px.ContractsAnswer, what=f"projectx contract {name}", safe=True)
        for contract in answer.contracts or []:
            if contract.name.upper() == name:
                return self._cache(contract)
        raise UnknownSymbol(f"{ticker}: ProjectX has no contract {name}; nothing was sent")

    async def by_id(self, contract_id: str) -> px.PxContract | None:
        if contract_id not in self._by_id:
            answer = await self.session.post("/api/Contract/searchById", {"contractId": contract_id},
                                             px.ContractAnswer, what=f"projectx contract {contract_id}", safe=True)
            if answer.contract is not None:
                self._cache(answer.contract)
        return self._by_id.get(contract_id)

    async def symbol_of(self, contract_id: str) -> str:
        """`ES1!` for the current front-month contract of an index root, else the contract name (`ESH7`)."""
        try:
            contract = await self.by_id(contract_id)
        except BrokerError:
            contract = None
        if contract is None:
            return contract_id
        return px.display_symbol(contract.name, self.clock().date())

    def multiplier(self, symbol: str) -> Decimal:
        """Point value from the shared table, else from a contract of that root seen (tick value / size)."""
        root = symbol_root(symbol)
        if root in POINT_VALUES:
            return POINT_VALUES[root]
        for contract in self._by_id.values():
            if symbol_root(contract.name) == root:
                return contract.point_value
        log.warning("projectx: no point value known for %s; using 1", symbol)
        return Decimal(1)
