"""The official alpaca-py SDK as an independent client of the Alpaca stand-in; its models check it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Clock, Order, Position, TradeAccount
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.contract import assert_no_violations
from tests.standins.deviations import BY_BROKER


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    stand = AlpacaStandIn(tolerated=BY_BROKER["alpaca-sdk"])
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()
    assert_no_violations(stand.violations)


@pytest.fixture
def client(standin: AlpacaStandIn) -> TradingClient:
    return TradingClient(standin.key_id, standin.secret_key, paper=True, url_override=standin.base_url)


async def call(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """The SDK is synchronous; run it off the loop that serves the stand-in, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout=10)


async def test_account_and_clock(client: TradingClient) -> None:
    account = await call(client.get_account)
    assert isinstance(account, TradeAccount)
    assert Decimal(str(account.cash)) == Decimal("100000")
    clock = await call(client.get_clock)
    assert isinstance(clock, Clock) and clock.is_open


async def test_market_order_fills_and_position_closes(client: TradingClient, standin: AlpacaStandIn) -> None:
    standin.set_price("AAPL", Decimal("187.50"))
    order = await call(
        client.submit_order,
        MarketOrderRequest(
            symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="sdk-1"
        ),
    )
    assert isinstance(order, Order)
    assert order.status == OrderStatus.FILLED and order.filled_avg_price == "187.5000"
    fetched = await call(client.get_order_by_client_id, "sdk-1")
    assert fetched.id == order.id

    positions = await call(client.get_all_positions)
    assert len(positions) == 1 and isinstance(positions[0], Position)
    assert positions[0].symbol == "AAPL" and positions[0].qty == "3"

    closing = await call(client.close_position, "AAPL")
    assert isinstance(closing, Order) and closing.side == OrderSide.SELL
    assert await call(client.get_all_positions) == []


async def test_limit_order_rests_is_listed_and_cancelled(client: TradingClient) -> None:
    order = await call(
        client.submit_order,
        LimitOrderRequest(
            symbol="MSFT", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=90.5
        ),
    )
    assert order.status == OrderStatus.NEW and order.limit_price == "90.5"
    listed = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [o.id for o in listed] == [order.id]
    await call(client.cancel_order_by_id, order.id)
    closed = await call(client.get_orders, GetOrdersRequest(status=QueryOrderStatus.CLOSED))
    assert closed[0].status == OrderStatus.CANCELED


async def test_bracket_order_has_legs(client: TradingClient) -> None:
    order = await call(
        client.submit_order,
        MarketOrderRequest(
            symbol="SPY",
            qty=1,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=110),
            stop_loss=StopLossRequest(stop_price=95),
        ),
    )
    assert order.order_class == OrderClass.BRACKET
    assert order.legs is not None and {leg.type for leg in order.legs} == {"limit", "stop"}


async def test_duplicate_client_order_id_is_422(client: TradingClient) -> None:
    request = MarketOrderRequest(
        symbol="IBM", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id="dup-1"
    )
    await call(client.submit_order, request)
    with pytest.raises(APIError) as err:
        await call(client.submit_order, request)
    assert err.value.status_code == 422


async def test_close_all_positions_is_multi_status(client: TradingClient) -> None:
    for symbol in ("AAPL", "TSLA"):
        await call(
            client.submit_order,
            MarketOrderRequest(symbol=symbol, qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY),
        )
    responses = await call(client.close_all_positions, cancel_orders=True)
    assert sorted(r.symbol for r in responses) == ["AAPL", "TSLA"]
    assert all(r.status == 200 for r in responses)
    assert await call(client.get_all_positions) == []


async def test_wrong_keys_are_refused(standin: AlpacaStandIn) -> None:
    bad = TradingClient("nope", "nope", paper=True, url_override=standin.base_url)
    with pytest.raises(APIError) as err:
        await call(bad.get_account)
    assert err.value.status_code == 401
