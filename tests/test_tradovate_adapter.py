"""TradovateBroker against the contract-checked Tradovate stand-in: orders, brackets, positions, faults, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from brokers.base import (
    AuthenticationFailed,
    Broker,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
)
from brokers.symbols import normalize
from brokers.tradovate.broker import TradovateBroker
from config.brokers import TradovateSettings
from daemon.domain import OrderStatus, OrderType, Side, client_order_id
from tests.standin_fixtures import connected, quick_retries, reports_until_fills, request_maker, tradovate_running
from tests.standins.tradovate_api import TradovateStandin

FAST = quick_retries(max_retry_after=5.0)
ACCOUNT = "tv1"
ORDER_PATHS = ("/order/placeorder", "/order/placeoso", "/order/cancelorder", "/order/modifyorder")


ES, MNQ = normalize("ES1!"), normalize("MNQ1!")


@pytest.fixture
async def tv() -> AsyncIterator[TradovateStandin]:
    async with tradovate_running() as standin:
        yield standin


def settings_of(tv: TradovateStandin, **kw: Any) -> TradovateSettings:
    values: dict[str, Any] = {
        "username": "trader", "password": SecretStr("tv-password"), "cid": 8, "sec": SecretStr("tv-secret"),
        "device_id": "test-device", "base_url": tv.url, "timeout_seconds": 2.0, "rate_limit_per_minute": 6000,
    }
    values.update(kw)
    return TradovateSettings(**values)


def make_broker(tv: TradovateStandin, state_dir: Path, **kw: Any) -> TradovateBroker:
    settings = kw.pop("settings", None) or settings_of(tv, **kw.pop("config", {}))
    return TradovateBroker(ACCOUNT, settings, state_dir, retry=FAST, poll_interval=kw.pop("poll_interval", 0), **kw)


@pytest.fixture
async def broker(tv: TradovateStandin, tmp_path: Path) -> AsyncIterator[TradovateBroker]:
    async with connected(make_broker(tv, tmp_path)) as b:
        yield b


req = request_maker(ACCOUNT, "ES1!", "1")


def bodies(tv: TradovateStandin, path: str) -> list[Any]:
    return [body for _, p, body in tv.calls if p == "/v1" + path]


async def test_is_a_broker(broker: TradovateBroker) -> None:
    assert isinstance(broker, Broker) and broker.healthy()
    assert (broker.account_id, broker.account_spec) == (7001, "DEMO7001")
    assert broker.multiplier("ES1!") == 50 and broker.multiplier(MNQ) == 2 and broker.multiplier("MES1!") == 5
    assert broker.multiplier("CME_MINI:NQ1!") == 20


async def test_market_order_fills_into_position_account_and_fills(
    broker: TradovateBroker, tv: TradovateStandin
) -> None:
    order = await broker.place_order(req("CME_MINI:ES1!", "2"))
    assert order.status is OrderStatus.FILLED and order.filled_quantity == 2
    assert order.average_fill_price == Decimal(6000) and order.symbol == "ES1!"
    assert order.client_order_id == client_order_id(ACCOUNT, "sig-1")
    [sent] = bodies(tv, "/order/placeorder")
    assert sent["isAutomated"] is True and sent["symbol"] == ES and sent["accountId"] == 7001
    assert sent["clOrdId"] == order.client_order_id and sent["orderType"] == "Market"

    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("ES1!", 2, Decimal(6000))
    tv.set_price(ES, "6002.50")
    account = await broker.account_state()
    assert (account.cash, account.unrealized_pnl, account.equity) == (50000, 250, 50250)
    [fill] = await broker.fills()
    assert (fill.quantity, fill.price, fill.side, fill.symbol) == (2, Decimal(6000), Side.BUY, "ES1!")
    assert fill.client_order_id == order.client_order_id
    assert await broker.fills(datetime.now(UTC) + timedelta(minutes=1)) == []
    found = await broker.find_order(order.client_order_id)
    assert found is not None and found.broker_order_id == order.broker_order_id
    assert await broker.find_order("td-never-sent") is None


async def test_limit_stop_and_stop_limit_rest_modify_cancel(broker: TradovateBroker, tv: TradovateStandin) -> None:
    limit = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("5990.25")))
    stop = await broker.place_order(req(key="s", side=Side.SELL, order_type=OrderType.STOP, stop_price=Decimal(5950)))
    stop_limit = await broker.place_order(req("MNQ1!", key="sl", order_type=OrderType.STOP_LIMIT,
                                              stop_price=Decimal(21010), limit_price=Decimal("21012.5")))
    assert (limit.status, limit.order_type, limit.limit_price) == (OrderStatus.NEW, OrderType.LIMIT, Decimal("5990.25"))
    assert (stop.order_type, stop.stop_price, stop.side) == (OrderType.STOP, Decimal(5950), Side.SELL)
    assert (stop_limit.order_type, stop_limit.symbol) == (OrderType.STOP_LIMIT, "MNQ1!")
    assert {o.broker_order_id for o in await broker.open_orders()} == {
        limit.broker_order_id, stop.broker_order_id, stop_limit.broker_order_id}

    modified = await broker.modify_order(limit.broker_order_id, quantity=Decimal(3), limit_price=Decimal(5980))
    assert modified.broker_order_id == limit.broker_order_id  # Tradovate modifies in place
    assert (modified.quantity, modified.limit_price, modified.status) == (3, Decimal(5980), OrderStatus.NEW)
    [sent] = bodies(tv, "/order/modifyorder")
    assert sent["orderQty"] == 3 and sent["orderType"] == "Limit"  # both required by the API

    cancelled = await broker.cancel_order(stop.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    again = await broker.cancel_order(stop.broker_order_id)  # finished: returned unchanged
    assert again.status is OrderStatus.CANCELLED
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("999999")
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("not-a-number")

    tv.set_price(MNQ, 21011)  # stop triggers, limit 21012.5 marketable
    tv.set_price(ES, 5980)
    assert await broker.open_orders() == []
    filled = await broker.find_order(limit.client_order_id)
    assert filled is not None and filled.status is OrderStatus.FILLED and filled.filled_quantity == 3
    with pytest.raises(OrderRejected, match="filled"):
        await broker.modify_order(limit.broker_order_id, limit_price=Decimal(5970))
    assert all(b["isAutomated"] is True for path in ORDER_PATHS for b in bodies(tv, path))


async def test_bracket_uses_placeoso_with_linked_legs(broker: TradovateBroker, tv: TradovateStandin) -> None:
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(5995),
                                         take_profit=Decimal(6010), stop_loss=Decimal(5985)))
    assert entry.status is OrderStatus.NEW and tv.count("/order/placeoso") == 1 and tv.count("/order/placeorder") == 0
    [sent] = bodies(tv, "/order/placeoso")
    assert sent["bracket1"] == {"action": "Sell", "orderType": "Limit", "price": 6010,
                                "clOrdId": f"{entry.client_order_id}-tp"}
    assert sent["bracket2"]["orderType"] == "Stop" and sent["bracket2"]["stopPrice"] == 5985
    legs = [o for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id]
    assert sorted((o.order_type, o.side) for o in legs) == [(OrderType.LIMIT, Side.SELL), (OrderType.STOP, Side.SELL)]
    assert len({o.oco_group for o in legs}) == 1 and legs[0].oco_group is not None
    tv.set_price(ES, 5995)
    [position] = await broker.positions()
    assert position.quantity == 1
    tv.set_price(ES, 6012)  # take profit fills, the stop is cancelled with it
    assert await broker.positions() == [] and await broker.open_orders() == []


async def test_close_position_and_flatten(broker: TradovateBroker, tv: TradovateStandin) -> None:
    await broker.place_order(req("ES1!", "2", key="a"))
    await broker.place_order(req("MNQ1!", "1", key="b", side=Side.SELL))
    resting = await broker.place_order(req("ES1!", key="c", order_type=OrderType.LIMIT, limit_price=Decimal(5900)))
    closing = await broker.close_position("ES1!")
    assert closing is not None and (closing.side, closing.quantity, closing.symbol) == (Side.SELL, 2, "ES1!")
    assert await broker.close_position("ES1!") is None  # nothing left to close
    assert tv.count("/order/liquidateposition") == 1
    resting2 = await broker.place_order(req("ES1!", key="d", order_type=OrderType.LIMIT, limit_price=Decimal(5900)))
    assert {o.broker_order_id for o in await broker.open_orders()} == {resting2.broker_order_id}  # 1st: liquidated

    report = await broker.flatten()
    assert [o.broker_order_id for o in report.cancelled] == [resting2.broker_order_id]
    assert [(o.symbol, o.side, o.quantity) for o in report.closing] == [("MNQ1!", Side.BUY, 1)]
    assert report.errors == [] and resting.broker_order_id != resting2.broker_order_id
    assert await broker.positions() == [] and await broker.open_orders() == []
    assert all(b["admin"] is False for b in bodies(tv, "/order/liquidateposition"))
    # /position/list keeps flat rows (netPos 0): they are not positions
    assert len(tv.positions) == 2


async def test_refusals_are_typed_and_nothing_is_sent(broker: TradovateBroker, tv: TradovateStandin) -> None:
    before = len(tv.calls)
    with pytest.raises(UnknownSymbol):
        await broker.place_order(req("ZB1!"))  # no contract calendar: refused before any request
    assert len(tv.calls) == before
    with pytest.raises(UnknownSymbol, match="no contract AAPL; nothing was sent"):
        await broker.place_order(req("NASDAQ:AAPL"))
    with pytest.raises(OrderRejected, match="whole contracts"):
        await broker.place_order(req(qty="1.5"))
    with pytest.raises(OrderRejected, match="needs its price"):
        await broker.place_order(req(order_type=OrderType.LIMIT))
    assert tv.count("/order/placeorder") == 0
    tv.trading_locked.add(7001)
    with pytest.raises(OrderRejected, match="TradingLocked: Trading is locked"):
        await broker.place_order(req(key="locked"))
    tv.trading_locked.clear()
    with pytest.raises(OrderRejected, match="InvalidPrice"):
        await broker.place_order(req(key="tick", order_type=OrderType.LIMIT, limit_price=Decimal("5990.1")))


async def test_same_client_order_id_twice_places_once(broker: TradovateBroker, tv: TradovateStandin) -> None:
    first = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(5900)))
    second = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal(5900)))
    assert second.broker_order_id == first.broker_order_id
    assert tv.orders_with_clordid(first.client_order_id) == [int(first.broker_order_id)]


async def test_timeout_after_accept_does_not_duplicate(tv: TradovateStandin, tmp_path: Path) -> None:
    broker = make_broker(tv, tmp_path, config={"timeout_seconds": 0.3})
    await broker.connect()
    try:
        tv.faults.delay_next(1.0, path="/order/placeorder", after_handling=True)
        order = await broker.place_order(req())
        assert order.status is OrderStatus.FILLED
        assert tv.count("/order/placeorder") == 1 and tv.orders_with_clordid(order.client_order_id) == [
            int(order.broker_order_id)]
    finally:
        await broker.close()


async def test_connection_reset_after_accept_does_not_duplicate(broker: TradovateBroker, tv: TradovateStandin) -> None:
    tv.faults.drop_next(path="/order/placeorder")
    order = await broker.place_order(req())
    assert order.client_order_id == client_order_id(ACCOUNT, "sig-1") and order.status is OrderStatus.FILLED
    assert tv.count("/order/placeorder") == 1 and len(tv.orders_with_clordid(order.client_order_id)) == 1
    [position] = await broker.positions()
    assert position.quantity == 1


async def test_5xx_then_success_places_once(broker: TradovateBroker, tv: TradovateStandin) -> None:
    tv.faults.fail_next(2, status=502, path="/order/placeorder")
    order = await broker.place_order(req())
    assert order.status is OrderStatus.FILLED
    assert tv.count("/order/placeorder") == 3 and len(tv.orders_with_clordid(order.client_order_id)) == 1
    assert tv.count("/command/list") >= 2  # looked up before each resend


async def test_p_ticket_is_waited_out_and_sent_back(broker: TradovateBroker, tv: TradovateStandin) -> None:
    tv.throttle_next(p_time=1, path="/order/placeorder")
    started = time.monotonic()
    order = await broker.place_order(req())
    assert time.monotonic() - started >= 1.0 and order.status is OrderStatus.FILLED
    first, second = bodies(tv, "/order/placeorder")
    assert "p-ticket" not in first and second["p-ticket"] and second["clOrdId"] == first["clOrdId"]
    assert len(tv.orders_with_clordid(order.client_order_id)) == 1 and tv.throttled == 1
    tv.throttle_next(p_time=1, path="/position/list")  # GETs carry the ticket as a query parameter
    [position] = await broker.positions()
    assert position.quantity == 1 and tv.throttled == 2


async def test_p_captcha_or_long_p_time_fails_clearly(broker: TradovateBroker, tv: TradovateStandin) -> None:
    tv.throttle_next(p_time=1, captcha=True, path="/position/list")
    with pytest.raises(BrokerUnavailable, match="captcha"):
        await broker.positions()
    tv.outstanding.clear()
    tv.throttle_next(p_time=60, path="/position/list")
    with pytest.raises(BrokerUnavailable, match="throttled us for 60s"):
        await broker.positions()


async def test_restart_after_lost_response_does_not_duplicate(tv: TradovateStandin, tmp_path: Path) -> None:
    first = make_broker(tv, tmp_path)
    await first.connect()
    tv.faults.drop_next(path="/order/placeorder")  # accepted, answer lost ...
    tv.faults.fail_next(20, status=503, path="/command/list")  # ... and the lookup cannot tell
    try:
        with pytest.raises(BrokerUnavailable, match="state unknown"):
            await first.place_order(req())
    finally:
        await first.close()  # the process dies here
    tv.faults.clear()
    assert (tmp_path / "tradovate" / f"{ACCOUNT}.orders").exists()
    second = make_broker(tv, tmp_path)  # a new process, same state directory
    await second.connect()
    try:
        order = await second.place_order(req())  # the engine resends the signal's order
    finally:
        await second.close()
    assert tv.count("/order/placeorder") == 1
    assert tv.orders_with_clordid(order.client_order_id) == [int(order.broker_order_id)]


async def test_token_expiry_mid_session_is_renewed(broker: TradovateBroker, tv: TradovateStandin) -> None:
    assert tv.count("/auth/accesstokenrequest") == 1
    tv.expire_tokens()
    assert await broker.positions() == []
    assert tv.count("/auth/accesstokenrequest") == 2
    tv.expire_tokens()
    order = await broker.place_order(req())  # a 401 means not processed: resent once, placed once
    assert order.status is OrderStatus.FILLED and len(tv.orders_with_clordid(order.client_order_id)) == 1
    assert broker.healthy()


async def test_token_is_renewed_before_it_expires(tv: TradovateStandin, tmp_path: Path) -> None:
    now = [datetime.now(UTC)]
    clock: Callable[[], datetime] = lambda: now[0]  # noqa: E731
    broker = make_broker(tv, tmp_path, clock=clock)
    await broker.connect()
    try:
        await broker.positions()
        assert tv.count("/auth/renewaccesstoken") == 0
        now[0] += timedelta(seconds=broker.settings.token_renew_seconds + 1)
        assert await broker.positions() == []
        assert tv.count("/auth/renewaccesstoken") == 1 and tv.count("/auth/accesstokenrequest") == 1
    finally:
        await broker.close()


async def test_wrong_credentials_raise_authentication_failed(tv: TradovateStandin, tmp_path: Path) -> None:
    for config in ({"password": SecretStr("hunter2-wrong")}, {"sec": SecretStr("sec-wrong-123")}):
        broker = make_broker(tv, tmp_path, config=config)
        try:
            with pytest.raises(AuthenticationFailed, match="refused the login of user 'trader'") as err:
                await broker.connect()
            for secret in ("hunter2-wrong", "sec-wrong-123", "tv-password", "tv-secret"):
                assert secret not in err.value.reason and secret not in str(err.value)
            assert not broker.healthy()
        finally:
            await broker.close()
    assert tv.count("/account/list") == 0


async def test_unknown_account_is_refused_at_connect(tv: TradovateStandin, tmp_path: Path) -> None:
    broker = make_broker(tv, tmp_path, config={"account_spec": "NOPE"})
    try:
        with pytest.raises(AuthenticationFailed, match=r"no account NOPE \(accounts: DEMO7001, DEMO7002\)"):
            await broker.connect()
    finally:
        await broker.close()
    second = make_broker(tv, tmp_path, config={"account_id": 7002})
    try:
        await second.connect()
        assert second.account_spec == "DEMO7002"
    finally:
        await second.close()


async def test_broker_down_at_connect_is_unavailable_with_reason(tmp_path: Path) -> None:
    stand = await TradovateStandin().start()
    url = stand.url
    await stand.stop()  # nothing listens there any more
    broker = make_broker(stand, tmp_path, settings=settings_of(stand, base_url=url, timeout_seconds=1))
    try:
        unreachable = r"tradovate is unreachable at http://127\.0\.0\.1:\d+/v1: .*cannot"
        with pytest.raises(BrokerUnavailable, match=unreachable):
            await broker.connect()
        assert not broker.healthy()
    finally:
        await broker.close()


async def test_polling_emits_each_fill_and_status_change_once(tv: TradovateStandin, tmp_path: Path) -> None:
    tv_order = make_broker(tv, tmp_path / "other")  # an order that exists before connect is not news
    await tv_order.connect()
    await tv_order.place_order(req(key="old"))
    await tv_order.close()

    broker = make_broker(tv, tmp_path, poll_interval=0.05)
    reports, two_fills = reports_until_fills(broker, 2)
    await broker.connect()
    try:
        resting = await broker.place_order(req(qty="2", order_type=OrderType.LIMIT, limit_price=Decimal(5990)))
        await asyncio.sleep(0.2)
        tv.set_price(ES, 5990)
        await broker.place_order(req("MNQ1!", key="m"))  # fills at once
        await asyncio.wait_for(two_fills.wait(), timeout=5)
        await asyncio.sleep(0.3)  # several more polls: nothing new may appear
    finally:
        await broker.close()
    fills = [r.fill for r in reports if r.fill is not None]
    assert sorted((f.symbol, f.quantity) for f in fills) == [("ES1!", 2), ("MNQ1!", 1)]
    assert len({f.fill_id for f in fills}) == 2
    assert {f.client_order_id for f in fills} == {resting.client_order_id, client_order_id(ACCOUNT, "m")}
    statuses = [r.order.status for r in reports if r.order is not None and r.order.broker_order_id ==
                resting.broker_order_id]
    # NEW only if a poll saw the order before place_order returned; never a status twice
    assert statuses in ([OrderStatus.FILLED], [OrderStatus.NEW, OrderStatus.FILLED])
    assert not any(r.order is not None and r.order.client_order_id == client_order_id(ACCOUNT, "old") for r in reports)
