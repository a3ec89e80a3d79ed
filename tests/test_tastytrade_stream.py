"""tastytrade's account streamer: the SDK's AlertStreamer against the stand-in, then the adapter's stream."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from brokers.stream import Backoff, StreamClient
from brokers.tastytrade.broker import TastytradeBroker
from config.brokers import TastytradeSettings
from daemon.domain import OrderStatus, OrderType
from tests import stock_adapter_checks as checks
from tests.conftest import wait_until
from tests.standin_fixtures import Collected, stream_of, tastytrade_running
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.test_tastytrade_adapter import VENUE, make_broker, req, settings_of

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


class Brokers(Collected[TastytradeBroker]):
    def __init__(self, stand: TastytradeStandin, state: Path) -> None:
        super().__init__()
        self.stand, self.state = stand, state

    async def streaming(self, poll_interval: float, factor: float = 10, heartbeat: float | None = None,
                        **config: Any) -> TastytradeBroker:
        b = make_broker(self.stand, self.state, poll_interval=poll_interval, stream_backoff=QUICK, config={
            "stream_url": self.stand.ws_url, "stream_poll_factor": factor, **config})
        if heartbeat is not None:
            assert isinstance(b.updates.stream, StreamClient)
            b.updates.stream.heartbeat_interval = heartbeat
        return await self.attach(b)


@pytest.fixture
async def brokers(stand: TastytradeStandin, tmp_path: Path) -> AsyncIterator[Brokers]:
    made = Brokers(stand, tmp_path)
    try:
        yield made
    finally:
        await made.close()


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
    await checks.drop_is_bridged_by_polling_and_the_stream_comes_back(VENUE, brokers, stand)


async def test_streamer_and_polling_together_hand_over_each_fill_once(brokers: Brokers,
                                                                      stand: TastytradeStandin) -> None:
    await checks.stream_and_polling_together_hand_over_each_fill_once(VENUE, brokers, stand)


async def test_a_refused_streamer_leaves_polling_to_deliver(brokers: Brokers, stand: TastytradeStandin) -> None:
    await checks.refused_stream_leaves_polling_to_deliver(VENUE, brokers, stand, "not permitted",
                                                          stand.refresh_token)


def test_settings_of_keeps_streaming_off_for_loopback() -> None:
    """The adapter tests' stand-in has no known streamer URL: their brokers poll only, as before."""
    assert settings_of(SimpleNamespace(url="http://127.0.0.1:1", client_secret="s", refresh_token="r")  # type: ignore[arg-type]
                       ).streamer_url() is None
