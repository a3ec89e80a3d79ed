"""Plans a take-profit ladder: one bracketed entry per level, each closing its share, all sharing one stop price.

Each level is a bracket of its own (entry, take-profit and stop for that level's quantity), so the broker's
own OCO keeps the stops equal to what is left at every moment: when level 1 fills its stop goes with it and
the other levels' stops still cover exactly the remaining position; a stop that fills takes its level's
take-profit with it. Nothing of the daemon has to act in time for the stop quantity to be right; moving
the stop to break-even after a level is `daemon.exit_follow`'s job.

The first level carries the signal's own client order id (the one a restart looks up), the others the legs
`tp2`, `tp3`, ... in that order, so a crash between two of them leaves a smaller, fully protected position.
Sizes: every level but the last says its `quantity` or `percent` of the entry (rounded down; a level that
rounds to zero is refused with the numbers); the last closes what the others leave. An intent without a
ladder is planned by `daemon.planner.plan` unchanged.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

from daemon import planner
from daemon.domain import ZERO, AccountState, Intent, client_order_id
from daemon.planner import HUNDRED, Instrument, Plan, PlanError, exit_price
from daemon.shapes import Ladder, TakeProfitLevel


def level_leg(index: int) -> str:
    """The client order id leg of ladder level `index` (0-based): the first is the signal's own id."""
    return "" if index == 0 else f"tp{index + 1}"


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


def level_quantities(levels: tuple[TakeProfitLevel, ...], total: Decimal) -> list[Decimal]:
    """How many units each level closes out of `total` (module docstring); `PlanError` with the numbers."""
    sizes: list[Decimal] = []
    for number, level in enumerate(levels[:-1], start=1):
        if level.quantity is not None:
            size = level.quantity
        elif level.percent is not None:
            size = (total * level.percent / HUNDRED).quantize(Decimal(1), rounding=ROUND_DOWN)
        else:
            raise PlanError(f"take_profit level {number} needs quantity or percent (only the last level takes "
                            "what is left)")
        if size <= ZERO:
            raise PlanError(f"take_profit level {number}: {_fmt(level.percent or ZERO)}% of {_fmt(total)} rounds "
                            "down to 0; nothing was sent")
        sizes.append(size)
    rest = total - sum(sizes, ZERO)
    if rest <= ZERO:
        raise PlanError(f"the take_profit levels before the last close {_fmt(sum(sizes, ZERO))} of "
                        f"{_fmt(total)}: nothing is left for the last level")
    last = levels[-1]
    if last.quantity is not None and last.quantity != rest:
        raise PlanError(f"the last take_profit level asks for {_fmt(last.quantity)}, but {_fmt(rest)} of "
                        f"{_fmt(total)} are left for it")
    return [*sizes, rest]


def plan(intent: Intent, *, position: Decimal, account: AccountState | None, instrument: Instrument,
         market_price: Decimal | None = None) -> Plan:
    """What to send for `intent`: `daemon.planner.plan`, with a ladder's opening order split by level."""
    ladder = intent.take_profit
    if not isinstance(ladder, Ladder):
        return planner.plan(intent, position=position, account=account, instrument=instrument,
                            market_price=market_price)
    base = planner.plan(intent.model_copy(update={"take_profit": ladder.levels[0].price}), position=position,
                        account=account, instrument=instrument, market_price=market_price)
    if base.refusal is not None or not base.orders:
        return base
    opening = base.orders[-1]
    if opening.take_profit is None:  # an order that only reduces: no exits at all
        return base
    try:
        if ladder.break_even is not None and ladder.break_even.after >= len(ladder.levels):
            raise PlanError(f"break_even after level {ladder.break_even.after} leaves nothing to protect: the "
                            f"ladder has {len(ladder.levels)} levels")
        quantities = level_quantities(ladder.levels, opening.quantity)
        entry = intent.limit_price or intent.stop_price or intent.price or market_price
        risk = None if opening.stop_loss is None or entry is None else abs(entry - opening.stop_loss)
        orders = list(base.orders[:-1])
        for index, (level, quantity) in enumerate(zip(ladder.levels, quantities, strict=True)):
            price = exit_price(level.price, side=opening.side, entry=entry, quantity=quantity,
                               instrument=instrument, profit=True, risk=risk)
            orders.append(opening.model_copy(update={
                "quantity": quantity, "take_profit": price,
                "client_order_id": client_order_id(intent.account, intent.dedup_key, level_leg(index))}))
    except PlanError as exc:
        return Plan(refusal=str(exc))
    return Plan(orders=orders, cancel_first=base.cancel_first, note=base.note)
