"""The scenarios the Schwab and tastytrade adapter tests share, each checked against that broker's stand-in.

Both adapters journal every order before sending it and find a lost answer afterwards, poll under an
optional account stream, and trade the same stocks from the same $100,000 account, so the same steps
must end in the same outcomes at either broker. A `Venue` is what a step needs of one broker's tests
(how they build an adapter and its orders, what the stand-in recorded); what only one broker does stays
in its own test file, between these steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.base import BrokerUnavailable
from daemon.domain import Fill, Order, OrderRequest, OrderStatus, OrderType, Side, client_order_id
from tests.conftest import wait_until
from tests.standin_fixtures import RequestMaker, reports_until_fills, stream_of


def _no_login(stand: Any, state_dir: Path) -> None:
    return None


@dataclass(frozen=True)
class Venue:
    account: str
    req: RequestMaker
    make: Callable[..., Any]  # make_broker(stand, state_dir, config=..., poll_interval=..., **adapter options)
    bodies: Callable[..., list[Any]]  # bodies(stand, method="POST", path=orders): what the stand-in was sent
    orders: str  # the path orders are placed at
    down: str  # a 5xx body of the broker's own shape
    entry: Callable[[Any, str], dict[str, Any] | None]  # the adapter's journal entry of a client order id
    login: Callable[[Any, Path], object] = _no_login  # what must exist in a state directory before `make`


# -- orders, positions, account ----------------------------------------------------------------------------


async def market_order_fills(v: Venue, broker: Any, stand: Any) -> Order:
    """A market buy of 10 AAPL (sent as `NASDAQ:AAPL`) fills at once at the stand-in's price."""
    stand.set_price("AAPL", "187.5")
    order = await broker.place_order(v.req("NASDAQ:AAPL"))
    assert (order.status, order.filled_quantity, order.average_fill_price) == (OrderStatus.FILLED, 10, Decimal("187.5"))
    assert order.client_order_id == client_order_id(v.account, "sig-1") and order.symbol == "AAPL"
    return order


async def held_valued_and_filled(broker: Any, stand: Any, order: Order) -> Fill:
    """After `market_order_fills`: the position, the account valued at a new price, and the one fill."""
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("AAPL", 10, Decimal("187.5"))
    stand.set_price("AAPL", 190)
    account = await broker.account_state()
    assert (account.cash, account.equity, account.unrealized_pnl) == (100000 - 1875, 100025, 25)
    [fill] = await broker.fills()
    assert (fill.quantity, fill.price, fill.side, fill.client_order_id) == (10, Decimal("187.5"), Side.BUY,
                                                                            order.client_order_id)
    return fill


async def found_by_its_client_order_id(broker: Any, order: Order) -> None:
    """No fill after now; `order` is found by its client order id, one never sent is not."""
    assert await broker.fills(datetime.now(UTC) + timedelta(minutes=1)) == []
    found = await broker.find_order(order.client_order_id)
    assert found is not None and found.broker_order_id == order.broker_order_id
    assert await broker.find_order("td-never-sent") is None


async def bracket_exits_cancel_each_other(broker: Any, stand: Any, entry: Order) -> None:
    """A bracket of 10 AAPL with a 99 entry, 110 take-profit and 95 stop: its exits are one OCO group, found
    by their own client order ids, and the take-profit's fill takes the stop with it."""
    legs = [o for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id]
    assert sorted((o.order_type, o.client_order_id) for o in legs) == [
        (OrderType.LIMIT, entry.client_order_id + "-tp"), (OrderType.STOP, entry.client_order_id + "-sl")]
    assert len({o.oco_group for o in legs}) == 1 and legs[0].oco_group is not None
    found = await broker.find_order(entry.client_order_id + "-sl")
    assert found is not None and found.stop_price == 95
    stand.set_price("AAPL", 99)
    [position] = await broker.positions()
    assert position.quantity == 10
    stand.set_price("AAPL", 111)  # the take-profit fills, the stop goes with it
    assert await broker.positions() == [] and await broker.open_orders() == []


# -- faults ---------------------------------------------------------------------------------------------------


async def reset_after_accept_is_looked_up(v: Venue, broker: Any, stand: Any) -> None:
    """An accepted order whose answer was lost is found, not sent again, and journaled as found."""
    stand.faults.drop_next(path=v.orders)
    order = await broker.place_order(v.req())
    assert order.status is OrderStatus.FILLED and order.client_order_id == client_order_id(v.account, "sig-1")
    assert len(v.bodies(stand)) == 1 and len(stand.orders_for("AAPL")) == 1
    entry = v.entry(broker, order.client_order_id)
    assert entry is not None and entry["found_by"] == "lookup" and entry["order_id"] == order.broker_order_id


async def timeout_after_accept_does_not_duplicate(v: Venue, stand: Any, tmp_path: Path) -> None:
    v.login(stand, tmp_path)
    broker = v.make(stand, tmp_path, config={"timeout_seconds": 0.3})
    await broker.connect()
    try:
        stand.faults.delay_next(1.0, path=v.orders, after_handling=True)
        order = await broker.place_order(v.req())
        assert order.status is OrderStatus.FILLED and len(v.bodies(stand)) == 1
    finally:
        await broker.close()


async def restart_after_lost_answer_does_not_duplicate(v: Venue, stand: Any, tmp_path: Path) -> None:
    v.login(stand, tmp_path)
    first = v.make(stand, tmp_path)
    await first.connect()
    stand.faults.drop_next(path=v.orders)  # accepted, answer lost ...
    stand.faults.fail_next(20, status=503, path=v.orders, body=v.down)  # ... and the lookup cannot tell
    try:
        with pytest.raises(BrokerUnavailable, match="state unknown"):
            await first.place_order(v.req())
    finally:
        await first.close()  # the process dies here
    stand.faults.clear()
    second = v.make(stand, tmp_path)  # a new process, same state directory
    await second.connect()
    try:
        order = await second.place_order(v.req())  # the engine resends the signal's order
    finally:
        await second.close()
    assert stand.count("POST", v.orders) == 1 and len(stand.orders_for("AAPL")) == 1
    assert order.client_order_id == client_order_id(v.account, "sig-1")


async def polling_emits_each_fill_and_status_change_once(v: Venue, stand: Any, tmp_path: Path,
                                                         second: OrderRequest,
                                                         expected: list[tuple[str, int]]) -> None:
    """A resting AAPL buy of 2 that fills later and `second` (a market order) are reported once each, with
    `expected` as (symbol, quantity) of their fills; an order older than the connect is not news."""
    v.login(stand, tmp_path / "other")
    old = v.make(stand, tmp_path / "other")  # an order that exists before connect is not news
    await old.connect()
    await old.place_order(v.req("MSFT", key="old"))
    await old.close()

    v.login(stand, tmp_path)
    broker = v.make(stand, tmp_path, poll_interval=0.05)
    reports, two_fills = reports_until_fills(broker, 2)
    await broker.connect()
    try:
        resting = await broker.place_order(v.req(qty="2", order_type=OrderType.LIMIT, limit_price=Decimal(95)))
        await asyncio.sleep(0.2)
        stand.set_price("AAPL", 95)
        await broker.place_order(second)
        await asyncio.wait_for(two_fills.wait(), timeout=5)
        await asyncio.sleep(0.3)  # several more polls: nothing new may appear
    finally:
        await broker.close()
    fills = [r.fill for r in reports if r.fill is not None]
    assert sorted((f.symbol, f.quantity) for f in fills) == expected
    statuses = [r.order.status for r in reports if r.order and r.order.broker_order_id == resting.broker_order_id]
    # NEW only if a poll saw the order before place_order returned; never a status twice
    assert statuses in ([OrderStatus.FILLED], [OrderStatus.NEW, OrderStatus.FILLED])
    assert not any(r.order is not None and r.order.symbol == "MSFT" for r in reports)


# -- the account stream over polling ------------------------------------------------------------------------
# `brokers.streaming(poll_interval, factor)` is each test file's own: an adapter with its stream on, attached.


async def drop_is_bridged_by_polling_and_the_stream_comes_back(v: Venue, brokers: Any, stand: Any) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.3, factor=100)
    stream = stream_of(b)
    await wait_until(stream.healthy)
    stand.streamer.down = True
    await stand.streamer.drop()
    await wait_until(lambda: not stream.healthy())
    assert b.healthy()  # reconnecting within the grace period
    gap = await b.place_order(v.req("AAPL", "10", "gap"))  # fills at once while nobody streams
    await wait_until(lambda: brokers.fills(gap.broker_order_id))
    assert stand.streamer.subscribed() == 0 and stand.streamer.connects == 1  # so the poller delivered it
    stand.streamer.down = False
    await wait_until(lambda: stream.healthy() and stand.streamer.connects == 2)
    after = await b.place_order(v.req("AAPL", "10", "after", order_type=OrderType.LIMIT, limit_price=Decimal(99)))
    stand.set_price("AAPL", "98.5")
    await wait_until(lambda: brokers.fills(after.broker_order_id))
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 2


async def stream_and_polling_together_hand_over_each_fill_once(v: Venue, brokers: Any, stand: Any) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.05, factor=1)  # both paths race for every fill
    await wait_until(stream_of(b).healthy)
    placed = [await b.place_order(v.req("AAPL", "1", f"race-{n}")) for n in range(4)]
    for order in placed:
        await wait_until(lambda o=order: brokers.fills(o.broker_order_id))  # type: ignore[misc]
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 4


async def refused_stream_leaves_polling_to_deliver(v: Venue, brokers: Any, stand: Any, refusal: str,
                                                   secret: str) -> None:
    """The stream's login is refused (the broker says `refusal`; `secret` never shows): polling delivers."""
    stand.streamer.refuse = True
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.2)
    stream = stream_of(b)
    await wait_until(lambda: stream.auth_failed)
    assert refusal in (stream.last_error or "") and secret not in (stream.last_error or "")
    assert not b.healthy()  # a refused streamer is reported, not hidden
    order = await b.place_order(v.req("AAPL", "10", "polled"))
    [fill] = await wait_until(lambda: brokers.fills(order.broker_order_id))
    assert fill.quantity == 10 and stand.streamer.connects == 0
    stand.streamer.refuse = False
    await wait_until(stream.healthy)
    assert b.healthy() and not stream.auth_failed
