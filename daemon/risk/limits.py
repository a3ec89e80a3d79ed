"""Basic pre-trade limits (size, position, notional, symbols, hours, rate, kill switch) and the RiskEngine.

An order that only reduces an existing position is never blocked by a basic limit: a limit must never keep
a trader in a trade. Every refusal is a `Violation` whose detail carries the numbers behind it.

`RiskEngine` runs, per account, the basic limits and the account rules of `daemon.risk.account_rules`:
PDT (legacy / intraday margin), cash-account settlement and funded-account rules (contracts, soft block,
hard lock, flat-by; their state lives in the shared `FundedBook`). Where the PDT rule demands it, a closing
order that would complete the 4th day trade is refused too; flattens requested by an operator or by the
risk monitor do not go through pre-trade checks, so they always run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from brokers.base import Broker
from config.risk import CashSettings, PdtSettings
from config.settings import WEEKDAYS, RiskLimits
from daemon.domain import AccountState, Fill, OrderRequest, Violation, utcnow
from daemon.risk import account_rules
from daemon.risk.account_rules import LimitStatus
from daemon.risk.funded_book import FundedBook

__all__ = ["AccountRisk", "BasicLimits", "LimitStatus", "OrderContext", "RiskEngine", "RiskResult"]

FillSource = Callable[[str, datetime], Sequence[Fill]]  # (account, since) -> fills since then


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
    account_state: AccountState | None = None  # broker-reported; only for accounts whose rules need it
    recent_fills: Sequence[Fill] = ()  # since the start of the PDT window; only where PDT/cash rules need it

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

    def describe(self, positions: Mapping[str, Decimal] | None, now: datetime) -> list[LimitStatus]:
        lim, rows = self.limits, []
        held = {s: q for s, q in (positions or {}).items() if q != 0}
        if lim.max_order_quantity is not None:
            rows.append(LimitStatus("max_order_quantity", "-", _fmt(lim.max_order_quantity), "-"))
        if lim.max_position is not None:
            biggest = max((abs(q) for q in held.values()), default=Decimal(0))
            used = _fmt(biggest) if positions is not None else "-"
            left = _fmt(lim.max_position - biggest) if positions is not None else "-"
            rows.append(LimitStatus("max_position", used, _fmt(lim.max_position), left,
                                    biggest > lim.max_position))
        if lim.max_open_positions is not None:
            used = str(len(held)) if positions is not None else "-"
            left = str(lim.max_open_positions - len(held)) if positions is not None else "-"
            rows.append(LimitStatus("max_open_positions", used, str(lim.max_open_positions), left,
                                    len(held) > lim.max_open_positions))
        if lim.max_notional is not None:
            rows.append(LimitStatus("max_notional", "-", _fmt(lim.max_notional), "-"))
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


@dataclass(frozen=True)
class AccountRisk:
    """What an account configures beyond its funded rules (those live in the `FundedBook`)."""

    limits: RiskLimits = field(default_factory=RiskLimits)
    pdt: PdtSettings = field(default_factory=PdtSettings)
    cash: CashSettings = field(default_factory=CashSettings)

    @property
    def pdt_applies(self) -> bool:
        """PDT is a margin-account rule: a cash account is never a pattern day trader."""
        return self.pdt.mode != "off" and not self.cash.cash_account

    @property
    def needs_account_state(self) -> bool:
        return self.pdt_applies or self.cash.cash_account

    @property
    def needs_fills(self) -> bool:
        return (self.pdt_applies and self.pdt.mode == "legacy") or self.cash.cash_account


@dataclass(frozen=True)
class AccountView:
    """The slow inputs of a check, read only for accounts whose rules need them."""

    state: AccountState | None = None
    fills: Sequence[Fill] = ()


@dataclass(frozen=True)
class RiskResult:
    """Refusals (the order must not go) and warnings (it goes; the trader is told)."""

    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)


class RiskEngine:
    """Runs every rule configured for an account. One instance per daemon; state per account.

    `accounts` maps account names to `AccountRisk` (or bare `RiskLimits`); `funded` holds the funded rules
    and their live state; `fills(account, since)` reads the account's recorded fills (PDT and cash rules).
    """

    def __init__(self, accounts: Mapping[str, RiskLimits | AccountRisk],
                 clock: Callable[[], datetime] = utcnow, *, funded: FundedBook | None = None,
                 fills: FillSource | None = None) -> None:
        self.clock = clock
        self.accounts = {name: cfg if isinstance(cfg, AccountRisk) else AccountRisk(limits=cfg)
                         for name, cfg in accounts.items()}
        self._basic = {name: BasicLimits(cfg.limits) for name, cfg in self.accounts.items()}
        self.funded = funded or FundedBook({})
        self._fills = fills

    async def prepare(self, account: str, broker: Broker, now: datetime) -> AccountView:
        """Read what this account's rules need for a check: nothing for most accounts (the hot path), the
        broker's account state for PDT / cash accounts, and the recorded fills of the PDT window."""
        cfg = self.accounts.get(account)
        if cfg is None or not cfg.needs_account_state:
            return AccountView()
        state = await broker.account_state()
        fills: Sequence[Fill] = ()
        if cfg.needs_fills and self._fills is not None:
            fills = self._fills(account, account_rules.pdt_window_start(now))
        return AccountView(state=state, fills=fills)

    def check(self, ctx: OrderContext) -> RiskResult:
        account = ctx.request.account
        basic = self._basic.get(account)
        violations = basic.check(ctx) if basic else []
        if any(v.rule in ("locked", "paused") for v in violations):
            return RiskResult(violations)
        warnings: list[Violation] = []
        cfg = self.accounts.get(account)
        if cfg is not None:
            if cfg.pdt_applies:
                refused, warned = account_rules.check_pdt(ctx, cfg.pdt)
                violations += refused
                warnings += warned
            refused, warned = account_rules.check_cash(ctx, cfg.cash)
            violations += refused
            warnings += warned
        if account in self.funded:
            violations += account_rules.check_funded(ctx, self.funded.rules[account], self.funded.state(account))
        return RiskResult(violations, warnings if not violations else [])

    def record_order(self, account: str, at: datetime) -> None:
        if account in self._basic:
            self._basic[account].record_order(at)

    def describe(self, account: str, positions: Mapping[str, Decimal] | None = None) -> list[LimitStatus]:
        """Every configured limit of the account with what is used and left, for `/risk` and the API.

        `positions` (symbol -> signed quantity) fills in the position-based rows and lets the PDT count tell
        overnight positions from same-day openings; without it those rows show only the limit."""
        if account not in self.accounts and account not in self.funded:
            raise KeyError(f"unknown account {account!r}")
        now = self.clock()
        rows: list[LimitStatus] = []
        cfg = self.accounts.get(account, AccountRisk())
        if account in self._basic:
            rows += self._basic[account].describe(positions, now)
        if cfg.pdt_applies:
            fills = self._fills(account, account_rules.pdt_window_start(now)) if self._fills else ()
            rows += account_rules.describe_pdt(cfg.pdt, fills, positions or {}, account, now)
        rows += account_rules.describe_cash(cfg.cash)
        if account in self.funded:
            rows += account_rules.describe_funded(self.funded.rules[account], self.funded.state(account), now)
        return rows
