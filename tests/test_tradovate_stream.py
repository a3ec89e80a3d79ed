"""TradovateBroker's user websocket against the stand-in: speed, gaps, dedup with polling, auth, heartbeat, token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.stream import Backoff
from brokers.tradovate.broker import TradovateBroker
from daemon.domain import OrderStatus, OrderType
from tests.conftest import wait_until
from tests.standin_fixtures import Recorder, tradovate_running
from tests.standins.tradovate_api import TradovateStandin
from tests.test_tradovate_adapter import ES, FAST, req, settings_of

QUICK = Backoff(initial=0.05, maximum=0.2, jitter=0.1)
FILLED = [OrderStatus.FILLED]
NEW_FILLED = [OrderStatus.NEW, OrderStatus.FILLED]  # NEW when the stream saw the order before place_order returned


@pytest.fixture
async def tv() -> AsyncIterator[TradovateStandin]:
    async with tradovate_running() as standin:
        standin.stream.heartbeat = 0.2
        yield standin


async def streaming_broker(tv: TradovateStandin, state_dir: Path, poll: float, **kw: Any) -> tuple[TradovateBroker,
                                                                                                   Recorder]:
    settings = settings_of(tv, poll_interval_seconds=poll, **kw.pop("config", {}))
    broker = TradovateBroker("tv1", settings, state_dir, retry=FAST, stream_backoff=QUICK,
                             stream_heartbeat=kw.pop("heartbeat", 0.1), **kw)
    recorder = Recorder()
    broker.set_report_handler(recorder)
    await broker.connect()
    return broker, recorder


def fill_ids(tv: TradovateStandin) -> list[str]:
    return [str(f["id"]) for f in tv.fills]


async def test_stream_delivers_a_fill_long_before_the_poll_interval(tv: TradovateStandin, tmp_path: Path) -> None:
    broker, seen = await streaming_broker(tv, tmp_path, poll=60)
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        # connect, the poller's first round, and its catch-up round once the stream is up; the next is 600 s away
        await wait_until(lambda: tv.count("/fill/list") == 3, within=10)
        polls = tv.count("/fill/list")
        resting = await broker.place_order(req(qty="2", order_type=OrderType.LIMIT, limit_price=Decimal(5990)))
        tv.set_price(ES, 5990)
        await wait_until(lambda: len(seen.fills) == 1 and OrderStatus.FILLED in seen.statuses(
            resting.broker_order_id), within=10)
        assert [(s, q) for s, q, _ in seen.fills] == [("ES1!", 2)]
        assert [i for _, _, i in seen.fills] == fill_ids(tv)  # Tradovate's own fill id
        assert tv.count("/fill/list") == polls  # no poll was needed
        assert seen.statuses(resting.broker_order_id) in (FILLED, NEW_FILLED)
        [fill] = [r.fill for r in seen.reports if r.fill is not None]
        assert fill.client_order_id == resting.client_order_id and fill.price == Decimal(5990)
        # the reconciliation path names the same fill the same way
        assert [f.fill_id for f in await broker.fills()] == [i for _, _, i in seen.fills]
        assert broker.healthy() and tv.stream.connections == 1
    finally:
        await broker.close()


async def test_fill_while_the_stream_is_down_arrives_once_and_the_stream_comes_back(
    tv: TradovateStandin, tmp_path: Path
) -> None:
    broker, seen = await streaming_broker(tv, tmp_path, poll=0.2)
    try:
        stream = broker.stream
        assert stream is not None
        await wait_until(stream.healthy, within=10)
        resting = await broker.place_order(req(qty="1", order_type=OrderType.LIMIT, limit_price=Decimal(5990)))
        tv.stream.refuse = True  # the broker's websocket goes away and stays away for a while
        await tv.stream.drop_all()
        await wait_until(lambda: not stream.healthy(), within=10)
        tv.set_price(ES, 5990)  # nobody is listening: only polling can see it
        await wait_until(lambda: len(seen.fills) == 1, within=10)
        assert broker.healthy()  # polling carries on; the stream is within its grace period
        tv.stream.refuse = False
        await wait_until(lambda: stream.connects == 2 and stream.healthy() and tv.stream.listening == 1, within=10)
        await asyncio.sleep(0.3)  # the catch-up poll right after reconnecting is done; the next is 2 s away
        polls = tv.count("/fill/list")
        after = await broker.place_order(req("MNQ1!", key="after"))  # fills at once, seen by the stream
        await wait_until(lambda: len(seen.fills) == 2, within=10)
        assert tv.count("/fill/list") == polls
        await asyncio.sleep(0.5)  # later polls: nothing new
    finally:
        await broker.close()
    assert [(s, q) for s, q, _ in seen.fills] == [("ES1!", 1), ("MNQ1!", 1)]
    assert [i for _, _, i in seen.fills] == fill_ids(tv)
    assert seen.statuses(resting.broker_order_id) in (FILLED, NEW_FILLED)
    assert seen.statuses(after.broker_order_id) in ([], FILLED, NEW_FILLED)  # place_order said FILLED too


async def test_a_fill_seen_by_both_stream_and_poller_is_reported_once(tv: TradovateStandin, tmp_path: Path) -> None:
    broker, seen = await streaming_broker(tv, tmp_path, poll=0.05, config={"stream_poll_factor": 1})
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        resting = [await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(5990), key=f"r{n}"))
                   for n in range(3)]
        for n in range(3):
            await broker.place_order(req("MNQ1!", key=f"m{n}"))
        tv.set_price(ES, 5990)
        await wait_until(lambda: len(seen.fills) == 6, within=10)
        polled = tv.count("/fill/list")
        await wait_until(lambda: tv.count("/fill/list") >= polled + 3, within=10)
    finally:
        await broker.close()
    assert sorted(i for _, _, i in seen.fills) == sorted(fill_ids(tv))
    states = [(r.order.broker_order_id, r.order.status) for r in seen.reports if r.order is not None]
    assert len(states) == len(set(states))  # no status change reported twice either
    for order in resting:
        assert seen.statuses(order.broker_order_id) in (FILLED, NEW_FILLED)


async def test_stream_auth_refused_logs_and_polling_still_delivers(
    tv: TradovateStandin, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tv.stream.reject_auth = True
    broker, seen = await streaming_broker(tv, tmp_path, poll=0.1)
    try:
        assert broker.stream is not None
        await wait_until(lambda: broker.stream.auth_failed, within=10)  # type: ignore[union-attr]
        refused = ("tradovate tv1: stream authentication refused: tradovate refused the stream token: "
                   "401 Access is denied")
        assert refused in caplog.text
        assert broker.session.token is not None and broker.session.token not in caplog.text
        assert "tv-password" not in caplog.text and "tv-secret" not in caplog.text
        assert not broker.stream.healthy() and not broker.healthy()  # /healthz tells the trader
        await broker.place_order(req())
        await wait_until(lambda: len(seen.fills) == 1, within=10)  # polling still works
        assert tv.stream.listening == 0
    finally:
        await broker.close()


async def test_heartbeats_keep_the_stream_alive(tv: TradovateStandin, tmp_path: Path) -> None:
    tv.stream.client_timeout = 0.4  # the stand-in drops a client silent this long
    broker, seen = await streaming_broker(tv, tmp_path, poll=60, heartbeat=0.1)
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        await asyncio.sleep(1.2)
        assert tv.stream.heartbeats >= 5 and tv.stream.connections == 1 and broker.stream.healthy()
        await broker.place_order(req())
        await wait_until(lambda: len(seen.fills) == 1, within=10)
    finally:
        await broker.close()


async def test_a_silent_client_is_dropped_and_reconnects(tv: TradovateStandin, tmp_path: Path) -> None:
    tv.stream.client_timeout = 0.3
    broker, _ = await streaming_broker(tv, tmp_path, poll=60, heartbeat=5.0)  # far too slow
    try:
        assert broker.stream is not None
        await wait_until(lambda: tv.stream.connections >= 2, within=10)
        assert tv.stream.heartbeats == 0
    finally:
        await broker.close()


async def test_other_accounts_of_the_user_are_not_reported(tv: TradovateStandin, tmp_path: Path) -> None:
    broker, seen = await streaming_broker(tv, tmp_path, poll=60)
    other, theirs = await streaming_broker(tv, tmp_path / "other", poll=60, config={"account_id": 7002})
    try:
        assert broker.stream is not None and other.stream is not None
        await wait_until(lambda: broker.stream.healthy() and other.stream.healthy(), within=10)  # type: ignore[union-attr]
        await other.place_order(req(key="theirs"))
        await broker.place_order(req("MNQ1!", key="mine"))
        await wait_until(lambda: len(seen.fills) == 1 and len(theirs.fills) == 1, within=10)
        await asyncio.sleep(0.2)
    finally:
        await broker.close()
        await other.close()
    assert [(s, q) for s, q, _ in seen.fills] == [("MNQ1!", 1)]
    assert [(s, q) for s, q, _ in theirs.fills] == [("ES1!", 1)]
    assert {r.order.account for r in seen.reports if r.order is not None} <= {"tv1"}


async def test_renewed_token_reauthorizes_the_stream(tv: TradovateStandin, tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
    broker, seen = await streaming_broker(tv, tmp_path, poll=60, clock=clock)
    try:
        stream = broker.stream
        assert stream is not None
        await wait_until(stream.healthy, within=10)
        first = broker.session.token
        assert tv.stream.authorized == [first]
        now[0] += timedelta(seconds=broker.settings.token_renew_seconds + 1)
        await broker.positions()  # any REST call renews the token
        assert tv.count("/auth/renewaccesstoken") == 1 and broker.session.token != first
        await wait_until(lambda: stream.connects == 2 and stream.healthy(), within=10)
        assert tv.stream.authorized == [first, broker.session.token]
        await broker.place_order(req())
        await wait_until(lambda: len(seen.fills) == 1, within=10)
    finally:
        await broker.close()


async def test_stream_off_by_setting_polls_only(tv: TradovateStandin, tmp_path: Path) -> None:
    broker, seen = await streaming_broker(tv, tmp_path, poll=0.05, config={"stream": False})
    try:
        await broker.place_order(req())
        await wait_until(lambda: len(seen.fills) == 1, within=10)
        assert broker.stream is None and tv.stream.connections == 0 and broker.healthy()
    finally:
        await broker.close()


async def test_order_filled_before_its_fill_event_reads_the_fill_once(tv: TradovateStandin, tmp_path: Path) -> None:
    tv.stream.fills_after_orders = True  # the order's Filled update overtakes its fill event
    broker, seen = await streaming_broker(tv, tmp_path, poll=60)
    try:
        assert broker.stream is not None
        await wait_until(broker.stream.healthy, within=10)
        resting = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(5990)))
        tv.set_price(ES, 5990)
        await wait_until(lambda: len(seen.fills) == 1 and OrderStatus.FILLED in seen.statuses(
            resting.broker_order_id), within=10)
        await wait_until(lambda: any(p["entityType"] == "fill" for p in tv.stream.published), within=10)
        await asyncio.sleep(0.2)  # the late fill event has been handled too
        assert tv.count("/fill/deps") >= 1  # read when the order said Filled without a fill
    finally:
        await broker.close()
    assert [i for _, _, i in seen.fills] == fill_ids(tv)
    assert seen.statuses(resting.broker_order_id) in (FILLED, NEW_FILLED)
    [fill] = [r.fill for r in seen.reports if r.fill is not None]
    [status] = [r for r in seen.reports if r.order is not None and r.order.status is OrderStatus.FILLED]
    assert seen.reports.index(status) > seen.reports.index(next(r for r in seen.reports if r.fill is fill))
