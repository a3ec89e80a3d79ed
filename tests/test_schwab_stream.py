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

from brokers.schwab.broker import SchwabBroker
from brokers.stream import Backoff
from daemon.domain import OrderType
from tests import stock_adapter_checks as checks
from tests.conftest import wait_until
from tests.standin_fixtures import Collected, schwab_running, stream_of
from tests.standins.schwab_api import ACCOUNT_NUMBER, SchwabStandin
from tests.test_schwab_adapter import VENUE, login, make_broker, req

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


class Brokers(Collected[SchwabBroker]):
    def __init__(self, stand: SchwabStandin, state: Path) -> None:
        super().__init__()
        self.stand, self.state = stand, state

    async def streaming(self, poll_interval: float, factor: float = 10) -> SchwabBroker:
        login(self.stand, self.state)
        return await self.attach(make_broker(self.stand, self.state, poll_interval=poll_interval,
                                             stream_backoff=QUICK, config={"stream": True,
                                                                           "stream_poll_factor": factor}))


@pytest.fixture
async def brokers(stand: SchwabStandin, tmp_path: Path) -> AsyncIterator[Brokers]:
    made = Brokers(stand, tmp_path)
    try:
        yield made
    finally:
        await made.close()


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
    await checks.drop_is_bridged_by_polling_and_the_stream_comes_back(VENUE, brokers, stand)


async def test_activity_and_polling_together_hand_over_each_fill_once(brokers: Brokers,
                                                                      stand: SchwabStandin) -> None:
    await checks.stream_and_polling_together_hand_over_each_fill_once(VENUE, brokers, stand)


async def test_a_refused_login_leaves_polling_to_deliver(brokers: Brokers, stand: SchwabStandin) -> None:
    await checks.refused_stream_leaves_polling_to_deliver(VENUE, brokers, stand, "Login Denied", stand.app_secret)
