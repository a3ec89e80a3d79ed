"""tastytrade's account streamer: the SDK's AlertStreamer against the stand-in, then the adapter's stream."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from brokers.base import BrokerReport
from brokers.stream import Backoff, ReconnectingStream, StreamClient
from brokers.tastytrade.broker import TastytradeBroker
from config.brokers import TastytradeSettings
from daemon.domain import Fill, OrderStatus, OrderType
from tests.conftest import wait_until
from tests.standin_fixtures import tastytrade_running
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.test_tastytrade_adapter import make_broker, req, settings_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from tastytrade import Session
    from tastytrade.order import PlacedOrder
    from tastytrade.streamer import AlertStreamer

QUICK = Backoff(initial=0.05, maximum=0.5, jitter=0.0)
LIVE = f"/accounts/{ACCOUNT_NUMBER}/orders/live"


@pytest.fixture
async def stand() -> AsyncIterator[TastytradeStandin]:
    async with tastytrade_running() as standin:
        yield standin


class Brokers:
    def __init__(self, stand: TastytradeStandin, state: Path) -> None:
        self.stand, self.state = stand, state
        self.reports: list[BrokerReport] = []
        self.made: list[TastytradeBroker] = []

    async def streaming(self, poll_interval: float, factor: float = 10, heartbeat: float | None = None,
                        **config: Any) -> TastytradeBroker:
        b = make_broker(self.stand, self.state, poll_interval=poll_interval, stream_backoff=QUICK, config={
            "stream_url": self.stand.ws_url, "stream_poll_factor": factor, **config})
        self.made.append(b)
        if heartbeat is not None:
            assert isinstance(b.updates.stream, StreamClient)
            b.updates.stream.heartbeat_interval = heartbeat

        async def keep(report: BrokerReport) -> None:
            self.reports.append(report)

        b.set_report_handler(keep)
        await b.connect()
        return b

    def fills(self, order_id: str | None = None) -> list[Fill]:
        return [r.fill for r in self.reports if r.fill is not None and order_id in (None, r.fill.broker_order_id)]

    def statuses(self, order_id: str) -> list[OrderStatus]:
        return [r.order.status for r in self.reports if r.order is not None and r.order.broker_order_id == order_id]


@pytest.fixture
async def brokers(stand: TastytradeStandin, tmp_path: Path) -> AsyncIterator[Brokers]:
    made = Brokers(stand, tmp_path)
    try:
        yield made
    finally:
        for b in made.made:
            await b.close()


def stream_of(b: TastytradeBroker) -> ReconnectingStream:
    assert b.updates.stream is not None
    return b.updates.stream


def limit_buy(key: str, price: str) -> Any:
    return req("AAPL", "10", key, order_type=OrderType.LIMIT, limit_price=Decimal(price))


def test_the_streamer_url_is_known_only_for_tastytrades_hosts() -> None:
    login = {"client_secret": "s", "refresh_token": "r"}
    assert TastytradeSettings(**login).streamer_url() == "wss://streamer.cert.tastyworks.com"
    live = TastytradeSettings(base_url="https://api.tastyworks.com", **login)
    assert live.streamer_url() == "wss://streamer.tastyworks.com"
    assert TastytradeSettings(base_url="https://proxy.example", **login).streamer_url() is None
    assert TastytradeSettings(base_url="https://proxy.example", stream_url="wss://s.example",
                              **login).streamer_url() == "wss://s.example"


async def test_the_sdk_alert_streamer_reads_the_stand_ins_notifications(stand: TastytradeStandin) -> None:
    """The reference client: its subscription is acknowledged and an order notification parses as PlacedOrder."""
    session = Session(stand.client_secret, stand.refresh_token, is_test=True)
    session._client.base_url = stand.url  # the SDK's REST client, pointed at the stand-in for its login
    streamer = AlertStreamer(session)
    streamer.base_url = stand.ws_url
    async with session, streamer:
        await streamer.subscribe_accounts([SimpleNamespace(account_number=ACCOUNT_NUMBER)])  # type: ignore[list-item]
        assert stand.streamer.connects == 1
        stand.set_price("AAPL", "100")
        stand.book.place({"time-in-force": "Day", "order-type": "Market", "legs": [
            {"instrument-type": "Equity", "symbol": "AAPL", "quantity": 5, "action": "Buy to Open"}]})
        stand.set_price("AAPL", "100.5")  # publishes the new (filled) order
        async for order in streamer.listen(PlacedOrder):
            assert order.account_number == ACCOUNT_NUMBER and order.legs[0].symbol == "AAPL"
            assert order.legs[0].fills and order.legs[0].fills[0].quantity == Decimal(5)
            break


async def test_a_fill_arrives_by_the_streamer_with_no_poll_in_between(brokers: Brokers,
                                                                      stand: TastytradeStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=60)
    stream = stream_of(b)
    await wait_until(lambda: stream.healthy() and b.updates.poller.rounds >= 2)
    assert b.healthy() and stand.streamer.connects == 1
    rounds, reads = b.updates.poller.rounds, stand.count("GET", LIVE)
    order = await b.place_order(limit_buy("s1", "99"))
    assert order.status is OrderStatus.NEW
    stand.set_price("AAPL", "98.5")  # the resting buy is now marketable: it fills at the price
    [fill] = await wait_until(lambda: brokers.fills(order.broker_order_id))
    await wait_until(lambda: OrderStatus.FILLED in brokers.statuses(order.broker_order_id))
    assert b.updates.poller.rounds == rounds and stand.count("GET", LIVE) == reads
    assert (fill.symbol, fill.quantity, fill.price, fill.client_order_id) == ("AAPL", 10, Decimal("98.5"),
                                                                              order.client_order_id)
    [polled] = [f for f in await b.fills() if f.broker_order_id == order.broker_order_id]
    assert (polled.fill_id, polled.quantity, polled.price) == (fill.fill_id, fill.quantity, fill.price)
    await b.poll_once()  # the poller sees the same fill: not handed over again
    assert len(brokers.fills(order.broker_order_id)) == 1
    assert brokers.statuses(order.broker_order_id).count(OrderStatus.FILLED) == 1


async def test_heartbeats_keep_the_session(brokers: Brokers, stand: TastytradeStandin) -> None:
    b = await brokers.streaming(poll_interval=60, heartbeat=0.05)  # every 20 s in production
    await wait_until(lambda: stand.streamer.heartbeats >= 3)
    assert stream_of(b).healthy() and stand.streamer.connects == 1  # answered, well-formed, same connection


async def test_a_drop_is_bridged_by_polling_and_the_streamer_comes_back(brokers: Brokers,
                                                                        stand: TastytradeStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.3, factor=100)
    stream = stream_of(b)
    await wait_until(stream.healthy)
    stand.streamer.down = True
    await stand.streamer.drop()
    await wait_until(lambda: not stream.healthy())
    assert b.healthy()  # reconnecting within the grace period
    gap = await b.place_order(req("AAPL", "10", "gap"))  # fills at once while nobody streams
    await wait_until(lambda: brokers.fills(gap.broker_order_id))
    assert stand.streamer.subscribed() == 0 and stand.streamer.connects == 1  # so the poller delivered it
    stand.streamer.down = False
    await wait_until(lambda: stream.healthy() and stand.streamer.connects == 2)
    after = await b.place_order(limit_buy("after", "99"))
    stand.set_price("AAPL", "98.5")
    await wait_until(lambda: brokers.fills(after.broker_order_id))
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 2


async def test_streamer_and_polling_together_hand_over_each_fill_once(brokers: Brokers,
                                                                      stand: TastytradeStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.05, factor=1)  # both paths race for every fill
    await wait_until(stream_of(b).healthy)
    placed = [await b.place_order(req("AAPL", "1", f"race-{n}")) for n in range(4)]
    for order in placed:
        await wait_until(lambda o=order: brokers.fills(o.broker_order_id))  # type: ignore[misc]
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 4


async def test_a_refused_streamer_leaves_polling_to_deliver(brokers: Brokers, stand: TastytradeStandin) -> None:
    stand.streamer.refuse = True
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.2)
    stream = stream_of(b)
    await wait_until(lambda: stream.auth_failed)
    assert "not permitted" in (stream.last_error or "") and stand.refresh_token not in (stream.last_error or "")
    assert not b.healthy()  # a refused streamer is reported, not hidden
    order = await b.place_order(req("AAPL", "10", "polled"))
    [fill] = await wait_until(lambda: brokers.fills(order.broker_order_id))
    assert fill.quantity == 10 and stand.streamer.connects == 0
    stand.streamer.refuse = False
    await wait_until(stream.healthy)
    assert b.healthy() and not stream.auth_failed


def test_settings_of_keeps_streaming_off_for_loopback() -> None:
    """The adapter tests' stand-in has no known streamer URL: their brokers poll only, as before."""
    assert settings_of(SimpleNamespace(url="http://127.0.0.1:1", client_secret="s", refresh_token="r")  # type: ignore[arg-type]
                       ).streamer_url() is None
