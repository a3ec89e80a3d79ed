"""Tradovate contracts: a ticker to its contract (`ES1!` -> `ESZ6` -> id), a contract id to the engine's ticker.

Contract names and ids are cached for the life of the adapter. A contract is reported under the ticker the
engine last traded it by (`aliases`, kept in the order journal) while that ticker still means it, else as
`ES1!` while it is the front contract, else under its own name (`ESZ6`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from brokers.base import UnknownSymbol
from brokers.symbols import RollRule, engine_symbol, normalize, split_exchange
from brokers.tradovate.models import TvContract, parse
from brokers.tradovate.session import TradovateSession


class Contracts:
    """Contract lookups of one adapter (see the module docstring)."""

    def __init__(self, session: TradovateSession, clock: Callable[[], datetime], roll: RollRule,
                 aliases: dict[str, str]) -> None:
        self.session, self.clock, self.roll = session, clock, roll
        self.aliases = aliases  # contract name -> the ticker the engine last used for it
        self._ids: dict[str, int] = {}
        self._names: dict[int, str] = {}

    def _cache(self, contract: TvContract) -> None:
        self._ids[contract.name], self._names[contract.id] = contract.id, contract.name

    async def resolve(self, ticker: str) -> tuple[str, int, str]:
        """(contract name, contract id, ticker as the engine names it); UnknownSymbol before any order."""
        display = split_exchange(ticker)[1]
        name = normalize(ticker, on=self.clock().date(), rule=self.roll)
        if name not in self._ids:
            what = f"tradovate contract {name}"
            try:
                data = await self.session.get("/contract/find", what, UnknownSymbol, name=name)
            except UnknownSymbol:
                data = None
            if not isinstance(data, dict) or not data.get("id"):
                raise UnknownSymbol(f"{display}: Tradovate has no contract {name}; nothing was sent")
            self._cache(parse(TvContract, data, what))
        return name, self._ids[name], display

    async def name(self, contract_id: int) -> str:
        if contract_id not in self._names:
            data = await self.session.get("/contract/item", f"tradovate contract #{contract_id}", UnknownSymbol,
                                          id=contract_id)
            self._cache(parse(TvContract, data, "contract"))
        return self._names[contract_id]

    def display(self, name: str) -> str:
        """`ESZ6` as `ES1!` while it is the front contract (or the ticker last used for it), else `ESZ6`."""
        return engine_symbol(name, self.aliases.get(name), self.clock().date(), self.roll)

    async def symbol_of(self, contract_id: int) -> str:
        """The ticker a contract is reported under (see `display`)."""
        return self.display(await self.name(contract_id))
