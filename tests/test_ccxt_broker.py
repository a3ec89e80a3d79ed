"""CcxtBroker (ccxt, Binance) against the contract-checked Binance spot stand-in: orders, sizing, OCO, polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.base import AuthenticationFailed, Broker, BrokerReport, OrderRejected, UnknownSymbol
from brokers.ccxt.broker import CcxtBroker
from brokers.registry import ADAPTERS
from config.brokers import BROKER_SECTIONS, CcxtSettings
from daemon.domain import OrderStatus, OrderType, Side, client_order_id
from tests.standin_fixtures import quick_retries, request_maker
from tests.standins.binance_api import BinanceStandIn, watched_session

FAST = quick_retries(max_retry_after=2.0)


def settings_for(standin: BinanceStandIn, **over: Any) -> CcxtSettings:
    api = f"{standin.url}/api/v3"
    values: dict[str, Any] = {
        "exchange": "binance", "api_key": standin.api_key, "secret": standin.secret, "sandbox": True,
        "api_urls": {"public": api, "private": api, "v1": f"{standin.url}/api/v1"}, "timeout_seconds": 2,
        "rate_limit_per_minute": 60000, "weight_throttle": False, "stream": False, "stream_url": standin.ws_url,
        **over}
    return CcxtSettings.model_validate(values)


@pytest.fixture
async def standin() -> AsyncIterator[BinanceStandIn]:
    async with BinanceStandIn() as stand:
        yield stand
    stand.assert_no_violations()


class Harness:
    def __init__(self, standin: BinanceStandIn, state: Path) -> None:
        self.standin, self.state = standin, state
        self.session, self.hosts = watched_session()
        self.brokers: list[CcxtBroker] = []
        self.reports: list[BrokerReport] = []

    async def broker(self, connect: bool = True, **over: Any) -> CcxtBroker:
        b = CcxtBroker("c1", settings_for(self.standin, **over), self.state, session=self.session, retry=FAST,
                       poll_interval=0)
        self.brokers.append(b)

        async def keep(report: BrokerReport) -> None:
            self.reports.append(report)

        b.set_report_handler(keep)
        if connect:
            await b.connect()
        return b

    async def close(self) -> None:
        for b in self.brokers:
            await b.close()
        await self.session.close()


@pytest.fixture
async def harness(standin: BinanceStandIn, tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(standin, tmp_path)
    try:
        yield h
    finally:
        await h.close()
    assert set(h.hosts) <= {"127.0.0.1"}, h.hosts


@pytest.fixture
async def broker(harness: Harness) -> CcxtBroker:
    return await harness.broker()


req = request_maker("c1", "BTCUSDT", "0.01")


def posts(standin: BinanceStandIn) -> int:
    return standin.count("POST", "/api/v3/order")


async def test_registered_and_a_broker(broker: CcxtBroker, harness: Harness, standin: BinanceStandIn) -> None:
    assert ADAPTERS["ccxt"] == "brokers.ccxt.broker:build" and BROKER_SECTIONS["ccxt"] is CcxtSettings
    assert isinstance(broker, Broker) and broker.healthy()
    # load_markets reads the spot exchangeInfo only: no futures exchangeInfo, no /sapi (margin, capital config)
    assert sorted(set(standin.requests)) == [("GET", "/api/v3/account"), ("GET", "/api/v3/exchangeInfo")]
    assert harness.hosts and set(harness.hosts) == {"127.0.0.1"}


async def test_market_buy_becomes_a_position_net_of_the_base_fee(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    order = await broker.place_order(req("BINANCE:BTCUSDT", "0.01"))
    assert (order.status, order.filled_quantity, order.average_fill_price) == (OrderStatus.FILLED, Decimal("0.01"),
                                                                               Decimal("60000"))
    assert order.symbol == "BTCUSDT" and order.client_order_id == client_order_id("c1", "sig-1")
    assert standin.book.by_client("BTCUSDT", order.client_order_id) is not None
    [position] = await broker.positions()
    assert (position.symbol, position.quantity, position.average_price) == ("BTCUSDT", Decimal("0.00999"), 60000)
    account = await broker.account_state()
    assert account.currency == "USDT" and account.cash == Decimal("9400")
    assert account.equity == Decimal("9400") + Decimal("0.00999") * 60000
    [fill] = await broker.fills()
    assert (fill.symbol, fill.quantity, fill.price, fill.commission) == ("BTCUSDT", Decimal("0.01"), 60000,
                                                                         Decimal("0.6"))
    assert fill.client_order_id == order.client_order_id and fill.fill_id.startswith("BTCUSDT:")


async def test_quantity_is_rounded_down_to_the_lot_step(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    order = await broker.place_order(req("ETHUSDT", "0.123456"))
    assert order.quantity == Decimal("0.1234") and order.filled_quantity == Decimal("0.1234")


@pytest.mark.parametrize(("qty", "words"), [
    ("0.000001", "below the exchange's minimum 0.00001 (LOT_SIZE)"),
    ("0.00005", "below the exchange's minimum notional 5 (NOTIONAL)"),
])
async def test_below_the_minimums_is_refused_with_the_numbers(broker: CcxtBroker, standin: BinanceStandIn,
                                                              qty: str, words: str) -> None:
    with pytest.raises(OrderRejected, match=r"nothing was sent") as caught:
        await broker.place_order(req("BTCUSDT", qty))
    assert words in caught.value.reason
    assert posts(standin) == 0


async def test_unknown_symbol_sends_nothing(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    with pytest.raises(UnknownSymbol, match="DOGEUSDT is not a spot market on binance"):
        await broker.place_order(req("DOGEUSDT", "10"))
    assert posts(standin) == 0


async def test_insufficient_balance_is_a_typed_rejection(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    with pytest.raises(OrderRejected, match="insufficient balance"):
        await broker.place_order(req("BTCUSDT", "1"))
    assert await broker.positions() == []


async def test_wrong_secret_is_refused_by_the_signature_check(harness: Harness) -> None:
    with pytest.raises(AuthenticationFailed, match="Signature for this request is not valid"):
        await harness.broker(secret="not-the-secret")


async def test_limit_rests_then_modify_is_cancel_replace_then_cancel(broker: CcxtBroker,
                                                                      standin: BinanceStandIn) -> None:
    order = await broker.place_order(req("ETHUSDT", "0.1", order_type=OrderType.LIMIT, limit_price=Decimal("2900")))
    assert order.status is OrderStatus.NEW and order.limit_price == 2900
    assert standin.book.locked["USDT"] == Decimal("290")
    moved = await broker.modify_order(order.broker_order_id, limit_price=Decimal("2800"))
    assert moved.broker_order_id != order.broker_order_id and moved.limit_price == 2800
    assert moved.client_order_id == order.client_order_id  # the engine's id, without the replacement suffix
    assert standin.book.orders[int(order.broker_order_id)]["status"] == "CANCELED"
    assert standin.count("POST", "/api/v3/order/cancelReplace") == 1
    assert [o.broker_order_id for o in await broker.open_orders()] == [moved.broker_order_id]
    cancelled = await broker.cancel_order(moved.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and await broker.open_orders() == []
    assert standin.book.locked["USDT"] == 0
    again = await broker.cancel_order(moved.broker_order_id)  # cancelling a finished order returns it unchanged
    assert again.status is OrderStatus.CANCELLED


async def test_stop_and_stop_limit_orders(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    stop = await broker.place_order(req("BTCUSDT", "0.01", key="s1", order_type=OrderType.STOP,
                                        stop_price=Decimal("61000")))
    stop_limit = await broker.place_order(req("BTCUSDT", "0.01", key="s2", order_type=OrderType.STOP_LIMIT,
                                              stop_price=Decimal("61000"), limit_price=Decimal("61100")))
    assert (stop.order_type, stop.stop_price) == (OrderType.STOP, 61000)
    assert (stop_limit.order_type, stop_limit.stop_price, stop_limit.limit_price) == (OrderType.STOP_LIMIT, 61000,
                                                                                      61100)
    kinds = {o["clientOrderId"]: o["type"] for o in standin.book.orders.values()}
    assert kinds == {stop.client_order_id: "STOP_LOSS", stop_limit.client_order_id: "STOP_LOSS_LIMIT"}
    standin.set_price("BTCUSDT", Decimal("61050"))
    assert {o.broker_order_id for o in await broker.open_orders()} == set()
    assert sum(p.quantity for p in await broker.positions()) == Decimal("0.01998")


async def test_bracket_is_entry_then_binance_oco(broker: CcxtBroker, standin: BinanceStandIn,
                                                 harness: Harness) -> None:
    entry = await broker.place_order(req("BTCUSDT", "0.01", take_profit=Decimal("63000"), stop_loss=Decimal("58000")))
    assert entry.status is OrderStatus.FILLED
    legs = await broker.open_orders()
    assert sorted((o.order_type, o.side, o.quantity) for o in legs) == [
        (OrderType.LIMIT, Side.SELL, Decimal("0.00999")), (OrderType.STOP, Side.SELL, Decimal("0.00999"))]
    assert {o.parent_order_id for o in legs} == {entry.broker_order_id} and len({o.oco_group for o in legs}) == 1
    assert standin.count("POST", "/api/v3/orderList/oco") == 1
    await broker.poll_once()  # reports the entry's fill
    standin.set_price("BTCUSDT", Decimal("57900"))  # the stop triggers; the take-profit expires with it
    await broker.poll_once()
    assert await broker.positions() == [] and await broker.open_orders() == []
    fills = [r.fill for r in harness.reports if r.fill is not None]
    assert [(f.side, f.quantity) for f in fills] == [(Side.BUY, Decimal("0.01")), (Side.SELL, Decimal("0.00999"))]
    ends = {r.order.order_type: r.order.status for r in harness.reports if r.order is not None}
    assert ends == {OrderType.STOP: OrderStatus.FILLED, OrderType.LIMIT: OrderStatus.EXPIRED}


async def test_brackets_on_a_stop_entry_are_refused(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    with pytest.raises(OrderRejected, match=r"a stop entry cannot carry these exits.*nothing was sent"):
        await broker.place_order(req(order_type=OrderType.STOP, stop_price=Decimal("61000"),
                                     take_profit=Decimal("63000"), stop_loss=Decimal("60000")))
    with pytest.raises(OrderRejected, match="a limit entry cannot carry these exits"):  # one exit: no OTO here
        await broker.place_order(req(key="one", order_type=OrderType.LIMIT, limit_price=Decimal("59000"),
                                     take_profit=Decimal("61000")))
    assert posts(standin) == 0 and standin.book.orders == {}


async def test_limit_entry_with_both_exits_is_one_otoco(broker: CcxtBroker, standin: BinanceStandIn,
                                                        harness: Harness) -> None:
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("59000"),
                                         take_profit=Decimal("61000"), stop_loss=Decimal("58000")))
    assert standin.count("POST", "/api/v3/orderList/otoco") == 1 and posts(standin) == 0
    assert (entry.status, entry.order_type, entry.limit_price, entry.parent_order_id) == (
        OrderStatus.NEW, OrderType.LIMIT, Decimal("59000"), None)
    resting = await broker.open_orders()
    legs = [o for o in resting if o.parent_order_id == entry.broker_order_id]
    assert sorted((o.side, o.order_type, o.quantity, o.limit_price or o.stop_price) for o in legs) == [
        (Side.SELL, OrderType.LIMIT, Decimal("0.00999"), Decimal("61000")),
        (Side.SELL, OrderType.STOP, Decimal("0.00999"), Decimal("58000"))]  # what the entry leaves after its fee
    assert {o.client_order_id for o in resting} == {entry.client_order_id}

    standin.set_price("BTCUSDT", Decimal("59000"))  # the entry fills; Binance puts the pair on the book
    standin.set_price("BTCUSDT", Decimal("61000"))  # the take-profit fills, the stop expires
    await broker.poll_once()
    await broker.poll_once()
    assert await broker.positions() == [] and await broker.open_orders() == []
    fills = [r.fill for r in harness.reports if r.fill is not None]
    assert sorted((f.side, f.quantity, f.price) for f in fills) == [
        (Side.BUY, Decimal("0.01"), 59000), (Side.SELL, Decimal("0.00999"), 61000)]
    assert len({f.fill_id for f in fills}) == 2


async def test_cancelling_an_otoco_entry_cancels_its_pending_exits(broker: CcxtBroker,
                                                                   standin: BinanceStandIn) -> None:
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("59000"),
                                         take_profit=Decimal("61000"), stop_loss=Decimal("58000")))
    legs = {o.broker_order_id for o in await broker.open_orders() if o.parent_order_id == entry.broker_order_id}
    assert len(legs) == 2
    report = await broker.flatten()  # the entry first: Binance cancels its list with it
    assert report.cancelled[0].broker_order_id == entry.broker_order_id and report.errors == []
    assert {o.broker_order_id for o in report.cancelled[1:]} == legs
    assert await broker.open_orders() == [] and all(o["status"] == "CANCELED" for o in standin.book.orders.values())
    assert standin.book.locked.get("USDT", Decimal(0)) == 0


async def test_otoco_answer_lost_is_looked_up_not_resent(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    standin.unknown_next(path="/api/v3/orderList/otoco")
    entry = await broker.place_order(req(order_type=OrderType.LIMIT, limit_price=Decimal("59000"),
                                         take_profit=Decimal("61000"), stop_loss=Decimal("58000")))
    assert standin.count("POST", "/api/v3/orderList/otoco") == 1 and len(standin.book.lists) == 1
    assert entry.client_order_id == client_order_id("c1", "sig-1") and entry.limit_price == Decimal("59000")


def test_quantity_step_is_the_markets_lot_step(broker: CcxtBroker) -> None:
    assert broker.quantity_step("BINANCE:BTCUSDT") == Decimal("0.00001")
    assert broker.quantity_step("ETHUSDT") == Decimal("0.0001")
    with pytest.raises(UnknownSymbol):
        broker.quantity_step("DOGEUSDT")


async def test_polling_reports_each_fill_once(broker: CcxtBroker, standin: BinanceStandIn, harness: Harness) -> None:
    await broker.place_order(req("ETHUSDT", "0.1", order_type=OrderType.LIMIT, limit_price=Decimal("2900")))
    await broker.poll_once()
    assert [r.fill for r in harness.reports if r.fill] == []
    standin.set_price("ETHUSDT", Decimal("2890"))
    for _ in range(3):
        await broker.poll_once()
    fills = [r.fill for r in harness.reports if r.fill is not None]
    assert [(f.symbol, f.quantity, f.price) for f in fills] == [("ETHUSDT", Decimal("0.1"), 2900)]
    assert [r.order.status for r in harness.reports if r.order is not None][-1] is OrderStatus.FILLED


async def test_close_position_cancels_its_exits_and_sells(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    await broker.place_order(req("BTCUSDT", "0.01", take_profit=Decimal("63000"), stop_loss=Decimal("58000")))
    closing = await broker.close_position("BTCUSDT")
    assert closing is not None and closing.side is Side.SELL and closing.status is OrderStatus.FILLED
    assert closing.quantity == Decimal("0.00999")
    assert await broker.positions() == [] and await broker.open_orders() == []
    assert await broker.close_position("BTCUSDT") is None


async def test_flatten_cancels_and_sells_everything(broker: CcxtBroker, standin: BinanceStandIn) -> None:
    await broker.place_order(req("BTCUSDT", "0.01", key="a"))
    await broker.place_order(req("ETHUSDT", "0.5", key="b"))
    await broker.place_order(req("ETHUSDT", "0.1", key="c", order_type=OrderType.LIMIT, limit_price=Decimal("2000")))
    report = await broker.flatten()
    assert len(report.cancelled) == 1 and sorted(o.symbol for o in report.closing) == ["BTCUSDT", "ETHUSDT"]
    assert report.errors == [] and await broker.positions() == [] and await broker.open_orders() == []


async def test_restart_finds_the_order_from_the_journal(harness: Harness, standin: BinanceStandIn) -> None:
    first = await harness.broker()
    order = await first.place_order(req("BTCUSDT", "0.01"))
    await first.close()
    second = await harness.broker()
    found = await second.find_order(order.client_order_id)
    assert found is not None and found.broker_order_id == order.broker_order_id
    again = await second.place_order(req("BTCUSDT", "0.01"))  # the same signal again: nothing new is sent
    assert again.broker_order_id == order.broker_order_id and posts(standin) == 1
    assert await second.find_order(client_order_id("c1", "never-sent")) is None
    await asyncio.sleep(0)


async def test_sandbox_switch_and_unknown_exchange() -> None:
    from brokers.ccxt.exchange import make_exchange

    base = {"exchange": "binance", "api_key": "k", "secret": "s"}
    testnet = make_exchange(CcxtSettings.model_validate(base))
    live = make_exchange(CcxtSettings.model_validate({**base, "sandbox": False}))
    try:
        assert testnet.urls["api"]["private"] == "https://testnet.binance.vision/api/v3"
        assert "sapi" not in testnet.urls["api"]  # the spot testnet has no /sapi
        assert live.urls["api"]["private"] == "https://api.binance.com/api/v3"
        assert testnet.options["fetchMarkets"]["types"] == ["spot"] and testnet.options["fetchCurrencies"] is False
    finally:
        await testnet.close()
        await live.close()
    with pytest.raises(ValueError, match="ccxt has no exchange 'nosuchex'"):
        make_exchange(CcxtSettings.model_validate({**base, "exchange": "NoSuchEx"}))
