"""TastytradeBroker under faults: lost answers after accept, timeouts, 5xx, 429, token expiry, refused logins,
the service down at start-up, a restart in the middle, and polling that reports each change once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from brokers.base import AuthenticationFailed, BrokerUnavailable
from daemon.domain import OrderStatus, OrderType
from tests import stock_adapter_checks as checks
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.test_tastytrade_adapter import COMPLEX, DOWN, ORDERS, VENUE, bodies, broker, make_broker, req, stand

__all__ = ["broker", "stand"]  # the fixtures, shared with the adapter tests
POSITIONS = f"/accounts/{ACCOUNT_NUMBER}/positions"


async def test_reset_after_accept_is_found_by_its_identifier(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    await checks.reset_after_accept_is_looked_up(VENUE, broker, stand)


async def test_bracket_reset_after_accept_keeps_its_exits(broker, stand: TastytradeStandin) -> None:  # type: ignore[no-untyped-def]
    stand.faults.drop_next(path=COMPLEX)
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90),
                                         take_profit=Decimal(120), stop_loss=Decimal(80)))
    assert len(bodies(stand, path=COMPLEX)) == 1 and len(stand.orders_for("AAPL")) == 3
    exits = [o for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id]
    assert sorted(o.client_order_id for o in exits) == [entry.client_order_id + "-sl", entry.client_order_id + "-tp"]


async def test_timeout_after_accept_does_not_duplicate(stand: TastytradeStandin, tmp_path: Path) -> None:
    await checks.timeout_after_accept_does_not_duplicate(VENUE, stand, tmp_path)


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
    await checks.restart_after_lost_answer_does_not_duplicate(VENUE, stand, tmp_path)


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
    await checks.polling_emits_each_fill_and_status_change_once(VENUE, stand, tmp_path, req("ES1!", "1", key="m"),
                                                                [("AAPL", 2), ("ES1!", 1)])
