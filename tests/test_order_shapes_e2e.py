"""End-to-end on the paper broker: relative take-profit / stop-loss in each unit, sizing by quantity_type,
partial exits by percent of the position."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from daemon.domain import SignalStatus
from tests.conftest import SECRET, client_for, settled

URL = f"/webhook/tradingview/{SECRET}"


async def send(daemon: Any, body: dict[str, Any]) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


async def brackets(daemon: Any) -> dict[str, Decimal]:
    return {o.order_type.value: o.limit_price or o.stop_price for o in await daemon.brokers["paper"].open_orders()}


async def held(daemon: Any, symbol: str) -> Decimal:
    return sum((p.quantity for p in await daemon.brokers["paper"].positions() if p.symbol == symbol), Decimal(0))


@pytest.mark.parametrize(
    ("ticker", "price", "quantity", "take_profit", "stop_loss", "expected_tp", "expected_sl"),
    [
        ("AAPL", "100", "10", {"percent": "5"}, {"dollars": "2"}, "105", "98"),
        ("AAPL", "100", "10", {"points": "3.5"}, {"dollars": "50", "per": "position"}, "103.5", "95"),
        ("AAPL", "100", "10", {"ticks": "25"}, {"price": "90"}, "100.25", "90"),
        ("MNQ1!", "21000", "1", {"ticks": "20"}, {"ticks": "8"}, "21005", "20998"),  # 8 ticks on MNQ: 2.00
        ("ES1!", "6000", "2", {"dollars": "100"}, {"dollars": "500", "per": "position"}, "6002", "5995"),
        ("ES1!", "6000", "1", "6010", {"percent": "0.1"}, "6010", "5994"),
    ],
)
async def test_relative_exits_in_each_unit(start_daemon, ticker, price, quantity, take_profit, stop_loss,  # type: ignore[no-untyped-def]
                                           expected_tp, expected_sl) -> None:
    daemon = await start_daemon()
    record = await send(daemon, {"ticker": ticker, "action": "buy", "quantity": quantity, "price": price,
                                 "take_profit": take_profit, "stop_loss": stop_loss})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await brackets(daemon) == {"limit": Decimal(expected_tp), "stop": Decimal(expected_sl)}


async def test_relative_exits_of_a_short_are_mirrored(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    record = await send(daemon, {"ticker": "ES1!", "action": "sell", "quantity": "1", "price": "6000",
                                 "take_profit": {"ticks": "12"}, "stop_loss": {"points": "2"}})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await brackets(daemon) == {"limit": Decimal("5997"), "stop": Decimal("6002")}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"quantity_type": "fixed_quantity", "quantity": "7"}, 7),
        ({"quantity_type": "dollar_amount", "quantity": "1050"}, 10),
        ({"quantity_type": "percent_of_equity", "quantity": "10"}, 100),  # 10% of 100,000 at 100
        ({"quantity_type": "risk_dollar_amount", "quantity": "100", "stop_loss": "98"}, 50),
        ({"quantity_type": "risk_percent", "quantity": "0.5", "stop_loss": {"points": "4"}}, 125),
    ],
)
async def test_sizing_by_quantity_type(start_daemon, fields, expected) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    record = await send(daemon, {"ticker": "AAPL", "action": "buy", "price": "100", **fields})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await held(daemon, "AAPL") == expected


async def test_futures_sizing_uses_the_point_value(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    # risk 1,000 with the stop 8 points away on ES (50 $/point): 1000 / 400 = 2.5 -> 2 contracts
    record = await send(daemon, {"ticker": "ES1!", "action": "buy", "price": "6000", "quantity": "1000",
                                 "quantity_type": "risk_dollar_amount", "stop_loss": {"points": "8"}})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await held(daemon, "ES1!") == 2


@pytest.mark.parametrize(
    ("fields", "numbers"),
    [
        ({"quantity_type": "dollar_amount", "quantity": "99"}, "99 / 100 per unit = 0.99"),
        ({"quantity_type": "risk_dollar_amount", "quantity": "1", "stop_loss": "98"}, "1 / 2 per unit = 0.5"),
    ],
)
async def test_a_size_that_rounds_to_zero_is_refused_with_the_numbers(start_daemon, fields, numbers) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    record = await send(daemon, {"ticker": "AAPL", "action": "buy", "price": "100", **fields})
    assert record.status is SignalStatus.REJECTED
    assert numbers in record.reason and "rounds down to 0; nothing was sent" in record.reason
    assert daemon.store.orders() == []


async def test_percent_of_position_exit(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    await send(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "9", "price": "100", "id": "p1"})
    record = await send(daemon, {"ticker": "AAPL", "action": "exit", "percent_of_position": "50", "price": "100",
                                 "id": "p2"})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await held(daemon, "AAPL") == 5  # half of 9 is 4.5: 4 sold, rounded down


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"action": "buy", "quantity": "1", "stop_loss": {"tick": "8"}}, "stop_loss.tick is not a unit"),
        ({"action": "buy", "quantity": "1", "stop_loss": {"ticks": "8", "points": "2"}}, "takes one of"),
        ({"action": "buy", "quantity": "1", "take_profit": {"ticks": "-3"}}, "must be greater than zero"),
        ({"action": "buy", "quantity": "1", "take_profit": {"ticks": "NaN"}}, "finite number"),
        ({"action": "buy", "quantity": "100", "quantity_type": "risk_percent"}, "it needs stop_loss"),
        ({"action": "buy", "quantity": "1", "quantity_type": "lots"}, "quantity_type must be one of"),
        ({"action": "buy", "quantity": "1", "percent_of_position": "50"}, "goes with action exit"),
        ({"action": "exit", "percent_of_position": "150"}, "at most 100"),
    ],
)
async def test_bad_order_fields_are_refused_at_the_door(start_daemon, fields, problem) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        response = await client.post(URL, json={"ticker": "AAPL", "price": "100", **fields})
    assert response.status_code == 422 and response.json()["error"] == "invalid_field"
    assert problem in response.json()["detail"]
    assert daemon.store.orders() == []
