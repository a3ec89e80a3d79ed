"""The one symbol normaliser of every intake: the ticker an alert or a strategy names -> what one account trades.

Webhook alerts (one account or a fan-out) and strategy signals all pass through `for_account`, so a ticker
means the same position whoever names it. `symbol_for` does the naming: the exchange prefix goes and the
name is upper-cased (`CME_MINI:nq1!` -> `NQ1!`), then the account's symbol map (by futures root, else by
whole symbol: `NQ` -> `MNQ` keeps the contract suffix, `NQ1!` -> `MNQ1!`), then one name per contract: a
dated front contract becomes its continuous alias (`ESZ6` -> `ES1!`), the name the brokers report its
position under, so `ES1!` and `ESZ6` build one position; the broker resolves the alias to the contract.

Sizes: the quantity times the leg's multiplier and the map's ratio. Entries round down (a zero result is
SKIPPED with the reason, never sent), exits round up (an exit never trades more than the position held,
and rounding it to zero would leave the position open). A scale of exactly 1 keeps the quantity as named.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

from brokers.base import UnknownSymbol
from brokers.symbols import front_alias, futures_root, normalize, split_exchange
from config.groups import Leg, SymbolMapping
from daemon.domain import Action, Intent, SignalStatus
from daemon.store.repository import FanoutChild

ONE = Decimal(1)


def normalize_ticker(ticker: str) -> str:
    """`NASDAQ:AAPL` -> `AAPL`, `CME_MINI:ES1!` -> `ES1!`; upper case."""
    return split_exchange(ticker)[1]


def engine_symbol(symbol: str, on: date) -> str:
    """One name per contract: `ESZ6` -> `ES1!` while it is the front contract; anything else as it is."""
    return front_alias(symbol, on) or symbol


def contract_of(symbol: str, on: date) -> str | None:
    """The dated contract a continuous ticker means on `on` (`NQ1!` -> `NQZ6`), None for anything else."""
    if futures_root(symbol) is None:
        return None
    try:
        return normalize(symbol, on=on)
    except UnknownSymbol:
        return None


def map_symbol(symbol: str, symbol_map: Mapping[str, SymbolMapping]) -> tuple[str, Decimal]:
    """The symbol traded instead (by futures root, else by whole symbol) and its ratio; unmapped: (symbol, 1)."""
    root = futures_root(symbol)
    if root is not None and root in symbol_map:
        mapping = symbol_map[root]
        return mapping.to + symbol[len(root):], mapping.ratio
    if symbol in symbol_map:
        mapping = symbol_map[symbol]
        return mapping.to, mapping.ratio
    return symbol, ONE


def symbol_for(ticker: str, symbol_map: Mapping[str, SymbolMapping], on: date) -> tuple[str, Decimal]:
    """The engine symbol an account trades for `ticker`, and how many of it per unit named."""
    symbol, ratio = map_symbol(normalize_ticker(ticker), symbol_map)
    return engine_symbol(symbol, on), ratio


def _scaled(value: Decimal, scale: Decimal, rounding: str) -> Decimal:
    if scale == ONE:
        return value
    magnitude = (abs(value) * scale).to_integral_value(rounding=rounding)
    return magnitude if value >= 0 else -magnitude


def for_account(parent: Intent, leg: Leg, on: date, *, signal_id: str | None = None) -> FanoutChild:
    """The Intent of one leg, PENDING, or SKIPPED with the reason; `route` says how it was derived."""
    symbol, ratio = symbol_for(parent.symbol, leg.symbol_map, on) if parent.symbol else ("", ONE)
    scale = leg.multiplier * ratio
    exit_rounding = ROUND_CEILING if parent.action is Action.EXIT else ROUND_DOWN
    quantity = None if parent.quantity is None else _scaled(parent.quantity, scale, exit_rounding)
    target = None if parent.target_position is None else _scaled(parent.target_position, scale, ROUND_DOWN)
    route: dict[str, Any] = {"ticker": parent.symbol, "symbol": symbol, "contract": contract_of(symbol, on),
                             "multiplier": str(leg.multiplier), "ratio": str(ratio),
                             "quantity": None if quantity is None else str(quantity),
                             "target_position": None if target is None else str(target)}
    reason = None
    if not leg.enabled:
        reason = "account disabled"
    elif leg.multiplier == 0:
        reason = "multiplier 0"
    elif quantity is not None and parent.quantity is not None and quantity == 0:
        reason = f"quantity {parent.quantity.normalize():f} x {scale.normalize():f} rounds down to 0"
    intent = parent.model_copy(update={
        "signal_id": signal_id or f"{parent.signal_id}-{leg.account}", "account": leg.account,
        "symbol": symbol, "quantity": quantity, "target_position": target,
    })
    status = SignalStatus.PENDING if reason is None else SignalStatus.SKIPPED
    return FanoutChild(intent=intent, status=status, reason=reason, route=route)
