"""End-to-end on the broker stand-ins: flips and reduce-only orders with brackets, group cancels, unknown
symbols, and a placement retry that stops at the signal's expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.domain import Order, SignalStatus
from tests.conftest import SECRET, client_for, settings_for, settled, wait_until
from tests.standin_fixtures import tradovate_fronts as tv_fronts
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.contract import assert_no_violations
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.tradovate_api import TradovateStandin
from tests.test_projectx_adapter import ensure_front_contracts as px_fronts

URL = f"/webhook/tradingview/{SECRET}"


class Venue:
    """One broker stand-in with the daemon account that trades it."""

    def __init__(self, name: str, standin: Any, account: dict[str, Any], ticker: str, price: Decimal,
                 tick: Decimal) -> None:
        self.name, self.standin, self.account, self.ticker, self.price, self.tick = (
            name, standin, account, ticker, price, tick)

    def body(self, **fields: Any) -> dict[str, Any]:
        body = {"ticker": self.ticker, "account": "acct", "price": str(self.price)} | fields
        return {k: v for k, v in body.items() if v is not None}

    def above(self, ticks: int) -> str:
        return str(self.price + ticks * self.tick)


@pytest.fixture(params=["alpaca", "projectx", "tradovate"])
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[Venue]:
    if request.param == "alpaca":
        alpaca = AlpacaStandIn()
        await alpaca.start()
        alpaca.set_price("AAPL", Decimal("100"))
        yield Venue("alpaca", alpaca, {"broker": "alpaca", "alpaca": {
            "key_id": alpaca.key_id, "secret_key": alpaca.secret_key, "base_url": alpaca.base_url,
            "timeout_seconds": 2, "rate_limit_per_minute": 6000, "poll_interval_seconds": 0.2}},
            "AAPL", Decimal("100"), Decimal("0.01"))
        await alpaca.stop()
        assert_no_violations(alpaca.violations)
    elif request.param == "projectx":
        px = ProjectXStandin()
        px_fronts(px)
        await px.start()
        yield Venue("projectx", px, {"broker": "projectx", "projectx": {
            "username": "trader", "api_key": "px-api-key", "base_url": px.url, "poll_interval_seconds": 0.2,
            "timeout_seconds": 2, "rate_limit_per_minute": 1200}}, "ES1!", Decimal("6000"), Decimal("0.25"))
        await px.stop()
        px.assert_no_violations()
    else:
        tv = await TradovateStandin().start()
        tv_fronts(tv)
        yield Venue("tradovate", tv, {"broker": "tradovate", "tradovate": {
            "username": "trader", "password": "tv-password", "cid": 8, "sec": "tv-secret",
            "device_id": "e2e-device", "base_url": tv.url, "account_spec": "DEMO7001", "timeout_seconds": 2,
            "rate_limit_per_minute": 6000, "poll_interval_seconds": 0.05}}, "ES1!", Decimal("6000"),
            Decimal("0.25"))
        await tv.stop()
        tv.assert_no_violations()


async def started(start_daemon: Any, venue: Venue, tmp_path: Path) -> Any:
    return await start_daemon(settings_for(tmp_path / "state", accounts={"acct": venue.account}))


async def send(daemon: Any, client: Any, body: dict[str, Any]) -> Any:
    response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


async def held(daemon: Any) -> Decimal:
    return sum((p.quantity for p in await daemon.brokers["acct"].positions()), Decimal(0))


async def resting(daemon: Any) -> list[Order]:
    return await daemon.brokers["acct"].open_orders()


async def test_flip_with_brackets(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    async with client_for(daemon) as client:
        short = await send(daemon, client, venue.body(action="sell", quantity="2", id="fl-1"))
        assert short.status is SignalStatus.EXECUTED, short.reason
        await wait_until(lambda: daemon.store.positions("acct"), within=15)
        flip = await send(daemon, client, venue.body(action="buy", target_position="1", id="fl-2",
                                                     take_profit=venue.above(40), stop_loss=venue.above(-40)))
        assert flip.status is SignalStatus.EXECUTED, flip.reason
        exits = await wait_until(lambda: [o for o in daemon.store.orders("acct", open_only=True)
                                          if o.parent_order_id], within=15)
    assert await held(daemon) == 1
    assert sorted(o.quantity for o in exits) == [1, 1]  # not 3: only the opening quantity is protected
    assert sorted(o.quantity for o in await resting(daemon)) == [1, 1]


async def test_reduce_only_with_brackets(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    async with client_for(daemon) as client:
        await send(daemon, client, venue.body(action="sell", quantity="2", id="ro-1"))
        await wait_until(lambda: daemon.store.positions("acct"), within=15)
        record = await send(daemon, client, venue.body(action="buy", quantity="1", id="ro-2",
                                                       take_profit=venue.above(40), stop_loss=venue.above(-40)))
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await held(daemon) == -1
    assert await resting(daemon) == []


async def test_bracket_cancelled_as_a_group(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    async with client_for(daemon) as client:
        entry = await send(daemon, client, venue.body(action="buy", quantity="1", id="gc-1", order_type="limit",
                                                      limit_price=venue.above(-20), take_profit=venue.above(20),
                                                      stop_loss=venue.above(-40)))
        assert entry.status is SignalStatus.EXECUTED, entry.reason
        before = len(await resting(daemon))
        calls = cancel_calls(venue)
        record = await send(daemon, client, venue.body(action="cancel", id="gc-2", price=None))
    assert record.status is SignalStatus.EXECUTED
    assert await resting(daemon) == []
    assert record.reason == f"cancelled {before} orders"
    assert cancel_calls(venue) - calls == 1  # the entry only: its legs go with it


def cancel_calls(venue: Venue) -> int:
    if venue.name == "alpaca":
        return sum(1 for m, p in venue.standin.requests if m == "DELETE" and p.startswith("/v2/orders/"))
    if venue.name == "projectx":
        return int(venue.standin.count("/api/Order/cancel"))
    return int(venue.standin.count("/order/cancelorder"))


async def test_unknown_symbol_is_an_order_refusal(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    ticker = "ZZZQ" if venue.name == "alpaca" else "ZQX1!"
    async with client_for(daemon) as client:
        record = await send(daemon, client, venue.body(ticker=ticker, action="buy", quantity="1", id="us-1"))
        health = (await client.get("/healthz")).json()
    assert record.status is SignalStatus.FAILED
    assert record.reason.startswith(f"order rejected: unknown symbol {ticker}")
    assert not [e for e in daemon.events.recent if e.kind == "broker" and "broker problem" in e.summary]
    assert health["checks"]["broker:acct"] is True and daemon.brokers["acct"].healthy()


async def test_retry_stops_at_the_signals_expiry(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    alpaca = AlpacaStandIn()
    await alpaca.start()
    try:
        alpaca.set_price("AAPL", Decimal("100"))
        account = {"broker": "alpaca", "alpaca": {
            "key_id": alpaca.key_id, "secret_key": alpaca.secret_key, "base_url": alpaca.base_url,
            "timeout_seconds": 2, "rate_limit_per_minute": 6000, "poll_interval_seconds": 60}}
        daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"acct": account}))
        alpaca.inject("status", count=10, method="POST", path="/v2/orders", status=429, retry_after=30)
        body = {"ticker": "AAPL", "action": "buy", "quantity": "1", "price": "100", "account": "acct",
                "id": "ex-1", "time": datetime.now(UTC).isoformat(), "max_lag": "3"}
        began = time.monotonic()
        async with client_for(daemon) as client:
            record = await send(daemon, client, body)
        assert time.monotonic() - began < 10  # the 30 s Retry-After was not waited out
        assert record.status is SignalStatus.EXPIRED, record.reason
        assert "expires at" in record.reason and "30 s" in record.reason
        assert alpaca.count("POST", "/v2/orders") == 1 and alpaca.orders == {}
    finally:
        await alpaca.stop()



async def test_exits_shrink_and_go_with_the_position(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await started(start_daemon, venue, tmp_path)
    broker = daemon.brokers["acct"]
    async with client_for(daemon) as client:
        entry = await send(daemon, client, venue.body(action="buy", quantity="2", id="sh-1",
                                                      take_profit=venue.above(40), stop_loss=venue.above(-40)))
        assert entry.status is SignalStatus.EXECUTED, entry.reason
        await wait_until(lambda: len([o for o in daemon.store.orders("acct", open_only=True) if o.parent_order_id])
                         == 2, within=15)
        partial = await send(daemon, client, venue.body(action="exit", quantity="1", id="sh-2"))
        assert partial.status is SignalStatus.EXECUTED, partial.reason

        async def shrunk() -> bool:
            return sorted(o.quantity for o in await resting(daemon)) == [1, 1]

        await wait_async(shrunk)
        assert await held(daemon) == 1
        # Closed at the broker by other means: its exits are cancelled, they cannot open a short.
        await broker.close_position(venue.ticker)

        async def gone() -> bool:
            return await resting(daemon) == []

        await wait_async(gone)
    assert await held(daemon) == 0


async def wait_async(check: Any, within: float = 15.0, every: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(every)
