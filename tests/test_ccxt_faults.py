"""CcxtBroker under Binance stand-in faults: 5xx, reset and timeout after accept, -1007, 429/418, down at start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from brokers.base import BrokerUnavailable
from brokers.ccxt.broker import CcxtBroker
from brokers.http import Throttled
from daemon.domain import OrderStatus, OrderType
from tests.standins.binance_api import BinanceStandIn
from tests.test_ccxt_broker import Harness, harness, posts, req, standin

__all__ = ["harness", "standin"]  # the fixtures, shared with the adapter tests

ORDER = "/api/v3/order"


@pytest.fixture
async def broker(harness: Harness) -> CcxtBroker:
    return await harness.broker(timeout_seconds=1)


def placed(standin: BinanceStandIn) -> int:
    return len(standin.book.orders)


async def test_5xx_before_the_order_is_looked_up_then_sent_once(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.faults.fail_next(1, status=503, path=ORDER, body='{"code":-1001,"msg":"Internal error"}')
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and placed(standin) == 1
    assert posts(standin) == 2 and standin.count("GET", ORDER) == 1  # looked up before it was resent


async def test_reset_after_accept_returns_the_accepted_order(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.faults.drop_next(1, path=ORDER, after_handling=True)
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and placed(standin) == 1 and posts(standin) == 1
    assert order.client_order_id == req().client_order_id


async def test_timeout_after_accept_returns_the_accepted_order(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.faults.delay_next(2.5, n=1, path=ORDER, after_handling=True)
    order = await broker.place_order(req("ETHUSDT", "0.1", order_type=OrderType.LIMIT, limit_price=Decimal("2900")))
    assert order.status is OrderStatus.NEW and placed(standin) == 1 and posts(standin) == 1


async def test_execution_status_unknown_is_looked_up(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.unknown_next(1, path=ORDER)  # the order is accepted, the answer is -1007
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and placed(standin) == 1 and posts(standin) == 1


async def test_lookup_failing_after_a_lost_answer_resends_nothing(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.faults.drop_next(1, path=ORDER, after_handling=True)
    standin.faults.fail_next(10, status=503, path=ORDER)  # every lookup fails too
    with pytest.raises(BrokerUnavailable, match="state unknown"):
        await broker.place_order(req())
    assert placed(standin) == 1 and posts(standin) == 1


async def test_429_on_placement_waits_retry_after_then_sends_once(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.throttle_next(1, status=429, retry_after=0.1, path=ORDER)
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and placed(standin) == 1 and posts(standin) == 2


async def test_429_on_a_read_is_retried_after_retry_after(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.throttle_next(1, status=429, retry_after=0.05, path="/api/v3/account")
    assert await broker.positions() == []
    assert standin.count("GET", "/api/v3/account") == 3  # connect, the throttled one, its retry


async def test_418_ip_ban_is_throttled_not_hammered(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.throttle_next(5, status=418, retry_after=120, path="/api/v3/account")
    with pytest.raises(Throttled) as caught:
        await broker.account_state()
    assert caught.value.retry_after == 120 and "throttled" in caught.value.reason
    assert standin.count("GET", "/api/v3/account") == 2  # connect and the one refused; no retry within the ban
    assert not broker.healthy()


async def test_duplicate_client_order_id_returns_the_open_order(harness: Harness, standin: BinanceStandIn,
                                                                tmp_path: Path) -> None:
    first = await harness.broker()
    resting = await first.place_order(req("ETHUSDT", "0.1", order_type=OrderType.LIMIT, limit_price=Decimal("2900")))
    other = Harness(standin, tmp_path / "other")  # a second daemon with its own journal
    try:
        second = await other.broker()
        again = await second.place_order(req("ETHUSDT", "0.1", order_type=OrderType.LIMIT,
                                             limit_price=Decimal("2900")))
    finally:
        await other.close()
    assert again.broker_order_id == resting.broker_order_id and placed(standin) == 1


async def test_down_at_start_up_then_back(harness: Harness, standin: BinanceStandIn) -> None:
    port = standin.port
    await standin.stop()
    with pytest.raises(BrokerUnavailable, match="binance is unreachable"):
        await harness.broker()
    await standin.start(port)
    broker = await harness.broker()
    assert broker.healthy() and (await broker.place_order(req())).status is OrderStatus.FILLED
