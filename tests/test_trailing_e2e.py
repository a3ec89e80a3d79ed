"""End-to-end trailing stops on the paper broker (emulated: the daemon moves a plain stop), through the webhook,
including a real daemon restart while a stop trails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.domain import OrderType, SignalStatus
from tests.conftest import SECRET, client_for, settled

URL = f"/webhook/tradingview/{SECRET}"
FAST = {"daemon": {"exit_mark_seconds": 0.2}}


async def eventually(probe: Callable[[], Awaitable[Any]], within: float = 15.0) -> Any:
    """The first truthy answer of `probe`, polled until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        answer = await probe()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last answer {answer!r})")
        await asyncio.sleep(0.05)


async def post(daemon: Daemon, body: dict[str, Any]) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"], within=15)


async def refused(daemon: Daemon, body: dict[str, Any]) -> str:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == 422, response.text
    return str(response.json()["detail"])


async def stops(daemon: Daemon, symbol: str = "AAPL") -> list[tuple[str, Decimal, Decimal | None]]:
    return [(o.side.value, o.quantity, o.stop_price) for o in await daemon.brokers["paper"].open_orders()
            if o.symbol == symbol and o.order_type is OrderType.STOP]


async def held(daemon: Daemon, symbol: str = "AAPL") -> Decimal:
    return sum((p.quantity for p in await daemon.brokers["paper"].positions() if p.symbol == symbol), Decimal(0))


async def mark(daemon: Daemon, price: str, symbol: str = "AAPL") -> None:
    """The paper market trades at `price` (its market data input)."""
    await daemon.brokers["paper"].observe_price(symbol, Decimal(price), daemon.clock())


async def stop_at(daemon: Daemon, price: str, symbol: str = "AAPL") -> list[Any]:
    async def probe() -> list[Any]:
        found = await stops(daemon, symbol)
        return found if [s for _, _, s in found] == [Decimal(price)] else []

    return await eventually(probe)


async def test_an_entrys_trailing_stop_follows_the_price_up_only_and_closes_the_position(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(**FAST)
    done = await post(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "10", "price": "100",
                               "trailing_stop": {"amount": "2"}, "take_profit": "120"})
    assert done.status is SignalStatus.EXECUTED, done.reason
    assert await held(daemon) == Decimal(10)
    assert await stops(daemon) == [("sell", Decimal(10), Decimal(98))]
    await mark(daemon, "105")
    await stop_at(daemon, "103")
    await mark(daemon, "104")  # a fall leaves the stop where it is
    await mark(daemon, "110.5")
    await stop_at(daemon, "108.5")
    await mark(daemon, "109")
    await asyncio.sleep(0.5)  # several mark rounds: the stop must not come back down
    assert [s for _, _, s in await stops(daemon)] == [Decimal("108.5")]
    # A signal's own price is a mark too (a resting limit buy far below the market, carrying price 112).
    await post(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "1", "order_type": "limit",
                        "limit_price": "50", "price": "112"})
    assert [s for _, _, s in await stops(daemon)] == [Decimal(110)]
    await mark(daemon, "109.9")  # through the stop: the position closes, the take-profit goes with it
    assert await eventually(lambda: _flat(daemon))
    assert await stops(daemon) == []
    assert [o.order_type for o in await daemon.brokers["paper"].open_orders()] == [OrderType.LIMIT]
    assert await eventually(lambda: _no_rules(daemon))


async def _flat(daemon: Daemon) -> bool:
    return await held(daemon) == 0


async def _no_rules(daemon: Daemon) -> bool:
    return daemon.store.active_exit_rules("paper") == []
