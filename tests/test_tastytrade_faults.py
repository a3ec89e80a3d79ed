"""TastytradeBroker under faults: lost answers after accept, timeouts, 5xx, 429, token expiry, refused logins,
the service down at start-up, a restart in the middle, and polling that reports each change once."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.base import AuthenticationFailed, BrokerUnavailable
from daemon.domain import OrderStatus, OrderType, client_order_id
from tests.standin_fixtures import reports_until_fills
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.test_tastytrade_adapter import ACCOUNT, COMPLEX, ORDERS, bodies, broker, make_broker, req, stand

__all__ = ["broker", "stand"]  # the fixtures, shared with the adapter tests
DOWN = '{"error": {"code": "service_unavailable", "message": "try again later"}}'
POSITIONS = f"/accounts/{ACCOUNT_NUMBER}/positions"


async def test_reset_after_accept_is_found_by_its_identifier(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.faults.drop_next(path=ORDERS)
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and order.client_order_id == client_order_id(ACCOUNT, "sig-1")
    assert len(bodies(stand)) == 1 and len(stand.orders_for("AAPL")) == 1
    entry = broker.journal.get(order.client_order_id)
    assert entry is not None and entry["found_by"] == "lookup" and entry["order_id"] == order.broker_order_id


async def test_bracket_reset_after_accept_keeps_its_exits(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.faults.drop_next(path=COMPLEX)
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90),
                                         take_profit=Decimal(120), stop_loss=Decimal(80)))
    assert len(bodies(stand, path=COMPLEX)) == 1 and len(stand.orders_for("AAPL")) == 3
    exits = [o for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id]
    assert sorted(o.client_order_id for o in exits) == [entry.client_order_id + "-sl", entry.client_order_id + "-tp"]


async def test_timeout_after_accept_does_not_duplicate(stand: TastytradeStandin, tmp_path: Path) -> None:
    broker = make_broker(stand, tmp_path, config={"timeout_seconds": 0.3})
    await broker.connect()
    try:
        stand.faults.delay_next(1.0, path=ORDERS, after_handling=True)
        order = await broker.place_order(req())
        assert order.status is OrderStatus.FILLED and len(bodies(stand)) == 1
    finally:
        await broker.close()


async def test_5xx_and_429_before_accept_are_resent_once_looked_up(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.faults.fail_next(1, status=503, path=ORDERS, body=DOWN)  # the POST: not accepted
    stand.faults.fail_next(1, status=429, path=ORDERS)  # the lookup before resending: throttled, no headers
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and len(stand.orders_for("AAPL")) == 1
    assert stand.count("POST", ORDERS) == 2 and stand.count("GET", ORDERS) == 2  # the lookup and its retry


async def test_reads_ride_out_429_and_5xx(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.faults.fail_next(2, status=429, path=POSITIONS)
    stand.faults.fail_next(1, status=502, path=POSITIONS)
    assert await broker.positions() == [] and stand.count("GET", POSITIONS) == 4
    stand.faults.fail_next(10, status=503, path=POSITIONS, body=DOWN)
    with pytest.raises(BrokerUnavailable, match="HTTP 503: try again later"):
        await broker.positions()


async def test_restart_after_lost_answer_does_not_duplicate(stand: TastytradeStandin, tmp_path: Path) -> None:
    first = make_broker(stand, tmp_path)
    await first.connect()
    stand.faults.drop_next(path=ORDERS)  # accepted, answer lost ...
    stand.faults.fail_next(20, status=503, path=ORDERS, body=DOWN)  # ... and the lookup cannot tell
    try:
        with pytest.raises(BrokerUnavailable, match="state unknown"):
            await first.place_order(req())
    finally:
        await first.close()  # the process dies here
    stand.faults.clear()
    second = make_broker(stand, tmp_path)  # a new process, same state directory
    await second.connect()
    try:
        order = await second.place_order(req())  # the engine resends the signal's order
    finally:
        await second.close()
    assert stand.count("POST", ORDERS) == 1 and len(stand.orders_for("AAPL")) == 1
    assert order.client_order_id == client_order_id(ACCOUNT, "sig-1")


async def test_expired_token_is_renewed_and_the_order_placed_once(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.expire_access_tokens()
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and len(stand.orders_for("AAPL")) == 1
    assert stand.logins == [("oauth", True), ("oauth", True)] and broker.healthy()


async def test_refused_login_is_not_retried(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.revoke_logins()
    stand.expire_access_tokens()
    with pytest.raises(AuthenticationFailed, match=r"login refused .*check client_secret and refresh_token"):
        await broker.place_order(req())
    with pytest.raises(AuthenticationFailed, match="no further login is tried"):
        await broker.positions()
    assert stand.logins == [("oauth", True), ("oauth", False)] and not broker.healthy()
    assert stand.orders_for("AAPL") == []


async def test_down_at_startup_is_unavailable(tmp_path: Path) -> None:
    stand = await TastytradeStandin().start()
    await stand.stop()
    broker = make_broker(stand, tmp_path, config={"timeout_seconds": 1})
    try:
        with pytest.raises(BrokerUnavailable, match=r"tastytrade is unreachable at http://127\.0\.0\.1:\d+"):
            await broker.connect()
        assert not broker.healthy()
    finally:
        await broker.close()


async def test_polling_emits_each_fill_and_status_change_once(stand: TastytradeStandin, tmp_path: Path) -> None:
    old = make_broker(stand, tmp_path / "other")  # an order that exists before connect is not news
    await old.connect()
    await old.place_order(req("MSFT", key="old"))
    await old.close()

    broker = make_broker(stand, tmp_path, poll_interval=0.05)
    reports, two_fills = reports_until_fills(broker, 2)
    await broker.connect()
    try:
        resting = await broker.place_order(req(qty="2", order_type=OrderType.LIMIT, limit_price=Decimal(95)))
        await asyncio.sleep(0.2)
        stand.set_price("AAPL", 95)
        await broker.place_order(req("ES1!", "1", key="m"))
        await asyncio.wait_for(two_fills.wait(), timeout=5)
        await asyncio.sleep(0.3)  # several more polls: nothing new may appear
    finally:
        await broker.close()
    fills = [r.fill for r in reports if r.fill is not None]
    assert sorted((f.symbol, f.quantity) for f in fills) == [("AAPL", 2), ("ES1!", 1)]
    statuses = [r.order.status for r in reports if r.order and r.order.broker_order_id == resting.broker_order_id]
    assert statuses in ([OrderStatus.FILLED], [OrderStatus.NEW, OrderStatus.FILLED])
    assert not any(r.order is not None and r.order.symbol == "MSFT" for r in reports)
