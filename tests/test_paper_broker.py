"""Tests of the paper broker: fills, resting orders, brackets, accounting and reports (persistence:
`test_paper_persistence.py`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.base import Broker, BrokerReport, OrderNotFound, OrderRejected
from brokers.paper.broker import PaperBroker
from brokers.symbols import symbol_root
from config.brokers import PaperSettings
from daemon.domain import Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

D = Decimal
ACCOUNT = "paper-1"
T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class Collector:
    """A real report handler that keeps what it is given."""

    def __init__(self) -> None:
        self.reports: list[BrokerReport] = []

    async def __call__(self, report: BrokerReport) -> None:
        self.reports.append(report)

    @property
    def orders(self) -> list[Order]:
        return [r.order for r in self.reports if r.order is not None]

    @property
    def fills(self) -> list[Fill]:
        return [r.fill for r in self.reports if r.fill is not None]


def make(tmp_path: Path, clock: Clock | None = None, **settings: Any) -> PaperBroker:
    return PaperBroker(ACCOUNT, PaperSettings(**settings), tmp_path / "paper.json", clock or Clock())


def req(
    cid: str,
    side: str,
    qty: str | int,
    symbol: str = "AAPL",
    limit: Decimal | None = None,
    stop: Decimal | None = None,
    **extra: Any,
) -> OrderRequest:
    """An order request; `limit` / `stop` make it a limit, stop or stop-limit order."""
    if limit is not None or stop is not None:
        kind = {
            (True, False): OrderType.LIMIT,
            (False, True): OrderType.STOP,
            (True, True): OrderType.STOP_LIMIT,
        }[(limit is not None, stop is not None)]
        extra.setdefault("order_type", kind)
    return OrderRequest(
        client_order_id=cid,
        account=ACCOUNT,
        symbol=symbol,
        side=Side(side),
        quantity=D(qty),
        limit_price=limit,
        stop_price=stop,
        **extra,
    )


@pytest.fixture
async def broker(tmp_path: Path) -> PaperBroker:
    b = make(tmp_path)
    await b.connect()
    return b


async def test_is_a_broker(broker: PaperBroker) -> None:
    assert isinstance(broker, Broker)
    assert broker.name == "paper"
    assert broker.healthy()


async def test_market_fill_with_slippage_and_commission(tmp_path: Path) -> None:
    b = make(tmp_path, slippage_bps=D(10), commission_per_unit=D("0.01"), commission_minimum=D(1))
    await b.connect()
    order = await b.place_order(req("a", "buy", 10, reference_price=D(100)))
    assert order.status is OrderStatus.FILLED
    assert order.broker_order_id == "P1"
    assert order.filled_quantity == D(10)
    assert order.average_fill_price == D("100.1")  # 10 bps against a buyer
    [fill] = await b.fills()
    assert (fill.price, fill.quantity, fill.commission) == (D("100.1"), D(10), D(1))  # the minimum applies
    state = await b.account_state()
    assert state.cash == D(100000) - D(1001) - D(1)
    assert state.unrealized_pnl == D(-1)  # marked at the unslipped reference price
    assert state.equity == state.cash + D(1000)
    assert state.buying_power == state.equity
    assert state.fees == D(1)

    sell = await b.place_order(req("b", "sell", 300, reference_price=D(110)))
    assert sell.average_fill_price == D("109.89")  # 10 bps against a seller
    fills = await b.fills()
    assert fills[1].commission == D(3)  # 300 * 0.01 is above the minimum
    [position] = await b.positions()
    assert position.quantity == D(-290)
    assert position.average_price == D("109.89")
    assert position.realized_pnl == (D("109.89") - D("100.1")) * 10


async def test_market_without_any_price_is_rejected(broker: PaperBroker) -> None:
    with pytest.raises(OrderRejected, match="no price known for AAPL: include price in the alert"):
        await broker.place_order(req("a", "buy", 1))
    assert await broker.find_order("a") is None
    assert await broker.fills() == []
    # a price seen earlier is enough
    await broker.observe_price("AAPL", D(50), T0)
    order = await broker.place_order(req("a", "buy", 1))
    assert order.average_fill_price == D(50)


async def test_place_is_idempotent_on_client_order_id(broker: PaperBroker) -> None:
    reports = Collector()
    broker.set_report_handler(reports)
    first = await broker.place_order(req("same", "buy", 10, reference_price=D(100)))
    again = await broker.place_order(req("same", "buy", 10, reference_price=D(120)))
    assert again == first
    assert len(await broker.fills()) == 1
    [position] = await broker.positions()
    assert position.quantity == D(10)
    assert len(reports.fills) == 1
    assert await broker.find_order("same") == first


async def test_invalid_requests_are_rejected(broker: PaperBroker) -> None:
    cases = [
        (req("a", "buy", 1, order_type=OrderType.LIMIT), "needs a limit_price"),
        (req("b", "buy", 1, order_type=OrderType.STOP), "needs a stop_price"),
        (req("c", "buy", 1, order_type=OrderType.STOP_LIMIT, stop=D(5)), "needs a limit_price"),
        (
            req("d", "buy", 1, order_type=OrderType.MARKET, limit=D(5), reference_price=D(1)),
            "takes no limit_price",
        ),
        (req("e", "buy", 1, reference_price=D(100), take_profit=D(95)), "take_profit 95 must be above"),
        (req("f", "sell", 1, reference_price=D(100), stop_loss=D(95)), "stop_loss 95 must be above"),
        (req("g", "buy", 1, limit=D(90), stop_loss=D(91)), "stop_loss 91 must be below"),
        (req("h", "sell", 1, reference_price=D(100), reduce_only=True), "would not reduce"),
        (req("i", "buy", 1, limit=D(-1)), "must be positive"),
    ]
    for request, message in cases:
        with pytest.raises(OrderRejected, match=message):
            await broker.place_order(request)
    other = OrderRequest(
        client_order_id="x",
        account="other",
        symbol="AAPL",
        side=Side.BUY,
        quantity=D(1),
        reference_price=D(1),
    )
    with pytest.raises(OrderRejected, match="account"):
        await broker.place_order(other)
    assert await broker.open_orders() == []
    assert await broker.fills() == []


async def test_limit_rests_then_fills_on_observed_price(broker: PaperBroker) -> None:
    order = await broker.place_order(req("lim", "buy", 10, limit=D(99), reference_price=D(100)))
    assert order.status is OrderStatus.NEW
    assert await broker.open_orders() == [order]
    await broker.observe_price("AAPL", D("99.5"), T0)
    assert (await broker.find_order("lim")).status is OrderStatus.NEW  # type: ignore[union-attr]
    await broker.observe_price("AAPL", D("98.5"), T0 + timedelta(minutes=1))
    filled = await broker.find_order("lim")
    assert filled is not None and filled.status is OrderStatus.FILLED
    assert filled.average_fill_price == D("98.5")  # a gap through the limit fills at the better price
    [fill] = await broker.fills()
    assert fill.filled_at == T0 + timedelta(minutes=1)
    assert await broker.open_orders() == []
    [position] = await broker.positions()
    assert (position.quantity, position.average_price) == (D(10), D("98.5"))


async def test_limit_fill_with_slippage_is_never_worse_than_the_limit(tmp_path: Path) -> None:
    b = make(tmp_path, slippage_bps=D(100))
    order = await b.place_order(req("lim", "sell", 1, limit=D(100), reference_price=D("100.5")))
    assert order.status is OrderStatus.FILLED  # marketable at once
    assert order.average_fill_price == D(100)  # 100.5 - 1% would be 99.495, capped at the limit


async def test_ioc_limit_that_cannot_fill_expires(broker: PaperBroker) -> None:
    order = await broker.place_order(
        req("ioc", "buy", 1, limit=D(90), reference_price=D(100), time_in_force=TimeInForce.IOC)
    )
    assert order.status is OrderStatus.EXPIRED
    assert await broker.open_orders() == []


async def test_stop_triggers_and_fills_at_the_price_with_slippage(tmp_path: Path) -> None:
    b = make(tmp_path, slippage_bps=D(10))
    order = await b.place_order(req("stop", "buy", 2, stop=D(105), reference_price=D(100)))
    assert order.status is OrderStatus.NEW
    await b.observe_price("AAPL", D(104), T0)
    assert (await b.open_orders())[0].status is OrderStatus.NEW
    await b.observe_price("AAPL", D(106), T0)
    done = await b.find_order("stop")
    assert done is not None and done.status is OrderStatus.FILLED
    assert done.average_fill_price == D("106.106")

    sell_stop = await b.place_order(req("ss", "sell", 2, stop=D(100)))
    await b.observe_price("AAPL", D(99), T0)
    done = await b.find_order(sell_stop.client_order_id)
    assert done is not None and done.average_fill_price == D("98.901")
    assert await b.positions() == []


async def test_bracket_take_profit_fills_and_cancels_stop_loss(broker: PaperBroker) -> None:
    reports = Collector()
    broker.set_report_handler(reports)
    entry = await broker.place_order(req("br", "buy", 10, reference_price=D(100), take_profit=D(110), stop_loss=D(95)))
    assert entry.status is OrderStatus.FILLED
    tp, sl = await broker.open_orders()
    assert (tp.client_order_id, tp.order_type, tp.limit_price) == ("br-tp", OrderType.LIMIT, D(110))
    assert (sl.client_order_id, sl.order_type, sl.stop_price) == ("br-sl", OrderType.STOP, D(95))
    for child in (tp, sl):
        assert child.side is Side.SELL and child.quantity == D(10)
        assert child.parent_order_id == entry.broker_order_id
    assert tp.oco_group is not None and tp.oco_group == sl.oco_group
    # entry fill first (order update, then fill), then the two children
    kinds = [
        ("order", r.order.client_order_id) if r.order else ("fill", r.fill.client_order_id) for r in reports.reports
    ]  # type: ignore[union-attr]
    assert kinds == [("order", "br"), ("fill", "br"), ("order", "br-tp"), ("order", "br-sl")]

    await broker.observe_price("AAPL", D(110), T0)
    assert (await broker.find_order("br-tp")).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert (await broker.find_order("br-sl")).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert await broker.open_orders() == []
    assert await broker.positions() == []
    state = await broker.account_state()
    assert state.realized_pnl == D(100)
    assert state.cash == state.equity == D(100100)


async def test_bracket_stop_loss_side_and_limit_entry(broker: PaperBroker) -> None:
    entry = await broker.place_order(
        req("br", "sell", 4, limit=D(50), reference_price=D(48), take_profit=D(45), stop_loss=D(52))
    )
    assert entry.status is OrderStatus.NEW
    assert [o.client_order_id for o in await broker.open_orders()] == ["br"]  # children wait for the fill
    await broker.observe_price("AAPL", D(50), T0)
    assert sorted(o.client_order_id for o in await broker.open_orders()) == ["br-sl", "br-tp"]
    await broker.observe_price("AAPL", D(53), T0)  # short stopped out at 53
    assert (await broker.find_order("br-sl")).average_fill_price == D(53)  # type: ignore[union-attr]
    assert (await broker.find_order("br-tp")).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert await broker.positions() == []
    assert (await broker.account_state()).realized_pnl == D(-12)


async def test_closing_a_bracketed_position_cancels_its_exits(broker: PaperBroker) -> None:
    await broker.place_order(req("br", "buy", 1, reference_price=D(100), take_profit=D(110), stop_loss=D(90)))
    closing = await broker.close_position("AAPL")
    assert closing is not None and closing.status is OrderStatus.FILLED
    assert closing.client_order_id.startswith("close-AAPL-")
    assert await broker.open_orders() == []
    await broker.observe_price("AAPL", D(80), T0)  # the stop cannot reopen anything
    assert await broker.positions() == []
    assert await broker.close_position("AAPL") is None


async def test_average_cost_partial_close_and_flip(broker: PaperBroker) -> None:
    await broker.place_order(req("1", "buy", 10, reference_price=D(100)))
    await broker.place_order(req("2", "buy", 10, reference_price=D(110)))
    [p] = await broker.positions()
    assert (p.quantity, p.average_price) == (D(20), D(105))
    await broker.place_order(req("3", "sell", 5, reference_price=D(120)))
    [p] = await broker.positions()
    assert (p.quantity, p.average_price, p.realized_pnl) == (D(15), D(105), D(75))
    await broker.place_order(req("4", "sell", 25, reference_price=D(100)))  # closes 15 at a loss, opens 10 short
    [p] = await broker.positions()
    assert (p.quantity, p.average_price, p.realized_pnl) == (D(-10), D(100), D(0))
    await broker.observe_price("AAPL", D(95), T0)
    [p] = await broker.positions()
    assert p.unrealized_pnl == D(50)
    await broker.place_order(req("5", "buy", 10, reference_price=D(90)))
    assert await broker.positions() == []
    state = await broker.account_state()
    assert state.realized_pnl == D(100)
    # cash ledger: -1000 -1100 +600 +2500 -900
    assert state.cash == state.equity == D(100100)
    assert state.unrealized_pnl == D(0)


@pytest.mark.parametrize(
    ("symbol", "root"),
    [
        ("ES1!", "ES"),
        ("ESZ6", "ES"),
        ("ESZ26", "ES"),
        ("NQH26", "NQ"),
        ("CME_MINI:MES1!", "MES"),
        ("M2KZ6", "M2K"),
        ("AAPL", "AAPL"),
        ("BRK.B", "BRK.B"),
    ],
)
def test_symbol_root(symbol: str, root: str) -> None:
    assert symbol_root(symbol) == root


async def test_futures_multiplier_balance_model(tmp_path: Path) -> None:
    b = make(tmp_path, multipliers={"ES": D(50)}, commission_per_unit=D("2.5"))
    assert (b.multiplier("ES1!"), b.multiplier("ESZ26"), b.multiplier("AAPL")) == (D(50), D(50), D(1))
    await b.place_order(req("1", "buy", 2, symbol="ES1!", reference_price=D(5000)))
    state = await b.account_state()
    assert state.cash == D(100000) - D(5)  # only the commission moves the balance
    await b.observe_price("ES1!", D(5010), T0)
    [p] = await b.positions()
    assert p.unrealized_pnl == D(1000)  # 10 points * 2 contracts * 50
    state = await b.account_state()
    assert state.equity == D(100995) and state.unrealized_pnl == D(1000)
    await b.place_order(req("2", "sell", 2, symbol="ES1!", reference_price=D(5020)))
    state = await b.account_state()
    assert state.realized_pnl == D(2000)
    assert state.fees == D(10)
    assert state.cash == state.equity == D(101990)
    # a dated contract uses the same root
    await b.place_order(req("3", "sell", 1, symbol="ESZ6", reference_price=D(5000)))
    await b.observe_price("ESZ6", D(4990), T0)
    [p] = await b.positions()
    assert p.unrealized_pnl == D(500)


async def test_flatten_cancels_orders_and_closes_positions(tmp_path: Path) -> None:
    b = make(tmp_path, multipliers={"ES": D(50)})
    reports = Collector()
    b.set_report_handler(reports)
    await b.place_order(req("a", "buy", 10, reference_price=D(100)))
    await b.place_order(req("e", "sell", 1, symbol="ES1!", reference_price=D(5000)))
    await b.place_order(req("l", "buy", 5, limit=D(90)))
    await b.place_order(req("s", "buy", 1, symbol="ES1!", stop=D(5050)))
    await b.observe_price("AAPL", D(101), T0)
    await b.observe_price("ES1!", D(4990), T0)
    reports.reports.clear()

    result = await b.flatten()
    assert sorted(o.client_order_id for o in result.cancelled) == ["l", "s"]
    assert all(o.status is OrderStatus.CANCELLED for o in result.cancelled)
    assert sorted(o.symbol for o in result.closing) == ["AAPL", "ES1!"]
    assert all(o.status is OrderStatus.FILLED for o in result.closing)
    assert result.errors == []
    assert await b.positions() == []
    assert await b.open_orders() == []
    state = await b.account_state()
    assert state.realized_pnl == D(10) + D(500)
    assert state.cash == state.equity == D(100510)
    assert len(reports.fills) == 2
    assert {o.status for o in reports.orders} == {OrderStatus.CANCELLED, OrderStatus.FILLED}


async def test_cancel(broker: PaperBroker) -> None:
    filled = await broker.place_order(req("m", "buy", 1, reference_price=D(10)))
    assert await broker.cancel_order(filled.broker_order_id) == filled  # finished: unchanged
    resting = await broker.place_order(req("l", "buy", 1, limit=D(5)))
    cancelled = await broker.cancel_order(resting.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert await broker.cancel_order(resting.broker_order_id) == cancelled
    await broker.observe_price("AAPL", D(4), T0)
    assert len(await broker.fills()) == 1
    with pytest.raises(OrderNotFound):
        await broker.cancel_order("P999")


async def test_modify(broker: PaperBroker) -> None:
    reports = Collector()
    broker.set_report_handler(reports)
    order = await broker.place_order(req("l", "buy", 1, limit=D(95), reference_price=D(100)))
    bigger = await broker.modify_order(order.broker_order_id, quantity=D(3))
    assert (bigger.status, bigger.quantity, bigger.limit_price) == (OrderStatus.NEW, D(3), D(95))
    with pytest.raises(OrderRejected, match="no stop price"):
        await broker.modify_order(order.broker_order_id, stop_price=D(90))
    moved = await broker.modify_order(order.broker_order_id, limit_price=D(101))  # now marketable at 100
    assert moved.status is OrderStatus.FILLED
    assert (moved.average_fill_price, moved.filled_quantity) == (D(100), D(3))
    # placed, modified (quantity), filled by the second modification
    assert [o.status for o in reports.orders] == [OrderStatus.NEW, OrderStatus.NEW, OrderStatus.FILLED]
    assert [o.quantity for o in reports.orders] == [D(1), D(3), D(3)]
    with pytest.raises(OrderRejected, match="only resting orders"):
        await broker.modify_order(order.broker_order_id, limit_price=D(90))
    with pytest.raises(OrderNotFound):
        await broker.modify_order("P42", quantity=D(1))


async def test_reference_price_triggers_other_resting_orders(broker: PaperBroker) -> None:
    await broker.place_order(req("l", "sell", 1, limit=D(105)))
    await broker.place_order(req("m", "buy", 1, reference_price=D(106)))
    assert (await broker.find_order("l")).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert await broker.positions() == []


async def test_fills_since(tmp_path: Path) -> None:
    clock = Clock()
    broker = make(tmp_path, clock)
    await broker.place_order(req("1", "buy", 1, reference_price=D(10)))
    later = clock.tick(60)
    await broker.place_order(req("2", "buy", 1, reference_price=D(10)))
    assert [f.client_order_id for f in await broker.fills(later)] == ["2"]
    assert len(await broker.fills()) == 2
    ids = {f.fill_id for f in await broker.fills()}
    assert len(ids) == 2


async def test_report_handler_may_call_back_into_the_broker(broker: PaperBroker) -> None:
    seen: list[tuple[str, Any]] = []

    async def handler(report: BrokerReport) -> None:
        positions = await broker.positions()
        seen.append(("fill" if report.fill else "order", [p.quantity for p in positions]))
        if report.fill is not None and report.fill.client_order_id == "a":
            await broker.observe_price("MSFT", D(1), T0)  # a mutation from inside the handler

    broker.set_report_handler(handler)
    await asyncio.wait_for(broker.place_order(req("a", "buy", 3, reference_price=D(10))), timeout=5)
    assert seen == [("order", [D(3)]), ("fill", [D(3)])]  # saved and booked before the reports went out


async def test_concurrent_orders_and_prices_are_serialised(broker: PaperBroker) -> None:
    reports = Collector()
    broker.set_report_handler(reports)
    await broker.place_order(req("lim", "sell", 10, limit=D(200)))
    orders = [broker.place_order(req(f"c{i}", "buy", 1, reference_price=D(100))) for i in range(20)]
    prices = [broker.observe_price("AAPL", D(150 + i), T0) for i in range(20)]
    await asyncio.gather(*orders, *prices)
    placed = [await broker.find_order(f"c{i}") for i in range(20)]
    assert len({o.broker_order_id for o in placed if o is not None}) == 20
    [p] = await broker.positions()
    assert p.quantity == D(20)
    assert len(reports.fills) == 20
    await broker.observe_price("AAPL", D(200), T0)
    [p] = await broker.positions()
    assert p.quantity == D(10)


def test_futures_point_value_defaults_to_the_cme_table() -> None:
    from brokers.paper.book import PaperBook

    book = PaperBook(Decimal(100_000), {"NQ": Decimal(7)})
    assert book.multiplier("ES1!") == Decimal(50) and book.multiplier("CME_MINI:MESZ6") == Decimal(5)
    assert book.multiplier("NQ1!") == Decimal(7)  # configured wins
    assert book.multiplier("GC") == Decimal(1)  # a stock ticker that happens to be a futures root
