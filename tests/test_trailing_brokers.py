"""Trailing stops through the webhook on the broker stand-ins: native trailing stop orders where the broker has
them (the stand-in trails them on its own price marks), and the daemon trailing a plain bracket stop elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.symbols import normalize
from daemon.app import Daemon
from daemon.domain import OrderType, SignalStatus
from tests.conftest import settings_for
from tests.standin_fixtures import tradovate_running
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.tradovate_api import TradovateStandin
from tests.test_alpaca_adapter import alpaca_running
from tests.test_alpaca_e2e import alpaca_account
from tests.test_projectx_adapter import contract_id, projectx_running
from tests.test_projectx_e2e import px_account
from tests.test_tradovate_e2e import tradovate_account
from tests.test_trailing_e2e import eventually, post

FAST = {"exit_mark_seconds": 0.2}


@pytest.fixture
async def alpaca() -> AsyncIterator[AlpacaStandIn]:
    async with alpaca_running() as stand:
        yield stand


async def working(daemon: Daemon, account: str, kind: OrderType) -> list[tuple[str, Decimal, Decimal | None]]:
    return [(o.side.value, o.quantity, o.stop_price) for o in await daemon.brokers[account].open_orders()
            if o.order_type is kind]


async def flat(daemon: Daemon, account: str) -> bool:
    return not [p for p in await daemon.brokers[account].positions() if p.quantity != 0]


async def test_alpaca_trails_a_trailing_stop_order_natively(start_daemon, alpaca: AlpacaStandIn,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    alpaca.set_price("AAPL", Decimal(100))
    daemon = await start_daemon(settings_for(tmp_path / "state", daemon=FAST,
                                             accounts={"stocks": alpaca_account(alpaca)}))
    entry = await post(daemon, {"ticker": "AAPL", "account": "stocks", "action": "buy", "quantity": "10",
                                "price": "100"})
    assert entry.status is SignalStatus.EXECUTED, entry.reason
    done = await post(daemon, {"ticker": "AAPL", "account": "stocks", "action": "exit", "price": "100",
                               "order_type": "trailing_stop", "trailing_stop": {"percent": "2"}})
    assert done.status is SignalStatus.EXECUTED, done.reason
    [sent] = [o for o in alpaca.orders.values() if o["type"] == "trailing_stop"]
    assert (sent["trail_percent"], sent["trail_price"], sent["side"], sent["qty"]) == ("2", None, "sell", "10")
    assert await working(daemon, "stocks", OrderType.TRAILING_STOP) == [("sell", Decimal(10), Decimal(98))]
    assert daemon.store.active_exit_rules("stocks") == []  # the broker trails it, not the daemon
    alpaca.set_price("AAPL", Decimal(110))
    assert await working(daemon, "stocks", OrderType.TRAILING_STOP) == [("sell", Decimal(10), Decimal("107.8"))]
    alpaca.set_price("AAPL", Decimal(108))
    assert await working(daemon, "stocks", OrderType.TRAILING_STOP) == [("sell", Decimal(10), Decimal("107.8"))]
    alpaca.set_price("AAPL", Decimal("107.5"))
    assert await eventually(lambda: flat(daemon, "stocks"))
    fills = await eventually(lambda: _fills(daemon, "stocks", 2))
    assert [(f.side.value, f.price) for f in fills][-1] == ("sell", Decimal("107.5"))


async def _fills(daemon: Daemon, account: str, count: int) -> list[object] | None:
    fills = daemon.store.fills(account)
    return sorted(fills, key=lambda f: f.filled_at) if len(fills) >= count else None


@pytest.fixture
async def projectx() -> AsyncIterator[ProjectXStandin]:
    async with projectx_running() as stand:
        yield stand


async def test_projectx_trails_an_entrys_bracket_stop_and_a_trailing_order_natively(  # type: ignore[no-untyped-def]
        start_daemon, projectx: ProjectXStandin) -> None:
    es = contract_id(projectx, "ES1!")
    projectx.set_price(es, "6000")
    daemon = await start_daemon(**(px_account(projectx) | {"daemon": FAST}))
    entry = await post(daemon, {"ticker": "ES1!", "account": "px", "action": "buy", "quantity": "1",
                                "price": "6000", "trailing_stop": {"ticks": "8"}})
    assert entry.status is SignalStatus.EXECUTED, entry.reason
    [place] = [body for _, path, body in projectx.calls if path == "/api/Order/place"]
    assert place["stopLossBracket"] == {"ticks": -8, "type": 5}  # the gateway's trailing type, 8 ticks = 2.00
    assert daemon.store.active_exit_rules("px") == []
    assert await eventually(lambda: _is(working(daemon, "px", OrderType.TRAILING_STOP),
                                        [("sell", Decimal(1), Decimal(5998))]))
    projectx.set_price(es, "6010")
    assert await eventually(lambda: _is(working(daemon, "px", OrderType.TRAILING_STOP),
                                        [("sell", Decimal(1), Decimal(6008))]))
    projectx.set_price(es, "6007.75")
    assert await eventually(lambda: flat(daemon, "px"))

    # An order of type trailing_stop closes a position the same way, trailing by a price distance.
    await post(daemon, {"ticker": "ES1!", "account": "px", "action": "sell", "quantity": "2", "price": "6007.75"})
    done = await post(daemon, {"ticker": "ES1!", "account": "px", "action": "exit", "price": "6007.75",
                               "order_type": "trailing_stop", "trailing_stop": {"amount": "5"}})
    assert done.status is SignalStatus.EXECUTED, done.reason
    trailing = [body for _, path, body in projectx.calls if path == "/api/Order/place"][-1]
    assert (trailing["type"], trailing["trailPrice"], trailing["side"], trailing["size"]) == (5, 5, 0, 2)
    projectx.set_price(es, "5990")
    assert await eventually(lambda: _is(working(daemon, "px", OrderType.TRAILING_STOP),
                                        [("buy", Decimal(2), Decimal(5995))]))
    projectx.set_price(es, "5995")
    assert await eventually(lambda: flat(daemon, "px"))


async def _is(probe: Awaitable[Any], expected: Any) -> bool:
    return await probe == expected


@pytest.fixture
async def tv() -> AsyncIterator[TradovateStandin]:
    async with tradovate_running() as standin:
        yield standin


async def test_tradovate_trails_an_entrys_bracket_stop_and_a_trailing_order_natively(  # type: ignore[no-untyped-def]
        start_daemon, tv: TradovateStandin, tmp_path: Path) -> None:
    tv.set_price(normalize("ES1!"), "6000")
    account = tradovate_account(tv) | {"risk": {}}
    daemon = await start_daemon(settings_for(tmp_path / "state", daemon=FAST, accounts={"tv": account}))
    entry = await post(daemon, {"ticker": "ES1!", "account": "tv", "action": "buy", "quantity": "1",
                                "price": "6000", "trailing_stop": {"points": "2"}, "take_profit": "6020"})
    assert entry.status is SignalStatus.EXECUTED, entry.reason
    [oso] = [body for _, path, body in tv.calls if path == "/v1/order/placeoso"]
    assert (oso["bracket2"]["orderType"], oso["bracket2"]["pegDifference"], oso["bracket2"]["stopPrice"]) == (
        "TrailingStop", -2, 5998)
    assert daemon.store.active_exit_rules("tv") == []
    assert await working(daemon, "tv", OrderType.TRAILING_STOP) == [("sell", Decimal(1), Decimal(5998))]
    # Tradovate keeps the trailing stop's level to itself (the order version keeps its first stopPrice):
    # that it trails shows in when it fills. Up to 6010 the stop follows to 6008; 6008.25 is above it.
    tv.set_price(normalize("ES1!"), "6010")
    tv.set_price(normalize("ES1!"), "6008.25")
    assert await working(daemon, "tv", OrderType.TRAILING_STOP) == [("sell", Decimal(1), Decimal(5998))]
    tv.set_price(normalize("ES1!"), "6007")  # far above the first stop, below the trailed one
    assert await eventually(lambda: flat(daemon, "tv"))

    await post(daemon, {"ticker": "ES1!", "account": "tv", "action": "sell", "quantity": "1", "price": "6007"})
    done = await post(daemon, {"ticker": "ES1!", "account": "tv", "action": "exit", "price": "6007",
                               "order_type": "trailing_stop", "trailing_stop": {"ticks": "12"}})
    assert done.status is SignalStatus.EXECUTED, done.reason
    placed = [body for _, path, body in tv.calls if path == "/v1/order/placeorder"][-1]
    assert (placed["orderType"], placed["pegDifference"], placed["action"]) == ("TrailingStop", 3, "Buy")
    tv.set_price(normalize("ES1!"), "5990")  # the buy stop follows down to 5993
    tv.set_price(normalize("ES1!"), "5992.75")
    assert [q for _, q, _ in await working(daemon, "tv", OrderType.TRAILING_STOP)] == [Decimal(1)]
    tv.set_price(normalize("ES1!"), "5993.25")
    assert await eventually(lambda: flat(daemon, "tv"))
