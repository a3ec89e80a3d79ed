"""Schwab's streamer: schwab-py's StreamClient against the stand-in, then the adapter's activity stream."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from brokers.base import BrokerReport
from brokers.schwab.broker import SchwabBroker
from brokers.stream import Backoff, ReconnectingStream
from daemon.domain import Fill, OrderType
from tests.conftest import wait_until
from tests.standin_fixtures import schwab_running
from tests.standins.schwab_api import ACCOUNT_NUMBER, SchwabStandin
from tests.test_schwab_adapter import login, make_broker, req

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # schwab-py imports websockets.legacy
    from schwab.auth import client_from_access_functions
    from schwab.streaming import StreamClient as SchwabPyStream

QUICK = Backoff(initial=0.05, maximum=0.5, jitter=0.0)


@pytest.fixture
async def stand() -> AsyncIterator[SchwabStandin]:
    async with schwab_running() as standin:
        yield standin


class ToStandin(httpx2.AsyncBaseTransport):
    """schwab-py names api.schwabapi.com in its code: its requests (authlib on httpx2) go to the stand-in."""

    def __init__(self, url: str) -> None:
        self.target, self.inner = httpx2.URL(url), httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(scheme=self.target.scheme, host=self.target.host, port=self.target.port)
        return await self.inner.handle_async_request(request)


async def test_schwab_py_streams_account_activity_from_the_stand_in(stand: SchwabStandin, tmp_path: Path) -> None:
    """The reference client: LOGIN and the ACCT_ACTIVITY subscription succeed, and an order's activity arrives."""
    tokens = login(stand, tmp_path)
    token = {"creation_timestamp": int(time.time()), "token": {
        "access_token": tokens.access_token, "refresh_token": tokens.refresh_token, "token_type": "Bearer",
        "expires_in": 1800, "expires_at": int(time.time()) + 1800, "scope": "api"}}
    client = client_from_access_functions(stand.app_key, stand.app_secret, lambda: token, lambda *a, **k: None,
                                          asyncio=True)
    client.session._transport = ToStandin(stand.url)
    stream = SchwabPyStream(client, account_id=ACCOUNT_NUMBER)
    seen: list[dict[str, Any]] = []
    stream.add_account_activity_handler(seen.append)
    try:
        await stream.login()
        await stream.account_activity_sub()
        assert stand.streamer.connects == 1
        stand.set_price("AAPL", "100")
        stand.book.place({"orderType": "MARKET", "session": "NORMAL", "duration": "DAY",
                          "orderStrategyType": "SINGLE", "orderLegCollection": [
                              {"instruction": "BUY", "quantity": 3,
                               "instrument": {"symbol": "AAPL", "assetType": "EQUITY"}}]})
        stand.streamer.publish()
        while not seen:
            await asyncio.wait_for(stream.handle_message(), 15)
        [message] = seen[:1]
        [activity] = message["content"][:1]
        assert message["service"] == "ACCT_ACTIVITY" and activity["ACCOUNT"] == ACCOUNT_NUMBER
        assert activity["MESSAGE_TYPE"] in ("OrderCreated", "ExecutionCreated")
    finally:
        if stream._socket is not None:
            await stream._socket.close()
        await client.close_async_session()


class Brokers:
    def __init__(self, stand: SchwabStandin, state: Path) -> None:
        self.stand, self.state = stand, state
        self.reports: list[BrokerReport] = []
        self.made: list[SchwabBroker] = []

    async def streaming(self, poll_interval: float, factor: float = 10) -> SchwabBroker:
        login(self.stand, self.state)
        b = make_broker(self.stand, self.state, poll_interval=poll_interval, stream_backoff=QUICK,
                        config={"stream": True, "stream_poll_factor": factor})
        self.made.append(b)

        async def keep(report: BrokerReport) -> None:
            self.reports.append(report)

        b.set_report_handler(keep)
        await b.connect()
        return b

    def fills(self, order_id: str | None = None) -> list[Fill]:
        return [r.fill for r in self.reports if r.fill is not None and order_id in (None, r.fill.broker_order_id)]


@pytest.fixture
async def brokers(stand: SchwabStandin, tmp_path: Path) -> AsyncIterator[Brokers]:
    made = Brokers(stand, tmp_path)
    try:
        yield made
    finally:
        for b in made.made:
            await b.close()


def stream_of(b: SchwabBroker) -> ReconnectingStream:
    assert b.updates.stream is not None
    return b.updates.stream


async def test_account_activity_brings_the_fill_long_before_the_next_poll(brokers: Brokers,
                                                                          stand: SchwabStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=60)  # while streaming, the timer's next poll is 600 s away
    stream = stream_of(b)
    await wait_until(lambda: stream.healthy() and b.updates.poller.rounds >= 2)  # connect + the catch-up
    assert b.healthy() and stand.streamer.connects == 1
    rounds = b.updates.poller.rounds
    order = await b.place_order(req("AAPL", "10", "s1", order_type=OrderType.LIMIT, limit_price=Decimal(99)))
    stand.set_price("AAPL", "98.5")  # the resting buy fills: Schwab tells the streamer
    [fill] = await wait_until(lambda: brokers.fills(order.broker_order_id))
    # every round since `rounds` was one the streamer's activity woke (the timer is 600 s away)
    assert b.updates.poller.rounds > rounds
    assert fill.quantity == 10 and fill.client_order_id == order.client_order_id
    await b.poll_once()
    assert len(brokers.fills(order.broker_order_id)) == 1


async def test_a_drop_is_bridged_by_polling_and_the_streamer_comes_back(brokers: Brokers,
                                                                        stand: SchwabStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.3, factor=100)
    stream = stream_of(b)
    await wait_until(stream.healthy)
    stand.streamer.down = True
    await stand.streamer.drop()
    await wait_until(lambda: not stream.healthy())
    assert b.healthy()  # reconnecting within the grace period
    gap = await b.place_order(req("AAPL", "10", "gap"))
    await wait_until(lambda: brokers.fills(gap.broker_order_id))
    assert stand.streamer.subscribed() == 0 and stand.streamer.connects == 1  # so the timer's poll found it
    stand.streamer.down = False
    await wait_until(lambda: stream.healthy() and stand.streamer.connects == 2)
    after = await b.place_order(req("AAPL", "10", "after", order_type=OrderType.LIMIT, limit_price=Decimal(99)))
    stand.set_price("AAPL", "98.5")
    await wait_until(lambda: brokers.fills(after.broker_order_id))
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 2


async def test_activity_and_polling_together_hand_over_each_fill_once(brokers: Brokers,
                                                                      stand: SchwabStandin) -> None:
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.05, factor=1)
    await wait_until(stream_of(b).healthy)
    placed = [await b.place_order(req("AAPL", "1", f"race-{n}")) for n in range(4)]
    for order in placed:
        await wait_until(lambda o=order: brokers.fills(o.broker_order_id))  # type: ignore[misc]
    await b.poll_once()
    ids = [f.fill_id for f in brokers.fills()]
    assert len(ids) == len(set(ids)) == 4


async def test_a_refused_login_leaves_polling_to_deliver(brokers: Brokers, stand: SchwabStandin) -> None:
    stand.streamer.refuse = True
    stand.set_price("AAPL", "100")
    b = await brokers.streaming(poll_interval=0.2)
    stream = stream_of(b)
    await wait_until(lambda: stream.auth_failed)
    assert "Login Denied" in (stream.last_error or "") and stand.app_secret not in (stream.last_error or "")
    assert not b.healthy()  # a refused streamer is reported, not hidden
    order = await b.place_order(req("AAPL", "10", "polled"))
    [fill] = await wait_until(lambda: brokers.fills(order.broker_order_id))
    assert fill.quantity == 10 and stand.streamer.connects == 0
    stand.streamer.refuse = False
    await wait_until(stream.healthy)
    assert b.healthy() and not stream.auth_failed
