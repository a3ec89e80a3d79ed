"""End-to-end on the paper broker through the webhook: a take-profit ladder with break-even across a restart,
exits re-priced from the entry's fill, a flip with brackets resumed after a crash, and action add."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.paper.broker import PaperBroker
from daemon.domain import (
    Action,
    Intent,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    SignalStatus,
    client_order_id,
)
from daemon.planner import EXIT_LEG
from daemon.store.repository import Store
from tests.conftest import SECRET, client_for, settled
from tests.test_order_safety_brokers import wait_async

URL = f"/webhook/tradingview/{SECRET}"
LADDER = {"ticker": "ES1!", "action": "buy", "quantity": "2", "price": "6000", "stop_loss": {"points": "4"},
          "take_profit": [{"r": "1", "quantity": "1"}, {"r": "2"}],
          "break_even": {"after": 1, "offset": {"ticks": "1"}}}


async def send(daemon: Any, body: dict[str, Any]) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


def resting(orders: list[Any]) -> list[tuple[str, Decimal, Decimal | None]]:
    return sorted((o.order_type.value, o.quantity, o.limit_price or o.stop_price) for o in orders)


async def held(broker: Any, symbol: str = "ES1!") -> Decimal:
    return sum((p.quantity for p in await broker.positions() if p.symbol == symbol), Decimal(0))


async def test_ladder_with_break_even_survives_a_restart(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    daemon = await start_daemon(settings)
    record = await send(daemon, {**LADDER, "id": "lad-1"})
    assert record.status is SignalStatus.EXECUTED, record.reason
    broker = daemon.brokers["paper"]
    # Two brackets of 1: take-profits at +1R and +2R (R = 4 points), both stops 4 points below.
    assert resting(await broker.open_orders()) == [("limit", 1, Decimal(6004)), ("limit", 1, Decimal(6008)),
                                                   ("stop", 1, Decimal(5996)), ("stop", 1, Decimal(5996))]
    await daemon.stop()

    # While the daemon is down the market reaches the first level: it fills, its stop goes with it.
    offline = PaperBroker("paper", settings.accounts["paper"].section("paper"),
                          settings.daemon.state_dir / "paper" / "paper.json")
    await offline.connect()
    await offline.observe_price("ES1!", Decimal(6004), datetime.now(UTC))
    assert await held(offline) == 1
    assert resting(await offline.open_orders()) == [("limit", 1, Decimal(6008)), ("stop", 1, Decimal(5996))]
    await offline.close()

    again = await start_daemon(settings)
    broker = again.brokers["paper"]

    async def at_break_even() -> bool:  # the fill price 6000 plus one tick
        return resting(await broker.open_orders()) == [("limit", 1, Decimal(6008)), ("stop", 1, Decimal("6000.25"))]

    await wait_async(at_break_even, within=15)
    assert await held(broker) == 1
    # The stop now closes what is left at break-even, not a contract more.
    await broker.observe_price("ES1!", Decimal(6000), datetime.now(UTC))

    async def flat() -> bool:
        return await held(broker) == 0 and await broker.open_orders() == []

    await wait_async(flat, within=15)


async def test_a_ladder_level_fill_moves_the_stop_while_running(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    body = {**LADDER, "id": "lad-2", "quantity": "4",
            "take_profit": [{"ticks": "8", "quantity_percent": "50"}, {"points": "6"}],
            "break_even": True}
    assert (await send(daemon, body)).status is SignalStatus.EXECUTED
    broker = daemon.brokers["paper"]
    await broker.observe_price("ES1!", Decimal(6002), datetime.now(UTC))

    async def moved() -> bool:
        return resting(await broker.open_orders()) == [("limit", 2, Decimal(6006)), ("stop", 2, Decimal(6000))]

    await wait_async(moved, within=15)
    assert await held(broker) == 2
    assert any("break-even" in e.summary for e in daemon.events.recent)


async def test_break_even_finds_its_take_profit_below_many_newer_orders(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """A busy account: after the ladder went in, 600 other orders were recorded (a scalper on another
    symbol); the first level's take-profit filling still moves the other level's stop to break-even."""
    daemon = await start_daemon()
    body = {**LADDER, "id": "lad-busy", "take_profit": [{"points": "2", "quantity": "1"}, {"points": "6"}],
            "break_even": True}
    assert (await send(daemon, body)).status is SignalStatus.EXECUTED
    broker = daemon.brokers["paper"]
    later = datetime.now(UTC) + timedelta(seconds=1)
    for n in range(600):
        coid = client_order_id("paper", f"scalp-{n}")
        daemon.store.upsert_order(Order(
            broker_order_id=f"scalp-{n}", client_order_id=coid, account="paper", symbol="NQ1!", side=Side.BUY,
            quantity=Decimal(1), order_type=OrderType.MARKET, status=OrderStatus.FILLED, filled_quantity=Decimal(1),
            average_fill_price=Decimal(21000), created_at=later + timedelta(milliseconds=n)))
    assert all(o.symbol == "NQ1!" for o in daemon.store.orders("paper", limit=500))
    await broker.observe_price("ES1!", Decimal(6002), datetime.now(UTC))

    async def at_break_even() -> bool:
        return resting(await broker.open_orders()) == [("limit", 1, Decimal(6006)), ("stop", 1, Decimal(6000))]

    await wait_async(at_break_even, within=15)
    assert await held(broker) == 1


async def test_relative_exits_are_priced_from_the_fill(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={"paper": {"paper": {"slippage_bps": "5"}}})  # 6000 fills at 6003
    record = await send(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "6000", "id": "fp-1",
                                 "take_profit": {"ticks": "16"}, "stop_loss": {"ticks": "16"}})
    assert record.status is SignalStatus.EXECUTED, record.reason
    broker = daemon.brokers["paper"]

    async def from_fill() -> bool:
        return resting(await broker.open_orders()) == [("limit", 1, Decimal(6007)), ("stop", 1, Decimal(5999))]

    await wait_async(from_fill, within=15)
    stored = {o.order_type: o for o in daemon.store.orders("paper", open_only=True) if o.parent_order_id}
    assert (stored[OrderType.LIMIT].limit_price, stored[OrderType.STOP].stop_price) == (Decimal(6007), Decimal(5999))


async def test_flip_with_brackets_resumed_after_a_crash(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    daemon = await start_daemon(settings)
    assert (await send(daemon, {"ticker": "ES1!", "action": "sell", "quantity": "2", "price": "6000",
                                "id": "cr-1"})).status is SignalStatus.EXECUTED
    await daemon.stop()
    # The daemon accepted a flip to +1 with brackets and crashed right after sending its exit half.
    now = datetime.now(UTC)
    flip = Intent(signal_id="sig_flip", dedup_key="id:flip", account="paper", action=Action.BUY, symbol="ES1!",
                  target_position=Decimal(1), price=Decimal(6000), take_profit=Decimal(6010), stop_loss=Decimal(5990),
                  received_at=now, expires_at=now + timedelta(minutes=5))
    store = Store(settings.database_url)
    store.open()
    store.record_signal(flip)
    store.set_signal_status(flip.signal_id, SignalStatus.SUBMITTING,
                            client_order_id=client_order_id("paper", flip.dedup_key))
    store.close()
    offline = PaperBroker("paper", settings.accounts["paper"].section("paper"),
                          settings.daemon.state_dir / "paper" / "paper.json")
    await offline.connect()
    await offline.place_order(OrderRequest(
        client_order_id=client_order_id("paper", flip.dedup_key, EXIT_LEG), account="paper", symbol="ES1!",
        side=Side.BUY, quantity=Decimal(2), reduce_only=True, reference_price=Decimal(6000)))
    await offline.close()

    again = await start_daemon(settings)
    record = await settled(again, "sig_flip", within=15)
    assert record.status is SignalStatus.EXECUTED, record.reason
    broker = again.brokers["paper"]
    assert await held(broker) == 1  # the exit half was not sent twice, the entry opened 1
    assert resting(await broker.open_orders()) == [("limit", 1, Decimal(6010)), ("stop", 1, Decimal(5990))]
    buys = [f for f in await broker.fills() if f.side is Side.BUY]
    assert sorted(f.quantity for f in buys) == [1, 2]


async def test_add_adds_on_the_positions_side(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    nothing = await send(daemon, {"ticker": "AAPL", "action": "add", "quantity": "3", "price": "100", "id": "ad-0"})
    assert (nothing.status, nothing.reason) == (SignalStatus.EXECUTED, "no AAPL position to add to")
    await send(daemon, {"ticker": "AAPL", "action": "sell", "quantity": "2", "price": "100", "id": "ad-1"})
    added = await send(daemon, {"ticker": "AAPL", "action": "add", "quantity": "3", "price": "100", "id": "ad-2"})
    assert added.status is SignalStatus.EXECUTED, added.reason
    assert await held(daemon.brokers["paper"], "AAPL") == -5


async def test_traderspost_add(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    await send(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "2", "price": "100", "id": "tpa-1"})
    async with client_for(daemon) as client:
        response = await client.post(URL, json={"ticker": "AAPL", "action": "add", "quantity": 3,
                                                "signalPrice": 100, "orderType": "market"})
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        refused = await client.post(URL, json={"ticker": "AAPL", "action": "add", "sentiment": "bullish"})
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert await held(daemon.brokers["paper"], "AAPL") == 5
    assert refused.status_code == 422 and refused.json()["error"] == "not_supported"


async def test_bad_ladders_are_refused_at_the_door(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    base = {"ticker": "ES1!", "action": "buy", "quantity": "2", "price": "6000", "stop_loss": {"ticks": "8"}}
    cases = [
        ({"take_profit": [{"r": "1", "quantity": "1", "quantity_percent": "50"}, {"r": "2"}]}, "not both"),
        ({"take_profit": [{"r": "1", "quantity": "1"}, {"r": "2"}], "break_even": {"after": 2}}, "before the last"),
        ({"take_profit": {"r": "1"}, "break_even": True}, "goes with a take_profit ladder"),
        ({"take_profit": [], "stop_loss": {"ticks": "8"}}, "1 to 10 levels"),
        ({"take_profit": "6010", "stop_loss": {"r": "1"}}, "stop_loss.r is not a unit"),
        ({"take_profit": [{"r": "1", "quantity": "1"}, {"r": "2"}], "break_even": {"offset": "6001"}}, "not a price"),
    ]
    async with client_for(daemon) as client:
        for fields, words in cases:
            response = await client.post(URL, json=base | fields)
            assert response.status_code == 422 and words in response.json()["detail"], (fields, response.text)
    assert daemon.store.orders() == []
