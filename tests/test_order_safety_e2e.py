"""End-to-end on the paper broker: brackets cover only what opens, exits shrink with their position, expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.domain import Order, SignalStatus
from tests.conftest import SECRET, alert, client_for, settled, wait_until

URL = f"/webhook/tradingview/{SECRET}"


async def position(daemon: Any, symbol: str, account: str = "paper") -> Decimal:
    for p in await daemon.brokers[account].positions():
        if p.symbol == symbol:
            return Decimal(p.quantity)
    return Decimal(0)


def exits(orders: list[Order]) -> list[tuple[str, str, Decimal, Decimal]]:
    """(type, side, quantity, price) of the resting orders, sorted."""
    return sorted((o.order_type.value, o.side.value, o.quantity, o.limit_price or o.stop_price or Decimal(0))
                  for o in orders)


async def send(daemon: Any, client: Any, body: dict[str, Any]) -> Any:
    response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


async def test_flip_with_brackets_protects_only_the_new_position(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    broker = daemon.brokers["paper"]
    async with client_for(daemon) as client:
        await send(daemon, client, alert(id="f1", action="sell", quantity="5"))
        record = await send(daemon, client, {"ticker": "AAPL", "action": "buy", "target_position": "1",
                                             "take_profit": "110", "stop_loss": "95", "price": "100", "id": "f2"})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await position(daemon, "AAPL") == 1
    assert exits(await broker.open_orders()) == [("limit", "sell", 1, 110), ("stop", "sell", 1, 95)]
    # The exit of the short and the new entry are two orders of the one signal.
    assert sorted((o.side.value, o.quantity) for o in record.orders if o.parent_order_id is None) == [
        ("buy", 1), ("buy", 5)]
    # The stop triggers: the account is flat, not short 5.
    await broker.observe_price("AAPL", Decimal("94"), datetime.now(UTC))
    assert await position(daemon, "AAPL") == 0
    assert await broker.open_orders() == []


async def test_an_order_that_only_reduces_gets_no_bracket(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    broker = daemon.brokers["paper"]
    async with client_for(daemon) as client:
        await send(daemon, client, alert(id="r1", action="sell", quantity="5"))
        record = await send(daemon, client, alert(id="r2", action="buy", quantity="2", take_profit="90",
                                                  stop_loss="105"))
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await position(daemon, "AAPL") == -3
    assert await broker.open_orders() == []


async def test_resting_exits_shrink_with_the_position(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    broker = daemon.brokers["paper"]
    async with client_for(daemon) as client:
        await send(daemon, client, alert(id="s1", quantity="10", take_profit="110", stop_loss="95"))
        record = await send(daemon, client, {"ticker": "AAPL", "action": "exit", "quantity": "4", "price": "101",
                                             "id": "s2"})
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert await position(daemon, "AAPL") == 6
        assert exits(await broker.open_orders()) == [("limit", "sell", 6, 110), ("stop", "sell", 6, 95)]
        # Closed at the broker by hand: the exits go with the position.
        await broker.close_position("AAPL")
        await wait_until(lambda: daemon.store.orders("paper", open_only=True) == [], within=15)
    assert await broker.open_orders() == []
    await broker.observe_price("AAPL", Decimal("90"), datetime.now(UTC))
    assert await position(daemon, "AAPL") == 0
