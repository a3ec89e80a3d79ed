"""`RiskEngine`: runs every rule an account configures (basic limits, PDT, cash settlement, funded) on an order.

Per account it runs the basic limits of `daemon.risk.limits` and the account rules of
`daemon.risk.account_rules`: PDT (legacy / intraday margin), cash-account settlement and funded-account rules
(contracts, soft block, hard lock, flat-by; their state lives in the shared `FundedBook`). Where the PDT rule
demands it, a closing order that would complete the 4th day trade is refused too; flattens requested by an
operator or by the risk monitor do not go through pre-trade checks, so they always run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from brokers.base import Broker
from config.risk import CashSettings, PdtSettings
from config.settings import RiskLimits
from daemon.domain import AccountState, Fill, Violation, utcnow
from daemon.risk import account_rules
from daemon.risk.context import FillSource, LimitStatus, OrderContext
from daemon.risk.funded_book import FundedBook
from daemon.risk.limits import BasicLimits

__all__ = ["AccountRisk", "AccountView", "PriceObserver", "RiskEngine", "RiskResult"]

PriceObserver = Callable[[str, str, Decimal, datetime], object]  # (account, symbol, price, at)


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
        self._price_observer: PriceObserver | None = None

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

    def watch_prices(self, observer: PriceObserver) -> None:
        """Who acts on prices seen with a signal (the risk monitor); set once at wiring time."""
        self._price_observer = observer

    def observe_price(self, account: str, symbol: str, price: Decimal, at: datetime) -> None:
        """A signal's price, before its order is checked: a funded account whose floor it breaches is
        flattened and blocked now, not at the next mark, so the order it carries is checked against that."""
        if self._price_observer is not None and account in self.funded:
            self._price_observer(account, symbol, price, at)

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
            rows += account_rules.describe_funded(self.funded.rules[account], self.funded.state(account), now,
                                                  positions)
        return rows
