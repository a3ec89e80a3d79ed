"""End-to-end on the broker stand-ins: a two-level take-profit ladder priced from the entry's fill, and the stop of
what is left moved to break-even once the first level fills."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.symbols import normalize
from daemon.domain import SignalStatus
from tests.conftest import client_for
from tests.test_order_safety_brokers import Venue, held, resting, send, started, venue, wait_async  # noqa: F401
from tests.test_projectx_adapter import contract_id


def quote(venue: Venue, price: Decimal) -> None:  # noqa: F811
    if venue.name == "projectx":
        venue.standin.set_price(contract_id(venue.standin, venue.ticker), price)
    else:
        venue.standin.set_price(normalize(venue.ticker), price)


def reach(venue: Venue, price: Decimal) -> None:  # noqa: F811
    """The market trades at `price`: resting orders there fill (Alpaca's stand-in fills them one by one)."""
    quote(venue, price)
    if venue.name != "alpaca":
        return
    for order_id, order in list(venue.standin.orders.items()):
        if order.get("_parent") and order["status"] == "new" and order["type"] == "limit" \
                and Decimal(order["limit_price"]) == price:
            venue.standin.fill_order(order_id)


def shape(orders: list[Any]) -> list[tuple[str, Decimal, Decimal]]:
    return sorted((o.order_type.value, o.quantity, o.limit_price or o.stop_price) for o in orders)


async def test_ladder_from_the_fill_with_break_even(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    daemon = await started(start_daemon, venue, tmp_path)
    tick = venue.tick
    fill = venue.price + 2 * tick  # the market is two ticks above the alert's price when the entry fills
    quote(venue, fill)
    body = venue.body(action="buy", quantity="2", id="lb-1", stop_loss={"ticks": "40"},
                      take_profit=[{"r": "1", "quantity_percent": "50"}, {"r": "2"}],
                      break_even={"after": "tp1", "offset": {"ticks": "1"}})
    async with client_for(daemon) as client:
        record = await send(daemon, client, body)
    assert record.status is SignalStatus.EXECUTED, record.reason

    from_fill = [("limit", Decimal(1), fill + 40 * tick), ("limit", Decimal(1), fill + 80 * tick),
                 ("stop", Decimal(1), fill - 40 * tick), ("stop", Decimal(1), fill - 40 * tick)]

    async def priced() -> bool:
        return shape(await resting(daemon)) == from_fill

    await wait_async(priced, within=15, every=0.25)
    assert await held(daemon) == 2
    moved = [e for e in daemon.events.recent if "priced from the fill" in e.summary]
    # ProjectX places its brackets as tick offsets from the fill itself: there nothing has to move.
    assert len(moved) == (0 if venue.name == "projectx" else 4)

    reach(venue, fill + 40 * tick)

    async def at_break_even() -> bool:
        return shape(await resting(daemon)) == [("limit", Decimal(1), fill + 80 * tick),
                                                ("stop", Decimal(1), fill + tick)]

    await wait_async(at_break_even, within=15, every=0.25)
    assert await held(daemon) == 1
