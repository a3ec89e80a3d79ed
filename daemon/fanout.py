"""One alert, many accounts: each leg's own Intent (size, symbol map, engine symbol) and the route it took.

`plan(parent, targets, on)` turns the parent Intent of an alert and its `config.groups.Targets` into one
`FanoutChild` per account. A child is an ordinary Intent for one account, so the planner, risk check, worker,
restart recovery and client order id work on it unchanged; its signal id is the parent's plus the account, its
dedup key the parent's (the client order id derives from account + dedup key, so it differs per account and a
resend of the alert is a duplicate for every child).

Sizes: the alerted quantity times the leg's multiplier and the symbol map's ratio. Entries round down (a zero
result is SKIPPED with the reason, never sent), exits round up (an exit never trades more than the position
held, and rounding it to zero would leave the position open). A scale of exactly 1 keeps the quantity as
alerted. Symbols: the map first (`NQ` -> `MNQ` keeps the contract suffix: `NQ1!` -> `MNQ1!`), then one name
per contract: a dated front contract becomes its continuous alias (`ESZ6` -> `ES1!`), the name the brokers
report its position under, so `ES1!` and `ESZ6` alerts build one position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

from brokers.base import UnknownSymbol
from brokers.symbols import front_alias, futures_root, normalize
from config.groups import Leg, SymbolMapping, Targets
from daemon.domain import Action, Intent, SignalStatus
from daemon.store.repository import FanoutChild

ONE = Decimal(1)


@dataclass(frozen=True)
class FanoutAcceptance:
    """What `Engine.accept_fanout` made of an alert: the parent id, and per child whether it is new."""

    parent_id: str
    is_new: bool
    children: Sequence[tuple[FanoutChild, bool]] = ()


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


def _scaled(value: Decimal, scale: Decimal, rounding: str) -> Decimal:
    if scale == ONE:
        return value
    magnitude = (abs(value) * scale).to_integral_value(rounding=rounding)
    return magnitude if value >= 0 else -magnitude


def child(parent: Intent, leg: Leg, on: date, *, signal_id: str | None = None) -> FanoutChild:
    """The Intent of one leg, PENDING, or SKIPPED with the reason; `route` says how it was derived."""
    symbol, ratio = map_symbol(parent.symbol, leg.symbol_map) if parent.symbol else ("", ONE)
    symbol = engine_symbol(symbol, on) if symbol else symbol
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


def plan(parent: Intent, targets: Targets, on: date) -> list[FanoutChild]:
    """One child per leg, in the order the group (or the alert's list) names the accounts."""
    return [child(parent, leg, on) for leg in targets.legs]
