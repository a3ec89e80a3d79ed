"""Take-profit ladders as pure plans: one bracket per level, sizes, R multiples, flips, refusals; action add."""

from __future__ import annotations

from decimal import Decimal

from daemon.domain import Action, Intent, Side, client_order_id
from daemon.ladder import level_leg, plan
from daemon.planner import EXIT_LEG, Instrument
from daemon.shapes import BreakEven, Ladder, OffsetUnit, PriceOffset, TakeProfitLevel

ES = Instrument("ES1!", Decimal("0.25"), Decimal(50))


def ticks(n: int | str) -> PriceOffset:
    return PriceOffset(unit=OffsetUnit.TICKS, value=Decimal(n))


def r(n: int | str) -> PriceOffset:
    return PriceOffset(unit=OffsetUnit.R, value=Decimal(n))


def intent(**fields: object) -> Intent:
    base: dict[str, object] = {"signal_id": "s", "dedup_key": "k", "account": "a", "symbol": "ES1!",
                               "action": Action.BUY, "price": Decimal(6000), "quantity": Decimal(3)}
    return Intent.model_validate(base | fields)


def two_levels(first: TakeProfitLevel | None = None, **extra: object) -> Ladder:
    return Ladder(levels=(first or TakeProfitLevel(price=r(1), percent=Decimal(50)), TakeProfitLevel(price=r(2))),
                  **extra)  # type: ignore[arg-type]


def test_each_level_is_a_bracket_of_its_own_sharing_the_stop() -> None:
    todo = plan(intent(quantity=Decimal(4), take_profit=two_levels(), stop_loss=ticks(16)), position=Decimal(0),
                account=None, instrument=ES)
    assert todo.refusal is None
    assert [(o.quantity, o.take_profit, o.stop_loss) for o in todo.orders] == [
        (2, Decimal(6004), Decimal(5996)), (2, Decimal(6008), Decimal(5996))]
    assert [o.client_order_id for o in todo.orders] == [client_order_id("a", "k"), client_order_id("a", "k", "tp2")]
    assert level_leg(2) == "tp3"


def test_percent_sizes_round_down_and_the_last_level_takes_the_rest() -> None:
    todo = plan(intent(take_profit=two_levels(), stop_loss=ticks(8)), position=Decimal(0), account=None,
                instrument=ES)
    assert [o.quantity for o in todo.orders] == [1, 2]  # 50 % of 3 is 1.5: 1, the rest 2


def test_levels_in_other_units_and_a_short() -> None:
    ladder = Ladder(levels=(TakeProfitLevel(price=ticks(8), quantity=Decimal(1)),
                            TakeProfitLevel(price=PriceOffset(unit=OffsetUnit.PERCENT, value=Decimal("0.1"))),))
    todo = plan(intent(action=Action.SELL, quantity=Decimal(2), take_profit=ladder, stop_loss=Decimal(6010)),
                position=Decimal(0), account=None, instrument=ES)
    assert [(o.side, o.quantity, o.take_profit, o.stop_loss) for o in todo.orders] == [
        (Side.SELL, 1, Decimal(5998), Decimal(6010)), (Side.SELL, 1, Decimal(5994), Decimal(6010))]


def test_a_flip_exits_first_and_ladders_only_the_opening_quantity() -> None:
    todo = plan(intent(target_position=Decimal(2), quantity=None, take_profit=two_levels(), stop_loss=ticks(16)),
                position=Decimal(-3), account=None, instrument=ES)
    exit_, *levels = todo.orders
    assert (exit_.quantity, exit_.reduce_only, exit_.take_profit, exit_.client_order_id) == (
        3, True, None, client_order_id("a", "k", EXIT_LEG))
    assert [o.quantity for o in levels] == [1, 1]


def test_an_order_that_only_reduces_gets_no_ladder() -> None:
    todo = plan(intent(quantity=Decimal(2), take_profit=two_levels(), stop_loss=ticks(16)), position=Decimal(-5),
                account=None, instrument=ES)
    [only] = todo.orders
    assert (only.quantity, only.reduce_only, only.take_profit, only.stop_loss) == (2, True, None, None)


def test_refusals_say_why_with_the_numbers() -> None:
    cases = [
        (intent(quantity=Decimal(1), take_profit=two_levels(), stop_loss=ticks(8)), "50% of 1 rounds down to 0"),
        (intent(take_profit=two_levels(TakeProfitLevel(price=r(1), quantity=Decimal(3))), stop_loss=ticks(8)),
         "nothing is left for the last level"),
        (intent(take_profit=two_levels(TakeProfitLevel(price=r(1))), stop_loss=ticks(8)), "needs quantity or percent"),
        (intent(take_profit=two_levels()), "needs a stop_loss"),
        (intent(take_profit=two_levels(break_even=BreakEven(after=2)), stop_loss=ticks(8)), "leaves nothing"),
    ]
    for case, words in cases:
        todo = plan(case, position=Decimal(0), account=None, instrument=ES)
        assert todo.orders == [] and todo.refusal is not None and words in todo.refusal, todo.refusal


def test_a_single_take_profit_in_r() -> None:
    [one] = plan(intent(take_profit=r("1.5"), stop_loss=ticks(8)), position=Decimal(0), account=None,
                 instrument=ES).orders
    assert (one.take_profit, one.stop_loss) == (Decimal(6003), Decimal(5998))


def test_add_follows_the_open_position_and_does_nothing_when_flat() -> None:
    [long_add] = plan(intent(action=Action.ADD), position=Decimal(2), account=None, instrument=ES).orders
    [short_add] = plan(intent(action=Action.ADD), position=Decimal(-2), account=None, instrument=ES).orders
    flat = plan(intent(action=Action.ADD), position=Decimal(0), account=None, instrument=ES)
    assert (long_add.side, long_add.quantity, short_add.side) == (Side.BUY, 3, Side.SELL)
    assert flat.orders == [] and flat.note == "no ES1! position to add to"
