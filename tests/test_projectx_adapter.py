"""ProjectXBroker against the contract-checked ProjectX stand-in: orders, brackets, positions, flatten, faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from brokers.base import (
    AuthenticationFailed,
    Broker,
    BrokerReport,
    BrokerUnavailable,
    OrderRejected,
    UnknownSymbol,
)
from brokers.projectx.broker import ProjectXBroker
from brokers.symbols import normalize
from config.brokers import ProjectXSettings
from daemon.domain import OrderStatus, OrderType, Side, client_order_id, utcnow
from tests.conftest import wait_until
from tests.standin_fixtures import connected, quick_retries, request_maker, running
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.projectx_engine import PxContract

FAST = quick_retries(max_retry_after=2.0)
PLACE = "/api/Order/place"
ROOTS = {"ES": ("EP", "0.25", "12.50"), "NQ": ("ENQ", "0.25", "5.00"), "MES": ("MES", "0.25", "1.25"),
         "MNQ": ("MNQ", "0.25", "0.50")}


def ensure_front_contracts(standin: ProjectXStandin) -> None:
    """The stand-in lists the Z26 contracts; after their roll, add whatever `ES1!` etc. mean today."""
    engine = standin.broker
    names = {c.name for c in engine.contracts.values()}
    for root, (code, tick, value) in ROOTS.items():
        name = normalize(f"{root}1!")
        if name not in names:
            cid = f"CON.F.US.{code}.{name[len(root)]}2{name[len(root) + 1:]}"  # ESH7 -> CON.F.US.EP.H27
            engine.contracts[cid] = PxContract(cid, name, f"{root} front", Decimal(tick), Decimal(value),
                                               f"F.US.{code}", Decimal("1.40"))
            engine.prices[cid] = Decimal("21000") if "NQ" in root else Decimal("6000")


def contract_id(standin: ProjectXStandin, ticker: str) -> str:
    name = normalize(ticker)
    return next(c.id for c in standin.broker.contracts.values() if c.name == name)


def projectx_running(prepare: Callable[[ProjectXStandin], None] | None = None, *, check: bool = True
                     ) -> AbstractAsyncContextManager[ProjectXStandin]:
    """A started ProjectX stand-in with today's front contracts (and whatever `prepare` adds); see
    `tests.standin_fixtures.running`."""
    stand = ProjectXStandin()
    ensure_front_contracts(stand)
    if prepare is not None:
        prepare(stand)
    return running(stand, check=check)


@pytest.fixture
async def standin() -> AsyncIterator[ProjectXStandin]:
    async with projectx_running() as stand:
        yield stand


def make_broker(standin: ProjectXStandin, *, api_key: str = "px-api-key", timeout: float = 1.0,
                stream: bool = False, reconcile: float = 30.0, **kw: Any) -> ProjectXBroker:
    """A broker on the stand-in; polling only (`poll_interval` 0: off) unless `stream` turns the hub on."""
    settings = ProjectXSettings(username="trader", api_key=SecretStr(api_key), base_url=standin.url,
                                timeout_seconds=timeout, rate_limit_per_minute=6000, stream=stream,
                                reconcile_interval_seconds=reconcile)
    kw.setdefault("poll_interval", 0)
    return ProjectXBroker("px1", settings, retry=FAST, **kw)


@pytest.fixture
async def broker(standin: ProjectXStandin) -> AsyncIterator[ProjectXBroker]:
    async with connected(make_broker(standin)) as b:
        yield b


req = request_maker("px1", "ES1!", "1")


def tagged(standin: ProjectXStandin, key: str) -> list[Any]:
    cid = client_order_id("px1", key)
    return [o for o in standin.broker.orders.values() if o.custom_tag == cid]


def sent(standin: ProjectXStandin, path: str) -> list[Any]:
    return [body for _, p, body in standin.calls if p == path]


# -- orders ------------------------------------------------------------------------------------------------


async def test_connects_to_the_first_tradable_account(broker: ProjectXBroker) -> None:
    assert isinstance(broker, Broker) and broker.healthy() and broker.account_id == 1001
    account = await broker.account_state()
    assert (account.broker, account.cash, account.equity) == ("projectx", Decimal("50000"), Decimal("50000"))


async def test_account_chosen_by_name(standin: ProjectXStandin) -> None:
    settings = ProjectXSettings(username="trader", api_key=SecretStr("px-api-key"), base_url=standin.url,
                                account_name="150KTC-V2-000001-2")
    broker = ProjectXBroker("px2", settings, poll_interval=0)
    await broker.connect()
    try:
        assert broker.account_id == 1002 and (await broker.account_state()).cash == Decimal("150000")
    finally:
        await broker.close()


async def test_fills_since_a_time(broker: ProjectXBroker) -> None:
    await broker.place_order(req(key="f1"))
    middle = utcnow()
    await broker.place_order(req(key="f2", side=Side.SELL))
    assert [f.side for f in await broker.fills()] == [Side.BUY, Side.SELL]
    assert [f.client_order_id for f in await broker.fills(middle)] == [client_order_id("px1", "f2")]


async def test_market_order_fills_into_position_account_and_fills(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    order = await broker.place_order(req("CME_MINI:ES1!", "2"))
    assert (order.status, order.filled_quantity, order.average_fill_price) == (OrderStatus.FILLED, 2, 6000)
    assert order.symbol == "ES1!" and order.client_order_id == client_order_id("px1", "sig-1")
    [body] = sent(standin, PLACE)
    assert body == {"accountId": 1001, "contractId": contract_id(standin, "ES1!"), "type": 2, "side": 0,
                    "size": 2, "customTag": client_order_id("px1", "sig-1")}
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("ES1!", 2, Decimal("6000"))
    [fill] = await broker.fills()
    assert (fill.symbol, fill.side, fill.quantity, fill.price, fill.commission) == (
        "ES1!", Side.BUY, 2, Decimal("6000"), Decimal("2.80"))
    assert fill.client_order_id == order.client_order_id and fill.broker_order_id == order.broker_order_id
    assert (await broker.account_state()).cash == Decimal("50000") - Decimal("2.80")


async def test_short_micro_position_and_point_values(broker: ProjectXBroker) -> None:
    await broker.place_order(req("MNQ1!", "3", side=Side.SELL))
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("MNQ1!", -3, Decimal("21000"))
    assert [broker.multiplier(s) for s in ("ES1!", "MESZ6", "CME_MINI:NQ1!", "MNQ1!")] == [50, 5, 20, 2]


async def test_limit_rests_then_modify_and_cancel(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    order = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("5990.25")))
    assert order.status is OrderStatus.NEW and order.limit_price == Decimal("5990.25")
    assert sent(standin, PLACE)[0]["limitPrice"] == 5990.25 and sent(standin, PLACE)[0]["type"] == 1
    assert [o.broker_order_id for o in await broker.open_orders()] == [order.broker_order_id]
    modified = await broker.modify_order(order.broker_order_id, quantity=Decimal(3), limit_price=Decimal("5995"))
    assert (modified.quantity, modified.limit_price, modified.status) == (3, Decimal("5995"), OrderStatus.NEW)
    cancelled = await broker.cancel_order(order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and await broker.open_orders() == []
    again = await broker.cancel_order(order.broker_order_id)  # finished: returned unchanged, no error
    assert again.status is OrderStatus.CANCELLED


async def test_stop_and_stop_limit_orders(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    stop = await broker.place_order(req(key="s1", side=Side.SELL, order_type=OrderType.STOP,
                                        stop_price=Decimal("5980")))
    stop_limit = await broker.place_order(req(key="s2", order_type=OrderType.STOP_LIMIT,
                                              stop_price=Decimal("6010"), limit_price=Decimal("6011")))
    assert [b["type"] for b in sent(standin, PLACE)] == [4, 3]
    assert stop.status is OrderStatus.NEW and stop_limit.order_type is OrderType.STOP_LIMIT
    standin.set_price(contract_id(standin, "ES1!"), "5979")
    [position] = await broker.positions()
    assert position.quantity == -1
    assert {o.broker_order_id for o in await broker.open_orders()} == {stop_limit.broker_order_id}


async def test_bracket_uses_native_tick_offsets_and_exits_are_children(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    entry = await broker.place_order(req(qty="1", reference_price=Decimal("6000"), take_profit=Decimal("6010"),
                                         stop_loss=Decimal("5990.5")))
    body = sent(standin, PLACE)[0]
    assert body["takeProfitBracket"] == {"ticks": 40, "type": 1}
    assert body["stopLossBracket"] == {"ticks": -38, "type": 4}  # negative below a long entry
    exits = {o.client_order_id: o for o in await broker.open_orders()}
    assert set(exits) == {f"{entry.client_order_id}-tp", f"{entry.client_order_id}-sl"}
    assert {o.parent_order_id for o in exits.values()} == {entry.broker_order_id}
    assert exits[f"{entry.client_order_id}-tp"].limit_price == Decimal("6010")
    assert exits[f"{entry.client_order_id}-sl"].stop_price == Decimal("5990.5")
    standin.set_price(contract_id(standin, "ES1!"), "6010")
    assert await broker.positions() == [] and await broker.open_orders() == []  # the gateway did the OCO


async def test_bracket_on_the_wrong_side_or_without_a_price_is_refused_before_sending(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    with pytest.raises(OrderRejected, match="wrong side"):
        await broker.place_order(req(reference_price=Decimal("6000"), stop_loss=Decimal("6005")))
    with pytest.raises(OrderRejected, match="needs the signal's price"):
        await broker.place_order(req(take_profit=Decimal("6010")))
    with pytest.raises(OrderRejected, match="whole contracts"):
        await broker.place_order(req(qty="1.5"))
    assert sent(standin, PLACE) == []


async def test_close_position_and_flatten(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    await broker.place_order(req("ES1!", "2", key="a"))
    await broker.place_order(req("MNQ1!", "1", key="b", side=Side.SELL))
    resting = await broker.place_order(req("ES1!", key="c", order_type=OrderType.LIMIT, limit_price=Decimal("5900")))
    closing = await broker.close_position("ES1!")
    assert closing is not None and (closing.side, closing.quantity, closing.symbol) == (Side.SELL, 2, "ES1!")
    assert await broker.close_position("ES1!") is None  # nothing left to close
    report = await broker.flatten()
    assert [o.broker_order_id for o in report.cancelled] == [resting.broker_order_id]
    assert report.cancelled[0].status is OrderStatus.CANCELLED and report.errors == []
    assert [(o.symbol, o.side, o.quantity, o.status) for o in report.closing] == [
        ("MNQ1!", Side.BUY, 1, OrderStatus.FILLED)]
    assert await broker.positions() == [] and await broker.open_orders() == []


async def test_unknown_symbols_are_refused_before_any_order(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    before = len(standin.calls)
    with pytest.raises(UnknownSymbol):
        await broker.place_order(req("NYMEX:CL1!"))  # no contract calendar: nothing sent at all
    with pytest.raises(UnknownSymbol):
        await broker.place_order(req("ES!"))  # unreadable ticker
    assert len(standin.calls) == before
    with pytest.raises(UnknownSymbol, match="no contract AAPL"):
        await broker.place_order(req("NASDAQ:AAPL"))
    with pytest.raises(UnknownSymbol, match="no contract ESZ8"):
        await broker.place_order(req("ES9!"))  # a real contract, but not listed by the gateway
    assert [p for _, p, _ in standin.calls[before:]] == ["/api/Contract/search"] * 2


async def test_business_failure_is_a_typed_error_with_the_gateways_reason(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    standin.broker.accounts[1001].can_trade = False
    with pytest.raises(OrderRejected, match=r"Account is not allowed to trade\. \(errorCode 10\)"):
        await broker.place_order(req())
    with pytest.raises(OrderRejected, match="not a multiple of the tick"):
        await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("5990.10")))


async def test_reused_custom_tag_returns_the_existing_order(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    first = await broker.place_order(req(key="dup", order_type=OrderType.LIMIT, limit_price=Decimal("5900")))
    again = await broker.place_order(req(key="dup", order_type=OrderType.LIMIT, limit_price=Decimal("5900")))
    assert again.broker_order_id == first.broker_order_id and len(tagged(standin, "dup")) == 1
    assert (await broker.find_order(first.client_order_id)) == again
    assert await broker.find_order(client_order_id("px1", "never")) is None


# -- faults --------------------------------------------------------------------------------------------------


async def test_timeout_after_accept_places_no_duplicate(standin: ProjectXStandin) -> None:
    broker = make_broker(standin, timeout=0.3)
    await broker.connect()
    try:
        standin.faults.delay_next(1.0, path=PLACE, after_handling=True)
        order = await broker.place_order(req(key="slow"))
    finally:
        await broker.close()
    assert order.status is OrderStatus.FILLED and len(tagged(standin, "slow")) == 1
    assert standin.count(PLACE) == 1


@pytest.mark.parametrize("after_handling", [True, False])
async def test_connection_reset_places_exactly_once(standin: ProjectXStandin, broker: ProjectXBroker,
                                                    after_handling: bool) -> None:
    standin.faults.drop_next(path=PLACE, after_handling=after_handling)
    order = await broker.place_order(req(key="reset"))
    assert order.status is OrderStatus.FILLED and len(tagged(standin, "reset")) == 1
    assert standin.count(PLACE) == (1 if after_handling else 2)
    [position] = await broker.positions()
    assert position.quantity == 1


async def test_5xx_then_success(standin: ProjectXStandin, broker: ProjectXBroker) -> None:
    standin.faults.fail_next(1, status=503, path=PLACE)
    standin.faults.fail_next(2, status=502, path="/api/Position/searchOpen")
    order = await broker.place_order(req(key="5xx"))
    assert order.status is OrderStatus.FILLED and len(tagged(standin, "5xx")) == 1
    assert len(await broker.positions()) == 1  # a search is retried on its own


async def test_persistent_5xx_fails_clearly_and_places_nothing(standin: ProjectXStandin,
                                                               broker: ProjectXBroker) -> None:
    standin.faults.fail_next(10, status=500, path=PLACE)
    with pytest.raises(BrokerUnavailable, match="not placed after 4 attempts"):
        await broker.place_order(req(key="down"))
    assert tagged(standin, "down") == []


async def test_429_is_honoured_and_nothing_doubles() -> None:
    async with ProjectXStandin(rate_limit=5, rate_window=1.0) as standin:
        ensure_front_contracts(standin)
        broker = make_broker(standin)
        await broker.connect()
        started = time.monotonic()
        try:
            for i in range(4):
                await broker.place_order(req(key=f"r{i}"))
            positions = await broker.positions()
        finally:
            await broker.close()
        assert time.monotonic() - started >= 0.9  # waited out Retry-After instead of failing
        assert [len(tagged(standin, f"r{i}")) for i in range(4)] == [1, 1, 1, 1]
        assert positions[0].quantity == 4
        standin.assert_no_violations()


async def test_token_expiry_mid_session_is_renewed_transparently(standin: ProjectXStandin,
                                                                 broker: ProjectXBroker) -> None:
    await broker.place_order(req(key="t1"))
    standin.expire_tokens()
    order = await broker.place_order(req(key="t2"))
    assert order.status is OrderStatus.FILLED and len(tagged(standin, "t2")) == 1
    assert standin.count("/api/Auth/loginKey") == 2 and broker.healthy()


async def test_token_is_renewed_with_validate_before_it_expires(standin: ProjectXStandin) -> None:
    shift = [timedelta(0)]

    def clock() -> datetime:
        return utcnow() + shift[0]

    broker = make_broker(standin, clock=clock)
    await broker.connect()
    try:
        shift[0] = timedelta(hours=21)  # past token_renew_seconds (20 h)
        await broker.account_state()
        await broker.account_state()
        assert (standin.count("/api/Auth/validate"), standin.count("/api/Auth/loginKey")) == (1, 1)
        assert sent(standin, "/api/Auth/validate") == [None]  # no body at all
        standin.expire_tokens()
        shift[0] = timedelta(hours=42)  # renewal refused (401): falls back to a fresh login
        await broker.account_state()
        assert (standin.count("/api/Auth/validate"), standin.count("/api/Auth/loginKey")) == (2, 2)
    finally:
        await broker.close()


async def test_broker_down_at_connect_is_unavailable_with_reason() -> None:
    standin = await ProjectXStandin().start()
    await standin.stop()
    broker = make_broker(standin)
    with pytest.raises(BrokerUnavailable, match=rf"projectx is unreachable at {standin.url}: .*login"):
        await broker.connect()
    assert not broker.healthy()
    await broker.close()


async def test_wrong_api_key_is_an_authentication_failure(standin: ProjectXStandin) -> None:
    broker = make_broker(standin, api_key="wrong")
    with pytest.raises(AuthenticationFailed, match=r"Invalid credentials\. \(errorCode 3\)"):
        await broker.connect()
    await broker.close()


# -- polling -------------------------------------------------------------------------------------------------


def collector(broker: ProjectXBroker) -> list[BrokerReport]:
    reports: list[BrokerReport] = []

    async def handle(report: BrokerReport) -> None:
        reports.append(report)

    broker.set_report_handler(handle)
    return reports


async def test_polling_reports_each_fill_and_status_change_once(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    reports = collector(broker)
    limit = await broker.place_order(req(key="p1", order_type=OrderType.LIMIT, limit_price=Decimal("5995")))
    await broker.poll_once()
    assert reports == []  # nothing new: the placement already answered with this state
    standin.set_price(contract_id(standin, "ES1!"), "5994")
    for _ in range(3):
        await broker.poll_once()
    fills = [r.fill for r in reports if r.fill is not None]
    orders = [r.order for r in reports if r.order is not None]
    assert [(f.broker_order_id, f.price, f.client_order_id) for f in fills] == [
        (limit.broker_order_id, Decimal("5994"), limit.client_order_id)]
    assert [(o.broker_order_id, o.status) for o in orders] == [(limit.broker_order_id, OrderStatus.FILLED)]
    assert reports.index(next(r for r in reports if r.fill)) == 0  # the fill comes before the status


async def test_background_polling_delivers_fills_from_the_platform(standin: ProjectXStandin) -> None:
    broker = make_broker(standin, poll_interval=0.1)
    reports = collector(broker)
    await broker.connect()
    try:
        standin.broker.place({"accountId": 1001, "contractId": contract_id(standin, "MES1!"), "type": 2,
                              "side": 1, "size": 1})  # placed by hand on the platform, no customTag
        fills: Callable[[], list[Any]] = lambda: [r.fill for r in reports if r.fill is not None]  # noqa: E731
        await wait_until(fills, within=10)
        await wait_until(lambda: any(r.order for r in reports), within=10)
        [fill] = fills()
        assert (fill.symbol, fill.side, fill.quantity, fill.client_order_id) == ("MES1!", Side.SELL, 1, "")
        assert broker.healthy()
    finally:
        await broker.close()
