"""CcxtBroker's account stream (ccxt.pro binance) against the stand-in's WebSocket API: fast fills, gaps, refusals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from brokers.base import BrokerReport
from brokers.ccxt.broker import CcxtBroker
from brokers.ccxt.stream import UserStream
from brokers.stream import Backoff
from daemon.domain import Fill, Order, OrderStatus, OrderType
from tests.conftest import wait_until
from tests.standins.binance_api import BinanceStandIn
from tests.test_ccxt_broker import FAST, Harness, harness, req, settings_for, standin

# the adapter tests' fixtures; their harness's check of dialled hosts covers the websocket too (ccxt.pro dials
# through the same session)
__all__ = ["harness", "standin"]
QUICK = Backoff(initial=0.05, maximum=0.5, jitter=0.0)


async def streaming(h: Harness, poll_interval: float, factor: float = 10, **over: Any) -> CcxtBroker:
    settings = settings_for(h.standin, stream=True, stream_poll_factor=factor, symbols=["BTCUSDT"], **over)
    b = CcxtBroker("c1", settings, h.state, session=h.session, retry=FAST, poll_interval=poll_interval,
                   stream_backoff=QUICK)
    h.brokers.append(b)

    async def keep(report: BrokerReport) -> None:
        h.reports.append(report)

    b.set_report_handler(keep)
    await b.connect()
    return b


def stream_of(b: CcxtBroker) -> UserStream:
    assert isinstance(b.updates.stream, UserStream)
    return b.updates.stream


def fills(h: Harness, order_id: str | None = None) -> list[Fill]:
    return [r.fill for r in h.reports if r.fill is not None and order_id in (None, r.fill.broker_order_id)]


def orders(h: Harness, order_id: str) -> list[Order]:
    return [r.order for r in h.reports if r.order is not None and r.order.broker_order_id == order_id]


def limit_buy(key: str, price: str) -> Any:
    return req("BTCUSDT", "0.01", key, order_type=OrderType.LIMIT, limit_price=Decimal(price))


async def test_a_fill_arrives_by_the_stream_with_no_poll_in_between(harness: Harness,
                                                                    standin: BinanceStandIn) -> None:
    b = await streaming(harness, poll_interval=60)  # while streaming, the next poll is 600 s away
    stream = stream_of(b)
    # the first round at connect and the catch-up round when the stream came up; then polling sleeps
    await wait_until(lambda: stream.healthy() and b.updates.poller.rounds >= 2)
    assert b.healthy() and standin.stream.connects == 1
    rounds, reads = b.updates.poller.rounds, standin.count("GET", "/api/v3/myTrades")
    order = await b.place_order(limit_buy("s1", "59000"))
    assert order.status is OrderStatus.NEW
    standin.set_price("BTCUSDT", Decimal("58900"))  # the resting buy executes at its limit
    [fill] = await wait_until(lambda: fills(harness, order.broker_order_id))
    await wait_until(lambda: any(o.status is OrderStatus.FILLED for o in orders(harness, order.broker_order_id)))
    assert b.updates.poller.rounds == rounds and standin.count("GET", "/api/v3/myTrades") == reads
    trade = standin.book.trades[-1]
    assert fill.fill_id == f"BTCUSDT:{trade['id']}" and fill.client_order_id == order.client_order_id
    assert (fill.symbol, fill.quantity, fill.price) == ("BTCUSDT", Decimal("0.01"), Decimal("59000"))
    # the same trade read back from the REST history matches, fee in the quote currency included
    [polled] = [f for f in await b.fills() if f.broker_order_id == order.broker_order_id]
    assert (polled.fill_id, polled.quantity, polled.price, polled.commission) == (
        fill.fill_id, fill.quantity, fill.price, fill.commission)
    assert fill.commission == Decimal("0.00001") * 59000
    # the poller's next round sees the trade too: it is not handed over twice
    await b.poll_once()
    assert len(fills(harness, order.broker_order_id)) == 1
    assert [o.status for o in orders(harness, order.broker_order_id)].count(OrderStatus.FILLED) == 1


async def test_a_drop_is_bridged_by_polling_and_the_stream_comes_back(harness: Harness,
                                                                      standin: BinanceStandIn) -> None:
    b = await streaming(harness, poll_interval=0.3, factor=100)
    stream = stream_of(b)
    await wait_until(stream.healthy)
    standin.stream.down = True
    await standin.stream.drop()
    await wait_until(lambda: not stream.healthy())
    assert b.healthy()  # reconnecting within the grace period
    gap = await b.place_order(req("BTCUSDT", "0.01", "gap"))  # a market buy: fills at once, nobody streams it
    [gap_fill] = await wait_until(lambda: fills(harness, gap.broker_order_id))
    assert standin.stream.subscribed() == 0 and standin.stream.connects == 1  # so the poller delivered it
    standin.stream.down = False
    await wait_until(lambda: stream.healthy() and standin.stream.connects == 2)
    after = await b.place_order(limit_buy("after", "59000"))
    standin.set_price("BTCUSDT", Decimal("58900"))
    await wait_until(lambda: fills(harness, after.broker_order_id))
    await b.poll_once()
    ids = [f.fill_id for f in fills(harness)]
    assert len(ids) == len(set(ids)) == 2 and gap_fill.fill_id in ids
    assert stream.connects == 2


async def test_stream_and_polling_together_hand_over_each_fill_once(harness: Harness,
                                                                    standin: BinanceStandIn) -> None:
    b = await streaming(harness, poll_interval=0.05, factor=1)  # both paths race for every fill
    await wait_until(stream_of(b).healthy)
    placed = [await b.place_order(req("BTCUSDT", "0.01", f"race-{n}")) for n in range(4)]
    for order in placed:
        await wait_until(lambda o=order: fills(harness, o.broker_order_id))  # type: ignore[misc]
    await b.poll_once()
    ids = [f.fill_id for f in fills(harness)]
    assert len(ids) == len(set(ids)) == 4
    assert {t["id"] for t in standin.book.trades} == {int(i.split(":")[1]) for i in ids}


async def test_a_refused_stream_leaves_polling_to_deliver(harness: Harness, standin: BinanceStandIn) -> None:
    standin.stream.refuse = True
    b = await streaming(harness, poll_interval=0.2)
    stream = stream_of(b)
    await wait_until(lambda: stream.auth_failed)
    assert "-2015" in (stream.last_error or "") and "test-secret" not in (stream.last_error or "")
    assert not b.healthy()  # a refused stream is reported, not hidden
    order = await b.place_order(req("BTCUSDT", "0.01", "polled"))
    [fill] = await wait_until(lambda: fills(harness, order.broker_order_id))
    assert fill.quantity == Decimal("0.01") and stream.connects == 0 and standin.stream.connects == 0
    standin.stream.refuse = False  # the key is fixed: the stream is retried at its longest backoff and comes up
    await wait_until(stream.healthy)
    assert b.healthy() and not stream.auth_failed
