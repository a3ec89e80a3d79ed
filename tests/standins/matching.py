"""How the futures stand-ins (ProjectX, Tradovate) fill resting orders when a contract trades at a price.

Each stand-in keeps its own orders in its venue's shape and names its own order types; it asks here at
what price (if any) one of them fills at the new trade price, and lets `match_until_quiet` run its book
until no resting order fills any more (a fill can move a position that another order depends on, so
the book is walked again after each fill, oldest order first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Literal, TypeVar

Kind = Literal["market", "limit", "stop", "stop_limit"]
Resting = TypeVar("Resting")


def trail(anchor: Decimal | None, price: Decimal, buy: bool, distance: Decimal) -> tuple[Decimal, Decimal]:
    """(anchor, stop) of a trailing stop after a trade at `price`: the anchor follows the best price seen
    (lowest for a buy stop, highest for a sell), the stop stays `distance` behind it."""
    anchor = price if anchor is None else (min if buy else max)(anchor, price)
    return anchor, anchor + distance if buy else anchor - distance


def fill_price(kind: Kind, buy: bool, price: Decimal, stop: Decimal | None, limit: Decimal | None,
               triggered: bool) -> tuple[Decimal | None, bool]:
    """(the price the order fills at, None when it rests on; whether a stop-limit's stop has triggered)."""
    if kind == "market":
        return price, triggered
    stop_hit = stop is not None and (price >= stop if buy else price <= stop)
    if kind == "stop":
        return (price if stop_hit else None), triggered
    if kind == "stop_limit" and not triggered:
        if not stop_hit:
            return None, triggered
        triggered = True
    if limit is None or (price > limit if buy else price < limit):
        return None, triggered
    return (min(price, limit) if buy else max(price, limit)), triggered


def match_until_quiet(resting: Callable[[], Iterable[Resting]], price_of: Callable[[Resting], Decimal | None],
                      fill: Callable[[Resting, Decimal], None]) -> None:
    """Fill the first of `resting()` that `price_of` prices, then look again, until none fills (bounded)."""
    for _ in range(1000):
        for order in resting():
            at = price_of(order)
            if at is not None:
                fill(order, at)
                break
        else:
            return
