"""Basic pre-trade limits per account: size, position, notional, symbols, hours, order rate, pause and lock.

An order that only reduces an existing position is never blocked by a basic limit: a limit must never keep
a trader in a trade. Every refusal is a `Violation` whose detail carries the numbers behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from config.settings import WEEKDAYS, RiskLimits
from daemon.domain import Violation
from daemon.money import number
from daemon.risk.context import LimitStatus, OrderContext


class BasicLimits:
    """The basic limits of one account, configured in `[accounts.NAME.risk]`; remembers its recent orders."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._recent_orders: deque[datetime] = deque()

    def check(self, ctx: OrderContext) -> list[Violation]:
        req, lim = ctx.request, self.limits

        def violation(rule: str, detail: str, **numbers: Decimal | int | str) -> Violation:
            return Violation(
                account=req.account, rule=rule, detail=detail, signal_id=ctx.signal_id, symbol=req.symbol,
                numbers={k: str(v) for k, v in numbers.items()}, at=ctx.now,
            )

        if ctx.locked and not ctx.reduces_only:
            return [violation("locked", f"account {req.account} is locked; only exits are allowed")]
        if ctx.paused and not ctx.reduces_only:
            return [violation("paused", f"account {req.account} is paused; only exits are allowed")]
        if ctx.reduces_only:
            return []
        found: list[Violation] = []
        if lim.allowed_symbols and req.symbol not in lim.allowed_symbols:
            found.append(violation("allowed_symbols", f"{req.symbol} is not in the allowed symbols"))
        if lim.max_order_quantity is not None and req.quantity > lim.max_order_quantity:
            found.append(violation(
                "max_order_quantity",
                f"order quantity {number(req.quantity)} exceeds the limit {number(lim.max_order_quantity)}",
                limit=lim.max_order_quantity, requested=req.quantity,
            ))
        if lim.max_position is not None and abs(ctx.after) > lim.max_position:
            found.append(violation(
                "max_position",
                f"position in {req.symbol} would be {number(ctx.after)}, beyond the limit "
                f"{number(lim.max_position)} (now {number(ctx.current)})",
                limit=lim.max_position, current=ctx.current, after=ctx.after,
            ))
        if lim.max_open_positions is not None and ctx.current == 0:
            open_now = sum(1 for qty in ctx.positions.values() if qty != 0)
            if open_now >= lim.max_open_positions:
                found.append(violation(
                    "max_open_positions",
                    f"{open_now} positions are open, the limit is {lim.max_open_positions}",
                    limit=lim.max_open_positions, open=open_now,
                ))
        if lim.max_notional is not None:
            if ctx.price is None:
                found.append(violation("max_notional", "no price known to check the notional limit; "
                                       "include price in the alert"))
            else:
                notional = req.quantity * ctx.price * ctx.multiplier
                if notional > lim.max_notional:
                    found.append(violation(
                        "max_notional",
                        f"order notional {number(notional)} exceeds the limit {number(lim.max_notional)}",
                        limit=lim.max_notional, requested=notional,
                    ))
        if lim.trading_hours is not None:
            hours = lim.trading_hours
            local = ctx.now.astimezone(ZoneInfo(hours.timezone))
            day = WEEKDAYS[local.weekday()]
            if day not in hours.days or not (hours.start <= local.time() < hours.end):
                found.append(violation(
                    "trading_hours",
                    f"{local:%a %H:%M} {hours.timezone} is outside the trading window "
                    f"{hours.start:%H:%M}-{hours.end:%H:%M} {','.join(hours.days)}",
                ))
        if lim.max_orders_per_minute is not None:
            cutoff = ctx.now - timedelta(minutes=1)
            while self._recent_orders and self._recent_orders[0] <= cutoff:
                self._recent_orders.popleft()
            if len(self._recent_orders) >= lim.max_orders_per_minute:
                found.append(violation(
                    "max_orders_per_minute",
                    f"{len(self._recent_orders)} orders in the last minute, the limit is "
                    f"{lim.max_orders_per_minute}",
                    limit=lim.max_orders_per_minute, used=len(self._recent_orders),
                ))
        return found

    def record_order(self, at: datetime) -> None:
        """Only the last minute's orders are kept, whether or not a per-minute limit is set."""
        cutoff = at - timedelta(minutes=1)
        while self._recent_orders and self._recent_orders[0] <= cutoff:
            self._recent_orders.popleft()
        self._recent_orders.append(at)

    def describe(self, positions: Mapping[str, Decimal] | None, now: datetime) -> list[LimitStatus]:
        lim, rows = self.limits, []
        held = {s: q for s, q in (positions or {}).items() if q != 0}
        if lim.max_order_quantity is not None:
            rows.append(LimitStatus("max_order_quantity", "-", number(lim.max_order_quantity), "-"))
        if lim.max_position is not None:
            biggest = max((abs(q) for q in held.values()), default=Decimal(0))
            used = number(biggest) if positions is not None else "-"
            left = number(lim.max_position - biggest) if positions is not None else "-"
            rows.append(LimitStatus("max_position", used, number(lim.max_position), left,
                                    biggest > lim.max_position))
        if lim.max_open_positions is not None:
            used = str(len(held)) if positions is not None else "-"
            left = str(lim.max_open_positions - len(held)) if positions is not None else "-"
            rows.append(LimitStatus("max_open_positions", used, str(lim.max_open_positions), left,
                                    len(held) > lim.max_open_positions))
        if lim.max_notional is not None:
            rows.append(LimitStatus("max_notional", "-", number(lim.max_notional), "-"))
        if lim.allowed_symbols:
            rows.append(LimitStatus("allowed_symbols", "-", ", ".join(lim.allowed_symbols), "-"))
        if lim.trading_hours is not None:
            hours = lim.trading_hours
            local = now.astimezone(ZoneInfo(hours.timezone))
            inside = WEEKDAYS[local.weekday()] in hours.days and hours.start <= local.time() < hours.end
            rows.append(LimitStatus(
                "trading_hours", f"{local:%a %H:%M}", f"{hours.start:%H:%M}-{hours.end:%H:%M} {hours.timezone}",
                "open" if inside else "closed", not inside,
            ))
        if lim.max_orders_per_minute is not None:
            recent = sum(1 for at in self._recent_orders if at > now - timedelta(minutes=1))
            rows.append(LimitStatus("max_orders_per_minute", str(recent), str(lim.max_orders_per_minute),
                                    str(max(0, lim.max_orders_per_minute - recent)),
                                    recent >= lim.max_orders_per_minute))
        return rows
