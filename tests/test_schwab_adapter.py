"""SchwabBroker against the contract-checked Schwab stand-in: orders, TRIGGER/OCO brackets, positions, lookups."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from brokers.base import Broker, OrderNotFound, OrderRejected, UnknownSymbol
from brokers.schwab.broker import SchwabBroker
from brokers.schwab.tokens import SchwabTokens, TokenFile, token_path
from config.brokers import SchwabSettings
from daemon.domain import OrderStatus, OrderType, Side, client_order_id
from tests import stock_adapter_checks as checks
from tests.standin_fixtures import connected, quick_retries, request_maker, schwab_running
from tests.standins.schwab_api import ACCOUNT_HASH, ACCOUNT_NUMBER, BASE, SchwabStandin
from tests.stock_adapter_checks import Venue

FAST = quick_retries(max_retry_after=5.0)
ACCOUNT = "sw1"
ORDERS = f"/accounts/{ACCOUNT_HASH}/orders"
DOWN = '{"message": "Service unavailable", "errors": ["try again later"]}'  # a ServiceError body


def login(stand: SchwabStandin, state_dir: Path, account: str = ACCOUNT, *, issued_at: datetime | None = None,
          access_left: timedelta = timedelta(minutes=30)) -> SchwabTokens:
    """What `traderd auth schwab` leaves behind: a token file the stand-in honours."""
    refresh, access = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    stand.refresh.add(refresh)
    stand.access[access] = time.monotonic() + max(access_left.total_seconds(), 0)
    now = datetime.now(UTC)
    tokens = SchwabTokens(access, refresh, now + access_left, issued_at or now)
    TokenFile(token_path(state_dir, account)).save(tokens)
    return tokens


def settings_of(stand: SchwabStandin, **kw: Any) -> SchwabSettings:
    values: dict[str, Any] = {
        "app_key": SecretStr(stand.app_key), "app_secret": SecretStr(stand.app_secret),
        "base_url": stand.url + BASE, "oauth_url": stand.url + "/v1/oauth", "timeout_seconds": 2.0,
        "rate_limit_per_minute": 6000, "order_rate_limit_per_minute": 6000, "account_number": ACCOUNT_NUMBER,
        "stream": False,
    }
    values.update(kw)
    return SchwabSettings(**values)


def make_broker(stand: SchwabStandin, state_dir: Path, **kw: Any) -> SchwabBroker:
    settings = settings_of(stand, **kw.pop("config", {}))
    return SchwabBroker(ACCOUNT, settings, state_dir, retry=FAST, poll_interval=kw.pop("poll_interval", 0), **kw)


@pytest.fixture
async def stand() -> AsyncIterator[SchwabStandin]:
    async with schwab_running() as standin:
        yield standin


@pytest.fixture
async def broker(stand: SchwabStandin, tmp_path: Path) -> AsyncIterator[SchwabBroker]:
    login(stand, tmp_path)
    async with connected(make_broker(stand, tmp_path)) as b:
        yield b


req = request_maker(ACCOUNT, "AAPL", "10")


def bodies(stand: SchwabStandin, method: str = "POST", path: str = ORDERS) -> list[Any]:
    return [body for m, p, body in stand.calls if m == method and p == BASE + path]


VENUE = Venue(ACCOUNT, req, make_broker, bodies, ORDERS, DOWN, lambda b, cid: b.claims.entry(cid), login)


async def test_is_a_broker_addressed_by_hash(broker: SchwabBroker, stand: SchwabStandin) -> None:
    assert isinstance(broker, Broker) and broker.healthy() and broker.account_hash == ACCOUNT_HASH
    assert all(ACCOUNT_NUMBER not in path for _, path, _ in stand.calls)


async def test_market_order_fills_into_position_account_and_fills(broker: SchwabBroker, stand: SchwabStandin) -> None:
    order = await checks.market_order_fills(VENUE, broker, stand)
    [sent] = bodies(stand)
    assert sent["orderStrategyType"] == "SINGLE" and sent["orderType"] == "MARKET" and sent["session"] == "NORMAL"
    assert sent["orderLegCollection"] == [{"instruction": "BUY", "quantity": 10,
                                           "instrument": {"symbol": "AAPL", "assetType": "EQUITY"}}]
    fill = await checks.held_valued_and_filled(broker, stand, order)
    assert fill.fill_id == f"{order.broker_order_id}:1"
    await checks.found_by_its_client_order_id(broker, order)


async def test_limit_stop_and_stop_limit_rest_modify_cancel(broker: SchwabBroker, stand: SchwabStandin) -> None:
    limit = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("95.5")))
    stop = await broker.place_order(req("MSFT", key="s", order_type=OrderType.STOP, stop_price=Decimal(110)))
    stop_limit = await broker.place_order(req("SPY", key="sl", order_type=OrderType.STOP_LIMIT,
                                              stop_price=Decimal(105), limit_price=Decimal(106)))
    assert (limit.status, limit.order_type, limit.limit_price) == (OrderStatus.NEW, OrderType.LIMIT, Decimal("95.5"))
    assert (stop.order_type, stop.stop_price) == (OrderType.STOP, Decimal(110))
    assert (stop_limit.order_type, stop_limit.limit_price, stop_limit.stop_price) == (
        OrderType.STOP_LIMIT, Decimal(106), Decimal(105))
    assert {o.broker_order_id for o in await broker.open_orders()} == {
        limit.broker_order_id, stop.broker_order_id, stop_limit.broker_order_id}

    modified = await broker.modify_order(limit.broker_order_id, quantity=Decimal(12), limit_price=Decimal(96))
    assert modified.broker_order_id != limit.broker_order_id  # Schwab replaces: a new order id
    assert (modified.quantity, modified.limit_price, modified.status) == (12, Decimal(96), OrderStatus.NEW)
    assert modified.client_order_id == limit.client_order_id
    [put] = bodies(stand, "PUT", f"{ORDERS}/{limit.broker_order_id}")
    assert put["orderType"] == "LIMIT" and put["price"] == 96 and put["orderLegCollection"][0]["quantity"] == 12
    old = await broker.cancel_order(limit.broker_order_id)  # replaced: finished, returned unchanged
    assert old.status is OrderStatus.CANCELLED and stand.count("DELETE", f"{ORDERS}/{limit.broker_order_id}") == 0

    cancelled = await broker.cancel_order(stop.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert (await broker.cancel_order(stop.broker_order_id)).status is OrderStatus.CANCELLED
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("999")
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("not-a-number")

    stand.set_price("AAPL", 96)
    stand.set_price("SPY", "105.5")  # stop triggers, limit 106 marketable
    assert await broker.open_orders() == []
    filled = await broker.find_order(limit.client_order_id)
    assert filled is not None and filled.status is OrderStatus.FILLED and filled.filled_quantity == 12
    with pytest.raises(OrderRejected, match="filled"):
        await broker.modify_order(modified.broker_order_id, limit_price=Decimal(90))


async def test_bracket_is_a_trigger_with_an_oco_of_exits(broker: SchwabBroker, stand: SchwabStandin) -> None:
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(99),
                                         take_profit=Decimal(110), stop_loss=Decimal(95)))
    [sent] = bodies(stand)
    assert sent["orderStrategyType"] == "TRIGGER" and sent["price"] == 99
    [oco] = sent["childOrderStrategies"]
    assert oco["orderStrategyType"] == "OCO"
    tp, sl = oco["childOrderStrategies"]
    assert (tp["orderType"], tp["price"], tp["orderLegCollection"][0]["instruction"]) == ("LIMIT", 110, "SELL")
    assert (sl["orderType"], sl["stopPrice"], sl["duration"]) == ("STOP", 95, "GOOD_TILL_CANCEL")
    await checks.bracket_exits_cancel_each_other(broker, stand, entry)


async def test_short_sale_close_position_and_flatten(broker: SchwabBroker, stand: SchwabStandin) -> None:
    await broker.place_order(req("AAPL", "10", key="a"))
    short = await broker.place_order(req("MSFT", "5", key="b", side=Side.SELL))
    assert short.side is Side.SELL and bodies(stand)[-1]["orderLegCollection"][0]["instruction"] == "SELL_SHORT"
    with pytest.raises(OrderRejected, match="close the long first"):
        await broker.place_order(req("AAPL", "15", key="flip", side=Side.SELL))
    resting = await broker.place_order(req("SPY", key="c", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    closing = await broker.close_position("AAPL")
    assert closing is not None and (closing.side, closing.quantity, closing.status) == (Side.SELL, 10,
                                                                                        OrderStatus.FILLED)
    assert bodies(stand)[-1]["orderLegCollection"][0]["instruction"] == "SELL"
    assert await broker.close_position("AAPL") is None
    report = await broker.flatten()
    assert [o.broker_order_id for o in report.cancelled] == [resting.broker_order_id]
    assert [(o.symbol, o.side, o.quantity) for o in report.closing] == [("MSFT", Side.BUY, 5)]
    assert bodies(stand)[-1]["orderLegCollection"][0]["instruction"] == "BUY_TO_COVER"
    assert report.errors == [] and await broker.positions() == [] and await broker.open_orders() == []


async def test_refusals_are_typed_and_nothing_is_sent(broker: SchwabBroker, stand: SchwabStandin) -> None:
    with pytest.raises(UnknownSymbol, match="not futures"):
        await broker.place_order(req("CME_MINI:ES1!"))
    with pytest.raises(OrderRejected, match="whole shares"):
        await broker.place_order(req(qty="1.5"))
    with pytest.raises(OrderRejected, match="needs its limit price"):
        await broker.place_order(req(order_type=OrderType.LIMIT))
    assert bodies(stand) == []
    with pytest.raises(OrderRejected, match="HTTP 400: Your buying power is insufficient"):
        await broker.place_order(req(qty="5000", key="big"))
    entry = broker.claims.entry(client_order_id(ACCOUNT, "big"))
    assert entry is not None and entry["state"] == "refused"


async def test_same_client_order_id_twice_places_once(broker: SchwabBroker, stand: SchwabStandin) -> None:
    first = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    second = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    assert second.broker_order_id == first.broker_order_id and len(bodies(stand)) == 1


async def test_reset_after_accept_is_found_by_its_details(broker: SchwabBroker, stand: SchwabStandin) -> None:
    await checks.reset_after_accept_is_looked_up(VENUE, broker, stand)


async def test_timeout_after_accept_does_not_duplicate(stand: SchwabStandin, tmp_path: Path) -> None:
    await checks.timeout_after_accept_does_not_duplicate(VENUE, stand, tmp_path)


async def test_5xx_and_429_before_accept_are_resent_once_looked_up(broker: SchwabBroker, stand: SchwabStandin) -> None:
    stand.faults.fail_next(1, status=503, path=ORDERS, body=DOWN)  # the POST: not accepted
    stand.faults.fail_next(1, status=429, path=ORDERS, body=DOWN)  # the lookup before resending: throttled
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED and len(stand.orders_for("AAPL")) == 1
    assert stand.count("POST", ORDERS) == 2 and stand.count("GET", ORDERS) == 3  # connect, lookup, its retry


async def test_identical_orders_with_lost_answers_each_claim_their_own(broker: SchwabBroker,
                                                                       stand: SchwabStandin) -> None:
    stand.faults.drop_next(path=ORDERS)
    first = await broker.place_order(req(key="one", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    stand.faults.drop_next(path=ORDERS)
    second = await broker.place_order(req(key="two", order_type=OrderType.LIMIT, limit_price=Decimal(90)))
    assert first.broker_order_id != second.broker_order_id and len(stand.orders_for("AAPL")) == 2
    assert {first.client_order_id, second.client_order_id} == {client_order_id(ACCOUNT, k) for k in ("one", "two")}


async def test_restart_after_lost_answer_does_not_duplicate(stand: SchwabStandin, tmp_path: Path) -> None:
    await checks.restart_after_lost_answer_does_not_duplicate(VENUE, stand, tmp_path)


async def test_polling_emits_each_fill_and_status_change_once(stand: SchwabStandin, tmp_path: Path) -> None:
    await checks.polling_emits_each_fill_and_status_change_once(VENUE, stand, tmp_path, req("SPY", key="m"),
                                                                [("AAPL", 2), ("SPY", 10)])
