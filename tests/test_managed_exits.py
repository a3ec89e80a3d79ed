"""Managed exit rules as pure functions: a trailing stop moves only in the position's favour, on the tick grid;
who trails a planned trailing stop (the broker natively, or the daemon)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from daemon.domain import OrderRequest, OrderType, Side
from daemon.managed_exits.rules import ExitRule, on_mark, stop_for
from daemon.managed_exits.trailing import for_broker
from daemon.shapes import Trail

T0 = datetime(2026, 1, 5, 15, tzinfo=UTC)
D = Decimal


def rule(side: Side, trail: Trail, best: str, stop: str, tick: str = "0.25") -> ExitRule:
    return ExitRule(id="r1", account="a", symbol="ES1!", exit_side=side, trail=trail, tick=D(tick), best=D(best),
                    stop_price=D(stop), stop_order_id="S1", updated_at=T0)


def test_a_longs_stop_follows_new_highs_only() -> None:
    r = rule(Side.SELL, Trail(distance=D(2)), "6000", "5998")
    r = on_mark(r, D("6003.1"), T0)
    assert (r.best, r.stop_price, r.moves) == (D("6003.1"), D("6001"), 1)  # floored to the tick: never nearer
    assert on_mark(r, D("6002"), T0) is r
    assert on_mark(r, D("5000"), T0) is r


def test_a_shorts_stop_follows_new_lows_only() -> None:
    r = rule(Side.BUY, Trail(percent=D(1)), "100", "101", tick="0.01")
    r = on_mark(r, D("90"), T0)
    assert (r.best, r.stop_price) == (D("90"), D("90.9"))
    assert on_mark(r, D("95"), T0) is r
    assert on_mark(r, D("90.5"), T0).stop_price == D("90.9")


def test_a_higher_high_that_would_not_tighten_the_stop_keeps_it() -> None:
    r = rule(Side.SELL, Trail(distance=D(2)), "6000", "6001")  # e.g. moved by hand closer than the trail
    moved = on_mark(r, D("6002"), T0)
    assert (moved.best, moved.stop_price, moved.moves) == (D("6002"), D("6001"), 0)


def test_stop_for_rounds_away_from_the_price() -> None:
    assert stop_for(D("100.004"), Trail(distance=D("1")), Side.SELL, D("0.01")) == D("99.00")
    assert stop_for(D("100.004"), Trail(distance=D("1")), Side.BUY, D("0.01")) == D("101.01")


def test_a_trail_is_a_distance_or_a_percent() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Trail()
    with pytest.raises(ValueError, match="exactly one"):
        Trail(distance=D(1), percent=D(1))


def request(kind: OrderType, trail: Trail, **extra: object) -> OrderRequest:
    return OrderRequest(client_order_id="c", account="a", symbol="ES1!", side=Side.SELL, quantity=D(1),
                        order_type=kind, trail=trail, **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(("native", "trail", "sent_type", "daemon_trails"), [
    (frozenset(), Trail(distance=D(2)), OrderType.STOP, True),
    (frozenset({"order"}), Trail(distance=D(2)), OrderType.TRAILING_STOP, False),
    (frozenset({"order"}), Trail(percent=D(2)), OrderType.STOP, True),
    (frozenset({"order", "order_percent"}), Trail(percent=D(2)), OrderType.TRAILING_STOP, False),
])
def test_who_trails_a_trailing_stop_order(native: frozenset[str], trail: Trail, sent_type: OrderType,
                                          daemon_trails: bool) -> None:
    sent, managed = for_broker(request(OrderType.TRAILING_STOP, trail, stop_price=D(5998)), native)
    assert (sent.order_type, managed) == (sent_type, daemon_trails)
    assert (sent.trail is None) == daemon_trails and sent.stop_price == D(5998)


@pytest.mark.parametrize(("native", "daemon_trails"), [
    (frozenset(), True), (frozenset({"order"}), True), (frozenset({"bracket"}), False)])
def test_who_trails_an_entrys_bracket_stop(native: frozenset[str], daemon_trails: bool) -> None:
    entry = request(OrderType.MARKET, Trail(distance=D(2)), stop_loss=D(5998)).model_copy(update={"side": Side.BUY})
    sent, managed = for_broker(entry, native)
    assert managed == daemon_trails and (sent.trail is None) == daemon_trails
    assert (sent.order_type, sent.stop_loss) == (OrderType.MARKET, D(5998))
