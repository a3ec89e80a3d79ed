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


async def test_a_trailing_stop_survives_a_daemon_restart(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(**FAST)
    first = await start_daemon(settings)
    await post(first, {"ticker": "AAPL", "action": "buy", "quantity": "5", "price": "100",
                       "trailing_stop": {"percent": "2"}})
    assert await stops(first) == [("sell", Decimal(5), Decimal(98))]
    await mark(first, "110")
    await stop_at(first, "107.8")  # 2 % below 110
    await first.stop()

    second = await start_daemon(settings)  # a new process's daemon: the same state directory and store
    assert await stops(second) == [("sell", Decimal(5), Decimal("107.8"))]
    await mark(second, "109")  # below the best seen before the restart: the stop stays
    await asyncio.sleep(0.5)
    assert [s for _, _, s in await stops(second)] == [Decimal("107.8")]
    await mark(second, "120")
    await stop_at(second, "117.6")
    await mark(second, "117")
    assert await eventually(lambda: _flat(second))


async def test_a_trailing_stop_order_closes_the_position_emulated_on_paper(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(**FAST)
    await post(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "4", "price": "50"})
    done = await post(daemon, {"ticker": "AAPL", "action": "exit", "order_type": "trailing_stop",
                               "trailing_stop": {"ticks": "100"}, "price": "51"})
    assert done.status is SignalStatus.EXECUTED, done.reason
    assert await stops(daemon) == [("sell", Decimal(4), Decimal(50))]  # 100 ticks of 0.01 below 51
    await mark(daemon, "53.5")
    await stop_at(daemon, "52.5")
    # A partial exit at the market shrinks the trailing stop with the position; it never covers more.
    await post(daemon, {"ticker": "AAPL", "action": "exit", "quantity": "3", "price": "53"})
    assert await eventually(lambda: _stops_are(daemon, [("sell", Decimal(1), Decimal("52.5"))]))
    await mark(daemon, "54")
    await stop_at(daemon, "53")
    await mark(daemon, "52.9")
    assert await eventually(lambda: _flat(daemon))
    assert await stops(daemon) == []


async def _stops_are(daemon: Daemon, expected: list[Any]) -> bool:
    return await stops(daemon) == expected


async def test_a_traderspost_trailing_stop_body_trails(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(**FAST)
    await post(daemon, {"ticker": "AAPL", "action": "buy", "quantity": 2, "signalPrice": 100,
                        "stopLoss": {"type": "trailing_stop", "trailAmount": 1.5}})
    assert await stops(daemon) == [("sell", Decimal(2), Decimal("98.5"))]
    await mark(daemon, "101")
    await stop_at(daemon, "99.5")
    await mark(daemon, "99.4")
    assert await eventually(lambda: _flat(daemon))
    await post(daemon, {"ticker": "AAPL", "action": "sell", "quantity": 2, "signalPrice": 100})
    short = await post(daemon, {"ticker": "AAPL", "action": "exit", "orderType": "trailing_stop",
                                "trailPercent": 1, "signalPrice": 100})
    assert short.status is SignalStatus.EXECUTED, short.reason
    assert await stops(daemon) == [("buy", Decimal(2), Decimal(101))]  # a short's stop is above, and trails down
    await mark(daemon, "90")
    await stop_at(daemon, "90.9")


@pytest.mark.parametrize(("body", "problem"), [
    ({"trailing_stop": {"amount": "2"}, "stop_loss": "95"}, "not both"),
    ({"trailing_stop": {"furlongs": "2"}}, "not a unit"),
    ({"trailing_stop": {"percent": "100"}}, "below 100"),
    ({"trailing_stop": {"amount": "0"}}, "greater than zero"),
    ({"order_type": "trailing_stop"}, "needs trailing_stop"),
    ({"action": "exit", "trailing_stop": {"amount": "1"}}, "needs order_type trailing_stop"),
])
async def test_bad_trailing_stops_are_refused_at_the_door(start_daemon, body, problem) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    assert problem in await refused(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "1", "price": "100",
                                             **body})
    assert await daemon.brokers["paper"].open_orders() == []


async def test_a_trailing_stop_order_that_would_open_a_position_is_refused(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    done = await post(daemon, {"ticker": "AAPL", "action": "sell", "quantity": "1", "price": "100",
                               "order_type": "trailing_stop", "trailing_stop": {"amount": "1"}})
    assert done.status is SignalStatus.REJECTED and "only closes a position" in done.reason
    assert await daemon.brokers["paper"].open_orders() == []
    assert await held(daemon) == 0
