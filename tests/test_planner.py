"""The order planner's rules, as pure functions: flips, reduce-only, resuming a flip, resting exits, group cancels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from daemon.domain import Action, Intent, Order, OrderStatus, OrderType, Side, client_order_id
from daemon.planner import EXIT_LEG, Instrument, after_exit_leg, cancel_order_of, plan, protect_exits

AAPL = Instrument("AAPL", Decimal("0.01"))
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def intent(**fields: object) -> Intent:
    base: dict[str, object] = {"signal_id": "s", "dedup_key": "k", "account": "a", "symbol": "AAPL",
                               "action": Action.BUY, "price": Decimal(100)}
    return Intent.model_validate(base | fields)


def order(oid: str, side: Side, qty: str, *, parent: str | None = None, oco: str | None = None,
          kind: OrderType = OrderType.LIMIT, at: int = 0, status: OrderStatus = OrderStatus.NEW) -> Order:
    return Order(broker_order_id=oid, client_order_id=oid, account="a", symbol="AAPL", side=side,
                 quantity=Decimal(qty), order_type=kind, status=status, parent_order_id=parent, oco_group=oco,
                 limit_price=Decimal(110), created_at=T0 + timedelta(seconds=at))


def test_a_flip_with_exits_is_an_exit_then_an_entry() -> None:
    todo = plan(intent(quantity=Decimal(6), take_profit=Decimal(110), stop_loss=Decimal(95)), position=Decimal(-5),
                account=None, instrument=AAPL)
    exit_, entry = todo.orders
    assert (exit_.side, exit_.quantity, exit_.reduce_only, exit_.take_profit) == (Side.BUY, 5, True, None)
    assert exit_.client_order_id == client_order_id("a", "k", EXIT_LEG)
    assert (entry.quantity, entry.take_profit, entry.stop_loss, entry.reduce_only) == (1, 110, 95, False)
    assert entry.client_order_id == client_order_id("a", "k")


def test_a_flip_without_exits_stays_one_order() -> None:
    [one] = plan(intent(target_position=Decimal(1)), position=Decimal(-5), account=None, instrument=AAPL).orders
    assert (one.side, one.quantity) == (Side.BUY, 6)


def test_resuming_a_flip_whose_exit_was_sent_plans_the_entry_only() -> None:
    sent = order("x", Side.BUY, "5", kind=OrderType.MARKET, status=OrderStatus.FILLED)
    todo = after_exit_leg(intent(quantity=Decimal(6), stop_loss=Decimal(95)), sent, position=Decimal(0),
                          account=None, instrument=AAPL)
    [entry] = todo.orders
    assert (entry.quantity, entry.stop_loss, entry.client_order_id) == (1, 95, client_order_id("a", "k"))


def test_exits_shrink_to_the_position_newest_first_and_wrong_side_ones_go() -> None:
    legs = [order("tp1", Side.SELL, "6", parent="e1", oco="g1", at=1), order("sl1", Side.SELL, "6", parent="e1",
            oco="g1", at=1), order("tp2", Side.SELL, "4", parent="e2", oco="g2", at=2),
            order("old", Side.BUY, "3", parent="e0", oco="g0")]
    fixes = {f.order.broker_order_id: f.quantity for f in protect_exits(Decimal(7), legs, "AAPL")}
    assert fixes == {"old": None, "tp2": Decimal(1)}  # g1 covers 6 of 7, g2 keeps 1
    assert {f.order.broker_order_id for f in protect_exits(Decimal(0), legs, "AAPL")} == {"tp1", "sl1", "tp2", "old"}
    # Legs of an entry that is still open are not live yet: nothing to fix.
    entry = order("e1", Side.BUY, "6", kind=OrderType.LIMIT)
    assert protect_exits(Decimal(0), [entry, *legs[:2]], "AAPL") == []


def test_groups_are_cancelled_through_their_root() -> None:
    entry = order("e", Side.BUY, "1")
    legs = [order("tp", Side.SELL, "1", parent="e", oco="e"), order("sl", Side.SELL, "1", parent="e", oco="e")]
    assert cancel_order_of([entry, *legs]) == [entry]
    live = [order("tp", Side.SELL, "1", parent="gone", oco="g"), order("sl", Side.SELL, "1", parent="gone", oco="g")]
    assert [o.broker_order_id for o in cancel_order_of(live)] == ["tp"]


def test_notional_sizing_rounds_down_to_the_quantity_step() -> None:
    btc = Instrument("BTCUSDT", Decimal("0.01"), quantity_step=Decimal("0.00001"))
    usd = {"quantity": Decimal(100), "quantity_type": "dollar_amount", "symbol": "BTCUSDT", "price": Decimal(60000)}
    [one] = plan(intent(**usd), position=Decimal(0), account=None, instrument=btc).orders
    assert one.quantity == Decimal("0.00166")  # 100 / 60000 = 0.0016666...
    whole = plan(intent(**usd), position=Decimal(0), account=None, instrument=Instrument("BTCUSDT", Decimal("0.01")))
    assert whole.orders == [] and whole.refusal is not None and "rounds down to 0; nothing was sent" in whole.refusal
    tiny = plan(intent(**usd | {"quantity": Decimal("0.5")}), position=Decimal(0), account=None, instrument=btc)
    assert tiny.refusal is not None and "rounds down to 0 (the quantity step is 0.00001)" in tiny.refusal
    half = plan(intent(action=Action.EXIT, symbol="BTCUSDT", percent_of_position=Decimal(50)),
                position=Decimal("0.00999"), account=None, instrument=btc)
    assert [o.quantity for o in half.orders] == [Decimal("0.00499")]
