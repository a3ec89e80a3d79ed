"""Trailing stops in a plan: the trail of an intent, its first stop price, and who moves it (broker or daemon).

Two shapes reach here from the planner's `Plan`:

- an entry with `trailing_stop`: the entry's bracket gets a stop-loss at the trail from the entry price, and
  that stop trails. It is one OCO family with the take-profit, and the exit guard shrinks it with the position.
- an order of type `trailing_stop` (TradersPost `orderType: trailing_stop`): it only closes (part of) the
  position; its first stop is the trail away from the signal's price (else the market).

`for_broker` decides who trails: a broker that has the shape natively (`Broker.native_trailing`: "order" for
a trailing stop order, "bracket" for a trailing bracket leg, each by a price distance; "order_percent" and
"bracket_percent" by a percent) gets the trail; anywhere else the broker gets a plain stop and the daemon
moves it (`daemon.managed_exits.runner`).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import replace
from decimal import Decimal

from daemon.domain import Intent, Order, OrderRequest, OrderType, utcnow
from daemon.managed_exits.rules import ExitRule, stop_for
from daemon.planner import Instrument, Plan
from daemon.shapes import OffsetUnit, PriceOffset, Trail

HUNDRED = Decimal(100)


class TrailError(ValueError):
    """The trailing stop cannot be planned; the message says why."""


def trail_of(offset: PriceOffset, instrument: Instrument) -> Trail:
    """The trail an intent's `trailing_stop` means on this instrument."""
    if offset.unit is OffsetUnit.PERCENT:
        if offset.value >= HUNDRED:
            raise TrailError("trailing_stop.percent must be below 100")
        return Trail(percent=offset.value)
    if offset.unit is OffsetUnit.TICKS:
        return Trail(distance=offset.value * instrument.tick_size)
    if offset.unit is OffsetUnit.POINTS:
        return Trail(distance=offset.value)
    if offset.unit is OffsetUnit.DOLLARS:
        return Trail(distance=offset.value / instrument.point_value)
    raise TrailError("a trailing_stop in dollars of the whole position depends on the quantity: use another unit")


def shape(todo: Plan, intent: Intent, instrument: Instrument, market: Decimal | None) -> Plan:
    """`todo` with the intent's trailing stop in its orders (unchanged without one); a refusal says why not."""
    if intent.trailing_stop is None or todo.refusal is not None or not todo.orders:
        return todo
    try:
        trail = trail_of(intent.trailing_stop, instrument)
        if intent.order_type is OrderType.TRAILING_STOP:
            orders = _trailing_orders(todo.orders, intent, trail, instrument, market)
        else:
            orders = [_trailing_bracket(r, intent, trail, instrument, market) for r in todo.orders]
    except TrailError as exc:
        return Plan(refusal=str(exc))
    return replace(todo, orders=orders)


def reference(intent: Intent, market: Decimal | None) -> Decimal | None:
    """The price a trailing stop starts from: the signal's (or the market's) for a trailing stop order, the
    entry's own price for an entry's trailing exit."""
    if intent.order_type is OrderType.TRAILING_STOP:
        return intent.price or market
    return intent.limit_price or intent.stop_price or intent.price or market


def _trailing_orders(requests: list[OrderRequest], intent: Intent, trail: Trail, instrument: Instrument,
                     market: Decimal | None) -> list[OrderRequest]:
    if any(not r.reduce_only for r in requests):
        raise TrailError("a trailing_stop order only closes a position: send it as an exit of the position "
                         "(action exit, or the side that reduces it), or put trailing_stop on the entry")
    start = reference(intent, market)
    if start is None:
        raise TrailError("a trailing_stop order needs a price to trail from: send price (e.g. {{close}})")
    return [r.model_copy(update={"order_type": OrderType.TRAILING_STOP, "limit_price": None, "trail": trail,
                                 "stop_price": _first_stop(start, trail, r, instrument)}) for r in requests]


def _trailing_bracket(request: OrderRequest, intent: Intent, trail: Trail, instrument: Instrument,
                      market: Decimal | None) -> OrderRequest:
    if request.reduce_only:
        return request  # an order that only reduces gets no exits
    entry = reference(intent, market)
    if entry is None:
        raise TrailError("a trailing_stop needs an entry price to start from: send price (e.g. {{close}}) or a "
                         "limit/stop price")
    return request.model_copy(update={"stop_loss": _first_stop(entry, trail, request, instrument, opening=True),
                                      "trail": trail})


def _first_stop(reference: Decimal, trail: Trail, request: OrderRequest, instrument: Instrument,
                opening: bool = False) -> Decimal:
    exit_side = request.side.opposite() if opening else request.side
    stop = stop_for(reference, trail, exit_side, instrument.tick_size).normalize()
    if stop <= 0:
        raise TrailError(f"the trail from {reference.normalize():f} gives the stop {stop:f}, not above zero")
    return stop


def for_broker(request: OrderRequest, native: Set[str]) -> tuple[OrderRequest, bool]:
    """(what to send, whether the daemon must move the stop): the broker trails natively where it can."""
    trail = request.trail
    if trail is None:
        return request, False
    order = request.order_type is OrderType.TRAILING_STOP
    if ("order" if order else "bracket") + ("" if trail.distance is not None else "_percent") in native:
        return request, False
    if order:
        return request.model_copy(update={"order_type": OrderType.STOP, "trail": None}), True
    return request.model_copy(update={"trail": None}), True


def rule_for(sent: OrderRequest, trail: Trail, order: Order, instrument: Instrument,
             reference: Decimal) -> ExitRule:
    """The managed rule that moves the stop of `order` (a stop order) or of its bracket leg (an entry)."""
    own_stop = sent.stop_loss is None
    stop = sent.stop_price if own_stop else sent.stop_loss
    assert stop is not None
    return ExitRule(
        id=sent.client_order_id, account=sent.account, symbol=sent.symbol,
        exit_side=sent.side if own_stop else sent.side.opposite(), trail=trail, tick=instrument.tick_size,
        best=reference, stop_price=stop, entry_order_id=None if own_stop else order.broker_order_id,
        stop_order_id=order.broker_order_id if own_stop else None, updated_at=utcnow(),
    )


def managed_rule(intent: Intent, sent: OrderRequest, trail: Trail | None, order: Order, instrument: Instrument,
                 market: Decimal | None) -> ExitRule | None:
    """The rule by which the daemon trails this placed stop (or the entry's bracket stop), or None when there
    is no trail, or no price to start from, or nothing is left resting to move."""
    start = reference(intent, market)
    if trail is None or start is None or not (sent.stop_loss is not None or order.status.is_open):
        return None
    return rule_for(sent, trail, order, instrument, start)
