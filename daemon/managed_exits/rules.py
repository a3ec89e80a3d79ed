"""Managed exit rules as values, and what a price mark does to them: pure functions, no I/O.

A rule protects one position with one resting stop at the broker and moves that stop on marks. Today's kind
is `trailing_stop`: the stop follows the best price seen since the rule began by its trail (a distance or a
percent), and only ever moves in the position's favour (up for a long's sell stop, down for a short's buy
stop). A rule on a bracketed entry waits (`stop_order_id` None) until the broker has made the entry's stop
leg; a rule on a stop order of its own knows its order from the start.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from daemon.domain import Side, utcnow
from daemon.shapes import Trail

HUNDRED = Decimal(100)
Kind = Literal["trailing_stop"]


class ExitRule(BaseModel):
    """One position's managed exit. `exit_side` is the stop's side: sell protects a long, buy a short."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str  # the client order id of the order it came with (the entry, or the stop itself)
    account: str
    symbol: str
    kind: Kind = "trailing_stop"
    exit_side: Side
    trail: Trail
    tick: Decimal
    best: Decimal  # the best price seen so far (highest for a long, lowest for a short)
    stop_price: Decimal  # where the stop rests now
    entry_order_id: str | None = None  # broker id of the bracketed entry whose stop leg this rule moves
    stop_order_id: str | None = None  # broker id of the stop it moves (None until the leg exists)
    moves: int = 0
    updated_at: AwareDatetime

    @property
    def waiting(self) -> bool:
        return self.stop_order_id is None


def stop_for(best: Decimal, trail: Trail, exit_side: Side, tick: Decimal) -> Decimal:
    """The stop `trail` away from `best`, on the tick grid, never nearer the price than the trail."""
    distance = trail.distance if trail.distance is not None else best * (trail.percent or Decimal(0)) / HUNDRED
    if exit_side is Side.SELL:
        return ((best - distance) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    return ((best + distance) / tick).to_integral_value(rounding=ROUND_CEILING) * tick


def on_mark(rule: ExitRule, price: Decimal, at: datetime | None = None) -> ExitRule:
    """The rule after the market traded at `price`: a better price raises (or lowers) the stop, a worse one
    leaves it where it is. Returns `rule` itself when nothing changed."""
    better = price > rule.best if rule.exit_side is Side.SELL else price < rule.best
    if not better:
        return rule
    stop = stop_for(price, rule.trail, rule.exit_side, rule.tick)
    tighter = stop > rule.stop_price if rule.exit_side is Side.SELL else stop < rule.stop_price
    update: dict[str, object] = {"best": price, "updated_at": at or utcnow()}
    if tighter and stop > 0:
        update.update(stop_price=stop.normalize(), moves=rule.moves + 1)
    return rule.model_copy(update=update)
