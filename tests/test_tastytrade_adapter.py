"""TastytradeBroker against the contract- and SDK-checked stand-in: stocks, futures, OTOCO brackets, dry runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from brokers.base import Broker, OrderNotFound, OrderRejected, UnknownSymbol
from brokers.symbols import normalize
from brokers.tastytrade.broker import TastytradeBroker
from config.brokers import TastytradeSettings
from daemon.domain import OrderStatus, OrderType, Side, TimeInForce, client_order_id
from tests import stock_adapter_checks as checks
from tests.standin_fixtures import connected, quick_retries, request_maker, tastytrade_running
from tests.standins.tastytrade_api import ACCOUNT_NUMBER, TastytradeStandin
from tests.stock_adapter_checks import Venue

FAST = quick_retries(max_retry_after=5.0)
ACCOUNT = "tt1"
ORDERS = f"/accounts/{ACCOUNT_NUMBER}/orders"
COMPLEX = f"/accounts/{ACCOUNT_NUMBER}/complex-orders"
ES = "/" + normalize("ES1!")  # the front contract as tastytrade names it, e.g. /ESZ6


def settings_of(stand: TastytradeStandin, **kw: Any) -> TastytradeSettings:
    values: dict[str, Any] = {"base_url": stand.url, "timeout_seconds": 2.0, "rate_limit_per_minute": 6000}
    if kw.pop("legacy", False):
        values.update(username=stand.username, password=SecretStr(stand.password))
    else:
        values.update(client_secret=SecretStr(stand.client_secret), refresh_token=SecretStr(stand.refresh_token))
    values.update(kw)
    return TastytradeSettings(**values)


def make_broker(stand: TastytradeStandin, state_dir: Path, **kw: Any) -> TastytradeBroker:
    settings = settings_of(stand, **kw.pop("config", {}))
    return TastytradeBroker(ACCOUNT, settings, state_dir, retry=FAST, poll_interval=kw.pop("poll_interval", 0), **kw)


@pytest.fixture
async def stand() -> AsyncIterator[TastytradeStandin]:
    async with tastytrade_running() as standin:
        yield standin


@pytest.fixture
async def broker(stand: TastytradeStandin, tmp_path: Path) -> AsyncIterator[TastytradeBroker]:
    async with connected(make_broker(stand, tmp_path)) as b:
        yield b


req = request_maker(ACCOUNT, "AAPL", "10")


def bodies(stand: TastytradeStandin, method: str = "POST", path: str = ORDERS) -> list[Any]:
    return [body for m, p, body in stand.calls if m == method and p == path]


DOWN = '{"error": {"code": "service_unavailable", "message": "try again later"}}'
VENUE = Venue(ACCOUNT, req, make_broker, bodies, ORDERS, DOWN, lambda b, cid: b.journal.get(cid))


async def test_is_a_broker_that_names_itself(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    assert isinstance(broker, Broker) and broker.healthy() and broker.orders.account_number == ACCOUNT_NUMBER
    assert {a.split("/")[0] for a in stand.agents} == {"traderd"} and stand.logins == [("oauth", True)]


async def test_stock_market_order_fills_into_position_account_and_fills(broker: TastytradeBroker,
                                                                        stand: TastytradeStandin) -> None:
    order = await checks.market_order_fills(VENUE, broker, stand)
    [sent] = bodies(stand)
    assert sent["order-type"] == "Market" and sent["time-in-force"] == "Day" and sent["automated-source"] is True
    assert sent["external-identifier"] == order.client_order_id and "price" not in sent
    assert sent["legs"] == [{"instrument-type": "Equity", "symbol": "AAPL", "quantity": 10, "action": "Buy to Open"}]
    await checks.held_valued_and_filled(broker, stand, order)
    await checks.found_by_its_client_order_id(broker, order)


async def test_futures_front_month_buy_sell_and_point_value(broker: TastytradeBroker,
                                                            stand: TastytradeStandin) -> None:
    stand.set_price(ES, 6000)
    order = await broker.place_order(req("CME_MINI:ES1!", "2", key="es"))
    assert order.status is OrderStatus.FILLED and order.symbol == "ES1!"
    [sent] = bodies(stand)
    assert sent["legs"] == [{"instrument-type": "Future", "symbol": ES, "quantity": 2, "action": "Buy"}]
    stand.set_price(ES, "6010.25")
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.unrealized_pnl) == ("ES1!", 2, Decimal("1025.00"))
    assert broker.multiplier("ES1!") == 50 and broker.multiplier("AAPL") == 1
    closing = await broker.close_position("ES1!")
    assert closing is not None and closing.side is Side.SELL and bodies(stand)[-1]["legs"][0]["action"] == "Sell"
    assert await broker.positions() == []
    assert (await broker.account_state()).cash == 100000 + 1025
    with pytest.raises(UnknownSymbol, match="no contract calendar"):
        await broker.place_order(req("ZZ1!", key="zz"))


async def test_limit_stop_and_stop_limit_rest_modify_cancel(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    limit = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("95.5"),
                                         time_in_force=TimeInForce.GTC))
    stop = await broker.place_order(req("MSFT", key="s", order_type=OrderType.STOP, stop_price=Decimal(110)))
    stop_limit = await broker.place_order(req("SPY", key="sl", order_type=OrderType.STOP_LIMIT,
                                              stop_price=Decimal(105), limit_price=Decimal(106)))
    assert (limit.status, limit.limit_price, limit.time_in_force) == (OrderStatus.NEW, Decimal("95.5"), TimeInForce.GTC)
    assert bodies(stand)[0]["price-effect"] == "Debit" and bodies(stand)[1]["stop-trigger"] == 110
    assert (stop_limit.order_type, stop_limit.limit_price, stop_limit.stop_price) == (
        OrderType.STOP_LIMIT, Decimal(106), Decimal(105))
    assert {o.broker_order_id for o in await broker.open_orders()} == {
        limit.broker_order_id, stop.broker_order_id, stop_limit.broker_order_id}

    with pytest.raises(OrderRejected, match="not the quantity"):
        await broker.modify_order(limit.broker_order_id, quantity=Decimal(12))
    modified = await broker.modify_order(limit.broker_order_id, limit_price=Decimal(96))
    assert modified.broker_order_id != limit.broker_order_id  # a replace: a new order id, the same identifier
    assert (modified.limit_price, modified.status, modified.client_order_id) == (Decimal(96), OrderStatus.NEW,
                                                                                 limit.client_order_id)
    [put] = bodies(stand, "PUT", f"{ORDERS}/{limit.broker_order_id}")
    assert put == {"order-type": "Limit", "time-in-force": "GTC", "price": 96, "price-effect": "Debit",
                   "external-identifier": limit.client_order_id}
    found = await broker.find_order(limit.client_order_id)
    assert found is not None and found.broker_order_id == modified.broker_order_id

    cancelled = await broker.cancel_order(stop.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert (await broker.cancel_order(stop.broker_order_id)).status is OrderStatus.CANCELLED
    assert stand.count("DELETE", f"{ORDERS}/{stop.broker_order_id}") == 1
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("999")
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("not-a-number")

    stand.set_price("AAPL", 96)
    stand.set_price("SPY", "105.5")  # the stop triggers and the limit of 106 is marketable
    assert await broker.open_orders() == []
    filled = await broker.find_order(limit.client_order_id)
    assert filled is not None and filled.status is OrderStatus.FILLED and filled.filled_quantity == 10


async def test_bracket_is_an_otoco_whose_exits_cancel_each_other(broker: TastytradeBroker,
                                                                 stand: TastytradeStandin) -> None:
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(99),
                                         take_profit=Decimal(110), stop_loss=Decimal(95)))
    assert bodies(stand) == []
    [sent] = bodies(stand, path=COMPLEX)
    assert sent["type"] == "OTOCO" and sent["trigger-order"]["price"] == 99
    tp, sl = sent["orders"]
    assert (tp["order-type"], tp["price"], tp["price-effect"], tp["legs"][0]["action"]) == (
        "Limit", 110, "Credit", "Sell to Close")
    assert (sl["order-type"], sl["stop-trigger"], sl["time-in-force"]) == ("Stop", 95, "GTC")
    await checks.bracket_exits_cancel_each_other(broker, stand, entry)

    other = await broker.place_order(req("MSFT", key="b2", order_type=OrderType.LIMIT, limit_price=Decimal(90),
                                         stop_loss=Decimal(85)))
    assert bodies(stand, path=COMPLEX)[-1]["type"] == "OTO"
    cancelled = await broker.cancel_order(other.broker_order_id)  # the entry: its complex order goes
    assert cancelled.status is OrderStatus.CANCELLED and await broker.open_orders() == []
    assert stand.count("DELETE", f"{COMPLEX}/{stand.book.orders[int(other.broker_order_id)]['complex-order-id']}") == 1


async def test_short_sale_close_position_and_flatten(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    await broker.place_order(req("AAPL", "10", key="a"))
    short = await broker.place_order(req("MSFT", "5", key="b", side=Side.SELL))
    assert short.side is Side.SELL and bodies(stand)[-1]["legs"][0]["action"] == "Sell to Open"
    with pytest.raises(OrderRejected, match="close the long first"):
        await broker.place_order(req("AAPL", "15", key="flip", side=Side.SELL))
    await broker.place_order(req("ES1!", "1", key="es"))
    resting = await broker.place_order(req("SPY", key="c", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    closing = await broker.close_position("AAPL")
    assert closing is not None and (closing.side, closing.quantity, closing.status) == (Side.SELL, 10,
                                                                                        OrderStatus.FILLED)
    assert bodies(stand)[-1]["legs"][0]["action"] == "Sell to Close"
    assert await broker.close_position("AAPL") is None
    report = await broker.flatten()
    assert [o.broker_order_id for o in report.cancelled] == [resting.broker_order_id]
    assert sorted((o.symbol, o.side, o.quantity) for o in report.closing) == [("ES1!", Side.SELL, 1),
                                                                              ("MSFT", Side.BUY, 5)]
    assert "Buy to Close" in [b["legs"][0]["action"] for b in bodies(stand)]
    assert report.errors == [] and await broker.positions() == [] and await broker.open_orders() == []


async def test_refusals_are_typed_and_nothing_is_sent(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    with pytest.raises(OrderRejected, match="whole shares"):
        await broker.place_order(req(qty="1.5"))
    with pytest.raises(OrderRejected, match="no FOK"):
        await broker.place_order(req(time_in_force=TimeInForce.FOK))
    with pytest.raises(OrderRejected, match="needs its limit price"):
        await broker.place_order(req(order_type=OrderType.LIMIT))
    assert bodies(stand) == []
    with pytest.raises(OrderRejected, match="HTTP 422: One or more preflight checks failed; Insufficient buying"):
        await broker.place_order(req(qty="5000", key="big"))
    entry = broker.journal.get(client_order_id(ACCOUNT, "big"))
    assert entry is not None and entry["state"] == "refused"


async def test_dry_run_checks_without_placing(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    verdict = await broker.dry_run()
    assert verdict.startswith("tastytrade dry run of buy 1 SPY: accepted") and "buying power" in verdict
    assert "accepted" in await broker.dry_run(req("ES1!", "1", take_profit=Decimal(7000), stop_loss=Decimal(5000)))
    with pytest.raises(OrderRejected, match="Insufficient buying power"):
        await broker.dry_run(req(qty="5000"))
    assert stand.book.orders == {} and len(bodies(stand, path=f"{ORDERS}/dry-run")) == 2
    assert len(bodies(stand, path=f"{COMPLEX}/dry-run")) == 1


async def test_same_client_order_id_twice_places_once(broker: TastytradeBroker, stand: TastytradeStandin) -> None:
    first = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    second = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    assert second.broker_order_id == first.broker_order_id and len(bodies(stand)) == 1


async def test_legacy_session_login_renews_with_its_remember_token(stand: TastytradeStandin, tmp_path: Path) -> None:
    broker = make_broker(stand, tmp_path, config={"legacy": True})
    await broker.connect()
    try:
        stand.expire_access_tokens()
        assert await broker.positions() == []
        stand.expire_access_tokens()
        assert await broker.open_orders() == []
    finally:
        await broker.close()
    assert stand.logins == [("password", True), ("remember", True), ("remember", True)]
