"""AlpacaBroker's trade_updates stream against the stand-in: speed, drop/reconnect, dedup with polling, auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from pydantic import SecretStr

from brokers.alpaca.broker import AlpacaBroker
from brokers.alpaca.models import fill_key
from brokers.stream import Backoff
from config.brokers import AlpacaSettings
from daemon.domain import OrderStatus, OrderType
from tests.conftest import wait_until
from tests.standin_fixtures import Recorder
from tests.standins.alpaca_api import AlpacaStandIn
from tests.test_alpaca_adapter import FAST, alpaca_running, req

QUICK = Backoff(initial=0.05, maximum=0.2, jitter=0.1)


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    async with alpaca_running() as stand:
        yield stand


async def streaming_broker(
    standin: AlpacaStandIn, poll: float, key: str | None = None
) -> tuple[AlpacaBroker, Recorder]:
    settings = AlpacaSettings(key_id=SecretStr(standin.key_id), secret_key=SecretStr(standin.secret_key),
                              base_url=standin.base_url, timeout_seconds=2, rate_limit_per_minute=6000,
                              poll_interval_seconds=poll)
    if key is not None:
        standin.stream.reject_auth = True
    broker = AlpacaBroker("acct1", settings, retry=FAST, stream_backoff=QUICK)
    recorder = Recorder()
    broker.set_report_handler(recorder)
    await broker.connect()
    return broker, recorder


async def test_stream_delivers_a_fill_long_before_the_poll_interval(standin: AlpacaStandIn) -> None:
    broker, seen = await streaming_broker(standin, poll=60)
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        # the start-up poll and the catch-up poll that the stream coming up wakes, then none for 60 s
        await wait_until(lambda: standin.count("GET", "/v2/account/activities/FILL") >= 2, within=10)
        polls = standin.count("GET", "/v2/account/activities/FILL")
        resting = await broker.place_order(req("AAPL", "4", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
        standin.fill_order(resting.broker_order_id, qty=Decimal(1))
        standin.fill_order(resting.broker_order_id)
        await wait_until(lambda: len(seen.fills) == 2, within=10)
        assert [(s, q) for s, q, _ in seen.fills] == [("AAPL", 1), ("AAPL", 3)]
        assert [i for _, _, i in seen.fills] == [fill_key(resting.broker_order_id, Decimal(n)) for n in (1, 4)]
        assert standin.count("GET", "/v2/account/activities/FILL") == polls  # no poll was needed
        statuses = [r.order.status for r in seen.reports if r.order is not None]
        assert statuses[-2:] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
        # the reconciliation path names the same fills the same way
        assert [f.fill_id for f in await broker.fills()] == [i for _, _, i in seen.fills]
        assert broker.healthy()
    finally:
        await broker.close()


async def test_fill_while_the_stream_is_down_arrives_once_and_the_stream_comes_back(standin: AlpacaStandIn) -> None:
    broker, seen = await streaming_broker(standin, poll=0.2)
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        resting = await broker.place_order(req("MSFT", "2", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
        standin.stream.refuse = True  # the broker's stream goes away and stays away for a while
        await standin.stream.drop_all()
        await wait_until(lambda: not broker.stream.healthy(), within=10)  # type: ignore[union-attr]
        standin.fill_order(resting.broker_order_id)  # nobody is listening: only polling can see it
        await wait_until(lambda: len(seen.fills) == 1, within=10)
        assert broker.healthy()  # polling carries on; the stream is within its grace period
        standin.stream.refuse = False
        await wait_until(lambda: broker.stream.connects == 2 and broker.stream.healthy(), within=10)  # type: ignore[union-attr]
        after = await broker.place_order(req("IBM", "1", key="after"))  # fills at once, seen by the stream
        await wait_until(lambda: len(seen.fills) == 2, within=10)
        await asyncio.sleep(0.5)  # the catch-up poll after reconnecting and later polls: nothing new
    finally:
        await broker.close()
    assert [(s, q) for s, q, _ in seen.fills] == [("MSFT", 2), ("IBM", 1)]
    assert seen.fills[1][2] == fill_key(after.broker_order_id, Decimal(1))


async def test_a_fill_seen_by_both_stream_and_poller_is_reported_once(standin: AlpacaStandIn) -> None:
    broker, seen = await streaming_broker(standin, poll=0.05)
    broker.settings = broker.settings.model_copy(update={"stream_poll_factor": 1})  # poll flat out alongside
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        for n in range(5):
            await broker.place_order(req("SPY", "1", key=f"s{n}"))
        await wait_until(lambda: len(seen.fills) == 5, within=10)
        polled = standin.count("GET", "/v2/account/activities/FILL")
        await wait_until(lambda: standin.count("GET", "/v2/account/activities/FILL") >= polled + 3, within=10)
    finally:
        await broker.close()
    assert len(seen.fills) == 5 and len({i for _, _, i in seen.fills}) == 5
    states = [(r.order.broker_order_id, r.order.status) for r in seen.reports if r.order is not None]
    assert len(states) == len(set(states))  # no status change reported twice either


async def test_stream_auth_refused_logs_and_polling_still_delivers(
    standin: AlpacaStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="brokers.stream")
    broker, seen = await streaming_broker(standin, poll=0.1, key="refused")
    broker.STREAM_GRACE = 0.0
    try:
        assert broker.stream is not None
        await wait_until(lambda: broker.stream.auth_failed, within=10)  # type: ignore[union-attr]
        refused = "alpaca acct1: stream authentication refused: alpaca refused the stream keys: unauthorized"
        assert refused in caplog.text
        assert standin.secret_key not in caplog.text
        assert not broker.stream.healthy() and not broker.healthy()  # /healthz tells the trader
        await broker.place_order(req("QQQ", "1"))
        await wait_until(lambda: len(seen.fills) == 1, within=10)  # polling still works
    finally:
        await broker.close()


async def test_stream_off_by_setting_polls_only(standin: AlpacaStandIn) -> None:
    settings = AlpacaSettings(key_id=SecretStr(standin.key_id), secret_key=SecretStr(standin.secret_key),
                              base_url=standin.base_url, stream=False, poll_interval_seconds=0.05)
    broker = AlpacaBroker("acct1", settings, retry=FAST)
    seen = Recorder()
    broker.set_report_handler(seen)
    await broker.connect()
    try:
        await broker.place_order(req("AAPL", "1"))
        await wait_until(lambda: len(seen.fills) == 1, within=10)
        assert broker.stream is None and standin.stream.connections == 0 and broker.healthy()
    finally:
        await broker.close()
