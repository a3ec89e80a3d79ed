"""Basic pre-trade limits (size, position, notional, symbols, hours, rate, kill switch) and the RiskEngine.

An order that only reduces an existing position is never blocked by a limit: a limit must never keep a
trader in a trade. Every refusal is a `Violation` whose detail carries the numbers behind it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from config.settings import WEEKDAYS, RiskLimits
from daemon.domain import OrderRequest, Violation, utcnow


@dataclass(frozen=True)
class OrderContext:
    """What a rule may look at: the order and the account as it stands before the order."""

    request: OrderRequest
    signal_id: str | None
    positions: Mapping[str, Decimal]  # symbol -> signed quantity, current
    price: Decimal | None  # best known price for notional checks
    multiplier: Decimal = Decimal(1)
    paused: bool = False
    locked: bool = False
    now: datetime = field(default_factory=utcnow)

    @property
    def current(self) -> Decimal:
        return self.positions.get(self.request.symbol, Decimal(0))

    @property
    def after(self) -> Decimal:
        return self.current + self.request.side.sign * self.request.quantity

    @property
    def reduces_only(self) -> bool:
        """True when the order moves the position toward zero without crossing it."""
        current, after = self.current, self.after
        return current != 0 and abs(after) < abs(current) and (after == 0 or (after > 0) == (current > 0))


def _fmt(value: Decimal | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value.normalize():,f}"


class BasicLimits:
    """The limits of issue #6, configured per account in `[accounts.NAME.risk]`."""

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
                f"order quantity {_fmt(req.quantity)} exceeds the limit {_fmt(lim.max_order_quantity)}",
                limit=lim.max_order_quantity, requested=req.quantity,
            ))
        if lim.max_position is not None and abs(ctx.after) > lim.max_position:
            found.append(violation(
                "max_position",
                f"position in {req.symbol} would be {_fmt(ctx.after)}, beyond the limit "
                f"{_fmt(lim.max_position)} (now {_fmt(ctx.current)})",
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
                        f"order notional {_fmt(notional)} exceeds the limit {_fmt(lim.max_notional)}",
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
        self._recent_orders.append(at)


class RiskEngine:
    """Runs every rule configured for an account. One instance per daemon; state per account."""

    def __init__(self, limits_by_account: Mapping[str, RiskLimits],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock
        self._basic = {name: BasicLimits(limits) for name, limits in limits_by_account.items()}

    def check(self, ctx: OrderContext) -> list[Violation]:
        rules = self._basic.get(ctx.request.account)
        return rules.check(ctx) if rules else []

    def record_order(self, account: str, at: datetime) -> None:
        if account in self._basic:
            self._basic[account].record_order(at)
