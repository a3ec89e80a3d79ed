"""AlpacaBroker against the contract-checked Alpaca stand-in: orders, positions, flatten, faults, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from brokers.alpaca.broker import AlpacaBroker
from brokers.base import AuthenticationFailed, Broker, BrokerUnavailable, OrderRejected, UnknownSymbol
from config.brokers import AlpacaSettings
from daemon.domain import OrderStatus, OrderType, Side, TimeInForce, client_order_id
from tests.standin_fixtures import connected, quick_retries, reports_until_fills, request_maker
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.contract import assert_no_violations

FAST = quick_retries(max_retry_after=2.0)


@asynccontextmanager
async def alpaca_running(**options: Any) -> AsyncIterator[AlpacaStandIn]:
    """A started Alpaca stand-in (built with `options`), stopped afterwards; a clean exit also proves no
    exchange broke the contract."""
    stand = AlpacaStandIn(**options)
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()
    assert_no_violations(stand.violations)


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    async with alpaca_running() as stand:
        yield stand


def make_broker(standin: AlpacaStandIn, *, key: str | None = None, timeout: float = 2.0, stream: bool = True,
                **kw: object) -> AlpacaBroker:
    settings = AlpacaSettings(
        stream=stream,
        key_id=SecretStr(key or standin.key_id),
        secret_key=SecretStr(standin.secret_key),
        base_url=standin.base_url,
        timeout_seconds=timeout,
        rate_limit_per_minute=6000,
    )
    return AlpacaBroker("acct1", settings, retry=FAST, poll_interval=0, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def broker(standin: AlpacaStandIn) -> AsyncIterator[AlpacaBroker]:
    async with connected(make_broker(standin)) as b:
        yield b


req = request_maker("acct1", "AAPL", "5")


async def test_is_a_broker(broker: AlpacaBroker) -> None:
    assert isinstance(broker, Broker) and broker.healthy()


async def test_market_order_fills_into_position_and_account(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    standin.set_price("AAPL", Decimal("190.25"))
    order = await broker.place_order(req("NASDAQ:AAPL"))
    assert order.status is OrderStatus.FILLED and order.filled_quantity == 5
    assert order.average_fill_price == Decimal("190.25") and order.client_order_id == client_order_id("acct1", "sig-1")
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("AAPL", 5, Decimal("190.25"))
    account = await broker.account_state()
    assert account.cash == Decimal("100000") - Decimal("951.25") and account.equity == Decimal("100000")
    [fill] = await broker.fills()
    assert (fill.quantity, fill.price, fill.client_order_id) == (5, Decimal("190.25"), order.client_order_id)
    assert await broker.find_order(order.client_order_id) == order.model_copy(update={"updated_at": order.updated_at})


async def test_limit_order_rests_then_modify_and_cancel(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    order = await broker.place_order(
        req("MSFT", "3", order_type=OrderType.LIMIT, limit_price=Decimal("95.5"), time_in_force=TimeInForce.GTC)
    )
    assert order.status is OrderStatus.NEW and order.limit_price == Decimal("95.5")
    assert [o.broker_order_id for o in await broker.open_orders()] == [order.broker_order_id]

    modified = await broker.modify_order(order.broker_order_id, quantity=Decimal(4), limit_price=Decimal("96"))
    assert modified.broker_order_id != order.broker_order_id  # Alpaca replaces
    assert (modified.quantity, modified.limit_price) == (4, Decimal("96"))
    assert modified.client_order_id == order.client_order_id  # the engine's id survives the replace

    cancelled = await broker.cancel_order(modified.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert await broker.open_orders() == []
    again = await broker.cancel_order(modified.broker_order_id)  # finished: returned unchanged
    assert again.status is OrderStatus.CANCELLED


async def test_bracket_order_has_linked_legs(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    entry = await broker.place_order(req("SPY", "2", take_profit=Decimal("110"), stop_loss=Decimal("95")))
    assert entry.status is OrderStatus.FILLED
    legs = [o for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id]
    assert sorted((o.order_type, o.side) for o in legs) == [(OrderType.LIMIT, Side.SELL), (OrderType.STOP, Side.SELL)]
    assert {o.oco_group for o in legs} == {entry.broker_order_id}
    take_profit = next(o for o in legs if o.order_type is OrderType.LIMIT)
    standin.fill_order(take_profit.broker_order_id)
    assert await broker.open_orders() == []  # the stop leg was cancelled with it
    assert await broker.positions() == []


async def test_close_position_and_flatten(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    await broker.place_order(req("AAPL", "2", key="a"))
    await broker.place_order(req("TSLA", "1", key="b", side=Side.SELL))
    resting = await broker.place_order(req("IBM", "1", key="c", order_type=OrderType.LIMIT, limit_price=Decimal(50)))
    closing = await broker.close_position("AAPL")
    assert closing is not None and closing.side is Side.SELL and closing.quantity == 2
    assert await broker.close_position("AAPL") is None  # nothing left to close

    report = await broker.flatten()
    assert [o.broker_order_id for o in report.cancelled] == [resting.broker_order_id]
    assert [(o.symbol, o.side) for o in report.closing] == [("TSLA", Side.BUY)]
    assert report.errors == []
    assert await broker.positions() == [] and await broker.open_orders() == []
    assert standin.count("DELETE", "/v2/positions") == 1  # native flatten, one call


async def test_refusals_are_typed(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    with pytest.raises(UnknownSymbol):
        await broker.place_order(req("NOPE"))
    with pytest.raises(UnknownSymbol):
        await broker.place_order(req("ES1!"))
    assert standin.count("POST", "/v2/orders") == 0  # refused before anything was sent
    with pytest.raises(OrderRejected, match="insufficient buying power"):
        await broker.place_order(req("AAPL", "100000"))


async def test_duplicate_client_order_id_returns_the_existing_order(
    broker: AlpacaBroker, standin: AlpacaStandIn
) -> None:
    first = await broker.place_order(req())
    second = await broker.place_order(req())  # a restart re-sending the same signal
    assert second.broker_order_id == first.broker_order_id
    assert len(standin.orders) == 1


async def test_timeout_after_accept_does_not_duplicate(standin: AlpacaStandIn) -> None:
    broker = make_broker(standin, timeout=0.3)
    await broker.connect()
    try:
        standin.inject("delay", method="POST", path="/v2/orders", delay=1.0)
        order = await broker.place_order(req())
        assert order.status is OrderStatus.FILLED
        assert standin.count("POST", "/v2/orders") == 1 and len(standin.orders) == 1
    finally:
        await broker.close()


async def test_connection_reset_after_accept_does_not_duplicate(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    standin.inject("drop", method="POST", path="/v2/orders")
    order = await broker.place_order(req())
    assert order.client_order_id == client_order_id("acct1", "sig-1")
    assert standin.count("POST", "/v2/orders") == 1 and len(standin.orders) == 1


async def test_5xx_then_success_places_once(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    standin.inject("status", count=2, method="POST", path="/v2/orders", status=503)
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED
    assert standin.count("POST", "/v2/orders") == 3 and len(standin.orders) == 1
    # lookups happened before each resend
    assert standin.count("GET", "/v2/orders:by_client_order_id") == 2


async def test_429_retry_after_is_honoured(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    standin.inject("status", method="GET", path="/v2/positions", status=429, retry_after=0.3)
    started = time.monotonic()
    assert await broker.positions() == []
    assert 0.3 <= time.monotonic() - started < 5.0
    standin.inject("status", method="POST", path="/v2/orders", status=429, retry_after=0.2)
    started = time.monotonic()
    await broker.place_order(req())
    assert 0.2 <= time.monotonic() - started < 5.0 and len(standin.orders) == 1


async def test_outage_longer_than_retries_is_unavailable(broker: AlpacaBroker, standin: AlpacaStandIn) -> None:
    standin.inject("status", count=50, status=503)
    with pytest.raises(BrokerUnavailable, match="HTTP 503"):
        await broker.account_state()
    assert not broker.healthy()
    standin.faults.clear()
    await broker.account_state()
    assert broker.healthy()


async def test_wrong_keys_raise_authentication_failed(standin: AlpacaStandIn) -> None:
    broker = make_broker(standin, key="wrong")
    try:
        with pytest.raises(AuthenticationFailed, match="401") as err:
            await broker.connect()
        assert "wrong" not in err.value.reason and standin.secret_key not in err.value.reason
        assert not broker.healthy()
    finally:
        await broker.close()


async def test_broker_down_at_connect_is_unavailable_with_reason() -> None:
    stand = AlpacaStandIn()
    await stand.start()
    url = stand.base_url
    await stand.stop()  # nothing listens on that port any more
    settings = AlpacaSettings(key_id=SecretStr("k"), secret_key=SecretStr("s"), base_url=url, timeout_seconds=1)
    broker = AlpacaBroker("acct1", settings, retry=FAST, poll_interval=0)
    try:
        with pytest.raises(
            BrokerUnavailable, match=r"alpaca is unreachable at http://127\.0\.0\.1:\d+: .*cannot reach"
        ):
            await broker.connect()
        assert not broker.healthy()
    finally:
        await broker.close()


async def test_polling_emits_each_fill_and_status_change_once(standin: AlpacaStandIn) -> None:
    broker = make_broker(standin)
    broker.poll_interval = 0.05
    reports, three_fills = reports_until_fills(broker, 3)
    await broker.connect()
    try:
        resting = await broker.place_order(req("AAPL", "4", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
        standin.fill_order(resting.broker_order_id, qty=Decimal(1))  # partial
        await asyncio.sleep(0.3)
        standin.fill_order(resting.broker_order_id)  # the rest
        await broker.place_order(req("MSFT", "1", key="m"))  # fills at once
        await asyncio.wait_for(three_fills.wait(), timeout=3)
        await asyncio.sleep(0.3)  # several more polls: nothing new may appear
    finally:
        await broker.close()
    fills = [r.fill for r in reports if r.fill is not None]
    assert sorted((f.symbol, f.quantity) for f in fills) == [("AAPL", 1), ("AAPL", 3), ("MSFT", 1)]
    assert len({f.fill_id for f in fills}) == 3
    statuses = [r.order.status for r in reports if r.order is not None and r.order.symbol == "AAPL"]
    assert statuses == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]


async def test_polling_sees_a_change_of_an_order_below_500_newer_ones(standin: AlpacaStandIn) -> None:
    """A page of the order list holds 500: the poller reads every page since its start, so a fill of the
    newest of 501 resting orders is reported, not only those of the 500 oldest (no stream: the poll alone)."""
    broker = make_broker(standin, stream=False)
    reports, one_fill = reports_until_fills(broker, 1)
    await broker.connect()
    try:
        placed = [await broker.place_order(req("AAPL", "2", key=f"rest-{n}", order_type=OrderType.LIMIT,
                                               limit_price=Decimal(90))) for n in range(501)]
        standin.fill_order(placed[-1].broker_order_id, qty=Decimal(1))
        await broker.poll_once()
        await asyncio.wait_for(one_fill.wait(), timeout=10)
    finally:
        await broker.close()
    newest = placed[-1].broker_order_id
    changed = [r.order.status for r in reports if r.order is not None and r.order.broker_order_id == newest]
    assert changed == [OrderStatus.PARTIALLY_FILLED]
