"""The order planner: an intent and the account as the broker reports it -> the orders to send and to cancel.

Pure functions, no I/O: the executor gathers the position, the open orders, the account state and the
instrument, and carries out the `Plan`. The rules that keep money safe live here, in one place:

- A flip (short to long or back) is an exit followed by an entry when the entry carries exits: the exit is
  reduce-only and has no bracket, the entry's bracket covers only the quantity that opens. An order that
  only reduces a position never gets a bracket.
- Relative take-profit / stop-loss (`ticks`, `points`, `percent`, `dollars` of P&L per contract or for the
  position) become absolute prices from the entry price (limit or stop price, else the signal's price,
  else the market), rounded to the instrument's tick.
- Sizing by `quantity_type` rounds down to the instrument's quantity step (whole units, or a crypto
  market's lot step); a size that rounds to zero is refused with the numbers, never sent as a minimum.
- `protect_exits`: resting exits of a position may never cover more than the position, nor sit on the side
  that would add to it; those that do are shrunk or cancelled (`ExitFix`).
- `cancel_order_of`: a group is cancelled through its root (the broker cancels the legs with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from daemon.domain import (
    ZERO,
    AccountState,
    Action,
    Intent,
    Order,
    OrderRequest,
    OrderType,
    Side,
    client_order_id,
)
from daemon.shapes import AtrOffset, Ladder, OffsetUnit, PriceOffset, QuantityType

HUNDRED = Decimal(100)
EXIT_LEG = "exit"  # client order id leg of the exit half of a flip


@dataclass(frozen=True)
class Instrument:
    """What the planner needs to know about a symbol: its price increment, what one point is worth, and the
    smallest quantity increment it trades in (1: whole shares or contracts)."""

    symbol: str
    tick_size: Decimal
    point_value: Decimal = Decimal(1)
    quantity_step: Decimal = Decimal(1)


@dataclass(frozen=True)
class Plan:
    """Orders to send in this order (the exit of a flip first); `refusal` when the intent cannot be sized;
    `note` says why nothing is needed when `orders` is empty."""

    orders: list[OrderRequest] = field(default_factory=list)
    cancel_first: bool = False  # cancel the symbol's resting orders before sending (a full exit)
    note: str = ""
    refusal: str | None = None


class PlanError(ValueError):
    """The intent cannot be turned into orders; the message has the numbers."""


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


# ---- prices -----------------------------------------------------------------------------------------------

def round_to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """The nearest multiple of `tick` (half up)."""
    return ((price / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick).normalize()


def offset_distance(offset: PriceOffset, entry: Decimal, quantity: Decimal, instrument: Instrument,
                    risk: Decimal | None = None) -> Decimal:
    """The price distance an offset means at this entry price and quantity (`risk`: the stop's distance)."""
    value = offset.value
    if offset.unit is OffsetUnit.R:
        if risk is None or risk == ZERO:
            raise PlanError("a take_profit in r (multiples of the risk) needs a stop_loss away from the entry")
        return value * risk
    if offset.unit is OffsetUnit.TICKS:
        return value * instrument.tick_size
    if offset.unit is OffsetUnit.POINTS:
        return value
    if offset.unit is OffsetUnit.PERCENT:
        return entry * value / HUNDRED
    if offset.unit is OffsetUnit.DOLLARS:
        return value / instrument.point_value
    return value / (instrument.point_value * quantity)  # POSITION_DOLLARS


def exit_price(level: Decimal | PriceOffset | AtrOffset | None, *, side: Side, entry: Decimal | None,
               quantity: Decimal, instrument: Instrument, profit: bool, risk: Decimal | None = None
               ) -> Decimal | None:
    """An entry's take-profit (`profit`) or stop-loss as an absolute price; the entry is bought when
    `side` is buy, so its take-profit is above and its stop below the entry price."""
    if level is None or isinstance(level, Decimal):
        return level
    level = _measured(level)
    if entry is None:
        raise PlanError(f"a relative {'take_profit' if profit else 'stop_loss'} needs an entry price: send "
                        "price (e.g. {{close}}) or a limit/stop price")
    if level.unit is OffsetUnit.R and not profit:
        raise PlanError("a stop_loss cannot be in r: r is measured by the stop")
    distance = offset_distance(level, entry, quantity, instrument, risk)
    direction = side.sign if profit else -side.sign
    price = round_to_tick(entry + direction * distance, instrument.tick_size)
    if price <= ZERO:
        raise PlanError(f"{level.value.normalize():f} {level.unit.value} from {_fmt(entry)} gives the price "
                        f"{_fmt(price)}, which is not above zero")
    return price


def _measured(level: PriceOffset | AtrOffset) -> PriceOffset:
    if isinstance(level, AtrOffset):  # the executor measures ATR exits in points before planning
        raise PlanError("an ATR exit was not measured: no bars were looked up for it")
    return level


# ---- sizing -----------------------------------------------------------------------------------------------

def whole_units(amount: Decimal, per_unit: Decimal, what: str, step: Decimal = Decimal(1)) -> Decimal:
    """`amount / per_unit` rounded down to a multiple of `step` (whole units by default); refused when that is 0."""
    exact = amount / per_unit
    units = (exact / step).quantize(Decimal(1), rounding=ROUND_DOWN) * step
    if units <= ZERO:
        shown = _fmt(exact.quantize(Decimal("0.0001") * min(step, Decimal(1)), rounding=ROUND_DOWN))
        below = "0" if step == 1 else f"0 (the quantity step is {_fmt(step)})"
        raise PlanError(f"{what}: {_fmt(amount)} / {_fmt(per_unit)} per unit = {shown}, which rounds down to "
                        f"{below}; nothing was sent")
    return units


def stop_distance(intent: Intent, entry: Decimal, instrument: Instrument) -> Decimal:
    """How far the entry's stop-loss is from `entry`, in price, for risk-based sizing."""
    stop = intent.stop_loss
    if stop is None:
        raise PlanError(f"quantity_type {intent.quantity_type.value} sizes from the distance to the stop: "
                        "send stop_loss")
    if isinstance(stop, Decimal):
        return abs(entry - stop)
    stop = _measured(stop)
    if stop.unit in (OffsetUnit.POSITION_DOLLARS, OffsetUnit.R):
        raise PlanError("a stop_loss in position_dollars depends on the quantity; risk sizing needs another unit")
    return offset_distance(stop, entry, Decimal(1), instrument)


def entry_quantity(intent: Intent, *, entry: Decimal | None, account: AccountState | None,
                   instrument: Instrument) -> Decimal:
    """The number of shares or contracts an entry's `quantity` means under its `quantity_type`."""
    amount, kind = intent.quantity, intent.quantity_type
    assert amount is not None
    if kind is QuantityType.FIXED_QUANTITY:
        return amount
    if entry is None:
        raise PlanError(f"quantity_type {kind.value} needs a price to size from: send price (e.g. {{{{close}}}})")
    if kind in (QuantityType.PERCENT_OF_EQUITY, QuantityType.RISK_PERCENT):
        if account is None:
            raise PlanError(f"quantity_type {kind.value} needs the account's equity, which is unknown")
        money = account.equity * amount / HUNDRED
        what = f"{_fmt(amount)}% of equity {_fmt(account.equity)} = {_fmt(money)}"
    else:
        money, what = amount, _fmt(amount)
    if kind in (QuantityType.DOLLAR_AMOUNT, QuantityType.PERCENT_OF_EQUITY):
        return whole_units(money, entry * instrument.point_value, f"{kind.value} {what} at {_fmt(entry)}",
                           instrument.quantity_step)
    distance = stop_distance(intent, entry, instrument)
    if distance == ZERO:
        raise PlanError("the stop_loss equals the entry price: no risk to size from")
    return whole_units(money, distance * instrument.point_value,
                       f"{kind.value} {what} with the stop {_fmt(distance)} points away", instrument.quantity_step)


# ---- the plan ---------------------------------------------------------------------------------------------

def plan(intent: Intent, *, position: Decimal, account: AccountState | None, instrument: Instrument,
         market_price: Decimal | None = None) -> Plan:
    """What to send for `intent` when the account holds `position` (signed) of its symbol."""
    try:
        return _plan(intent, position, account, instrument, market_price)
    except PlanError as exc:
        return Plan(refusal=str(exc))


def _plan(intent: Intent, current: Decimal, account: AccountState | None, instrument: Instrument,
          market_price: Decimal | None) -> Plan:
    entry = intent.limit_price or intent.stop_price or intent.price or market_price
    if isinstance(intent.take_profit, Ladder):
        raise PlanError("a take-profit ladder is planned level by level (daemon.ladder)")
    if intent.target_position is not None:
        if intent.quantity_type is not QuantityType.FIXED_QUANTITY:
            raise PlanError(f"quantity_type {intent.quantity_type.value} sizes a quantity, not a target_position")
        delta = intent.target_position - current
        if delta == 0:
            return Plan(note=f"already at target position {_fmt(intent.target_position)}")
        side, quantity = (Side.BUY if delta > 0 else Side.SELL), abs(delta)
    elif intent.action is Action.EXIT:
        if current == 0 or (intent.closes is not None and current * intent.closes.sign < 0):
            held = "" if current == 0 else ("long " if intent.closes is Side.BUY else "short ")
            return Plan(note=f"no {held}{intent.symbol} position to close")
        side = Side.SELL if current > 0 else Side.BUY
        if intent.percent_of_position is not None:
            quantity = whole_units(abs(current) * intent.percent_of_position / HUNDRED, Decimal(1),
                                   f"exit {_fmt(intent.percent_of_position)}% of {_fmt(abs(current))}",
                                   instrument.quantity_step)
        else:
            quantity = min(intent.quantity, abs(current)) if intent.quantity else abs(current)
        full = quantity == abs(current) and (intent.quantity is None or intent.closes is not None) \
            and intent.percent_of_position is None
        return Plan(orders=[_request(intent, side, quantity, reduce_only=True)], cancel_first=full)
    else:
        if intent.action is Action.ADD and current == 0:
            return Plan(note=f"no {intent.symbol} position to add to")
        buy = intent.action is Action.BUY or (intent.action is Action.ADD and current > 0)
        side = Side.BUY if buy else Side.SELL
        quantity = entry_quantity(intent, entry=entry, account=account, instrument=instrument)
    # The part of the order that closes an opposite position, and the part that opens a new one.
    closing = min(quantity, abs(current)) if current * side.sign < 0 else ZERO
    opening = quantity - closing
    has_exits = intent.take_profit is not None or intent.stop_loss is not None
    if opening == ZERO:  # reduces only: a bracket here could open the opposite position when it fills
        return Plan(orders=[_request(intent, side, quantity, reduce_only=True)])
    stop_loss = exit_price(intent.stop_loss, side=side, entry=entry, quantity=opening, instrument=instrument,
                           profit=False)
    risk = None if stop_loss is None or entry is None else abs(entry - stop_loss)
    take_profit = exit_price(intent.take_profit, side=side, entry=entry, quantity=opening, instrument=instrument,
                             profit=True, risk=risk)
    if closing == ZERO or not has_exits:
        return Plan(orders=[_request(intent, side, quantity, take_profit=take_profit, stop_loss=stop_loss)])
    exit_leg = _request(intent, side, closing, reduce_only=True, leg=EXIT_LEG, order_type=OrderType.MARKET)
    return Plan(orders=[exit_leg, _request(intent, side, opening, take_profit=take_profit, stop_loss=stop_loss)])


def _request(intent: Intent, side: Side, quantity: Decimal, *, reduce_only: bool = False, leg: str = "",
             take_profit: Decimal | None = None, stop_loss: Decimal | None = None,
             order_type: OrderType | None = None) -> OrderRequest:
    kind = order_type or intent.order_type
    plain = kind is OrderType.MARKET and order_type is not None
    return OrderRequest(
        client_order_id=client_order_id(intent.account, intent.dedup_key, leg),
        account=intent.account, symbol=intent.symbol, side=side, quantity=quantity, order_type=kind,
        limit_price=None if plain else intent.limit_price, stop_price=None if plain else intent.stop_price,
        time_in_force=intent.time_in_force, take_profit=take_profit, stop_loss=stop_loss,
        reference_price=intent.price, reduce_only=reduce_only or intent.action is Action.EXIT,
        expires_at=intent.expires_at,
    )


Planner = Callable[..., Plan]  # `plan`, or another with its keywords (daemon.ladder.plan)


def after_exit_leg(intent: Intent, exit_order: Order, *, position: Decimal, account: AccountState | None,
                   instrument: Instrument, market_price: Decimal | None = None, plan: Planner = plan) -> Plan:
    """After a restart: the exit half of a flip was sent already, so only its entry is left to plan."""
    if intent.target_position is not None:
        return plan(intent, position=position, account=account, instrument=instrument, market_price=market_price)
    if intent.quantity is None or intent.quantity_type is not QuantityType.FIXED_QUANTITY:
        return plan(intent.model_copy(update={"target_position": None}), position=ZERO, account=account,
                    instrument=instrument, market_price=market_price)
    rest = intent.quantity - exit_order.quantity
    if rest <= ZERO:
        return Plan(note="the exit half of the flip was the whole order")
    return plan(intent.model_copy(update={"quantity": rest}), position=ZERO, account=account,
                instrument=instrument, market_price=market_price)


# ---- resting exits ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExitFix:
    """Change a resting exit: to `quantity`, or cancel it when `quantity` is None."""

    order: Order
    quantity: Decimal | None
    why: str


def resting_exits(orders: Sequence[Order], symbol: str, managed: Set[str] = frozenset()) -> list[Order]:
    """The open exits of `symbol` that are live: bracket legs whose entry is no longer open, trailing stop
    orders, and the stops the daemon manages (`managed`, broker order ids)."""
    open_ids = {o.broker_order_id for o in orders if o.status.is_open}
    return [o for o in orders if o.symbol == symbol and o.status.is_open and (
        (o.parent_order_id is not None and o.parent_order_id not in open_ids)
        or o.order_type is OrderType.TRAILING_STOP or o.broker_order_id in managed)]


def protect_exits(position: Decimal, orders: Sequence[Order], symbol: str,
                  managed: Set[str] = frozenset()) -> list[ExitFix]:
    """Fixes that keep `symbol`'s resting exits from covering more than `position` or opening a new one.

    Legs of one OCO group protect the same quantity (one of them fills); each group counts once, at its
    largest leg. When the groups together exceed the position, the newest groups shrink first.
    """
    exits = resting_exits(orders, symbol, managed)
    fixes: list[ExitFix] = []
    closing_side = Side.SELL if position > 0 else Side.BUY
    groups: dict[str, list[Order]] = {}
    for order in exits:
        if position == ZERO or order.side is not closing_side:
            why = "the position is flat" if position == ZERO else "it would add to the position"
            fixes.append(ExitFix(order, None, why))
        else:
            groups.setdefault(order.oco_group or order.broker_order_id, []).append(order)
    budget = abs(position)
    for legs in sorted(groups.values(), key=lambda g: min(o.created_at for o in g)):
        cover = max(_left(o) for o in legs)
        allowed = min(cover, budget)
        budget -= allowed
        for leg in legs:
            if _left(leg) <= allowed:
                continue
            if allowed == ZERO:
                fixes.append(ExitFix(leg, None, f"the position ({_fmt(position)}) is covered by other exits"))
            else:
                fixes.append(ExitFix(leg, allowed + leg.filled_quantity,
                                     f"the position is {_fmt(position)}, the exit was for {_fmt(_left(leg))}"))
    return fixes


def _left(order: Order) -> Decimal:
    return order.quantity - order.filled_quantity


def cancel_order_of(orders: Sequence[Order]) -> list[Order]:
    """The orders to cancel first: each group's root (an entry with its legs, or one leg of an OCO pair),
    which the broker cancels together; whatever is still open after them is cancelled on its own."""
    by_id = {o.broker_order_id: o for o in orders}
    roots, groups = [], set()
    for order in orders:
        if order.parent_order_id is not None and order.parent_order_id in by_id:
            continue  # goes with its entry
        if order.oco_group is not None:
            if order.oco_group in groups:
                continue
            groups.add(order.oco_group)
        roots.append(order)
    return roots
