"""Read-side answers shared by the control API and chat: accounts, positions, open orders and P&L, as typed models.

One place computes what to say; the API and the chat transports only format it. Money is `Decimal`; P&L
figures are rounded to cents here, so every surface shows the same cents. "Today" is the trading day: for
stock accounts the calendar day in the daemon's time zone, for futures accounts the CME trading day that
began at the 17:00 CT roll (`daemon.calendar.futures_session_start`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

from brokers.base import Broker, BrokerError
from daemon.calendar import futures_session_date, futures_session_start
from daemon.domain import PERIODS, ZERO, AccountState, Order, Period, Position, utcnow
from daemon.store.repository import Store
from daemon.store.views import DailyPnl, daily_pnl

CENT = Decimal("0.01")


class EngineView(Protocol):
    """What reads need from the engine: which accounts a name means, and each account's controls and queue."""

    @property
    def paused(self) -> Container[str]: ...
    @property
    def locked(self) -> Container[str]: ...
    def targets(self, target: str) -> list[str]: ...
    def queue_depth(self, account: str) -> int: ...


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Controls(_Answer):
    """An account's switches as the engine holds them: paused by an operator, locked by risk, signals waiting."""

    paused: bool
    locked: bool
    queue_depth: int


class AccountView(_Answer):
    """One account: its link and controls, and its state, live or (`stale`) the last snapshot the store kept."""

    account: str
    broker: str
    connected: bool
    controls: Controls
    state: AccountState | None = None  # its account and broker are the configured name and the adapter's name
    error: str | None = None  # why the broker could not answer
    stale: bool = False


class TimeExitCountdown(_Answer):
    """An armed time exit of a position: what closes when, and the seconds left (0 when due)."""

    entry_signal_id: str
    spec: str  # "after 45m", "after 3 bars of 5m", "at 15:55"
    quantity: Decimal
    due_at: AwareDatetime
    seconds_left: int

    @property
    def left(self) -> str:
        """The countdown as the page's script writes it: 1h05m00s, 4m09s; "due" at zero."""
        if self.seconds_left <= 0:
            return "due"
        hours, rest = divmod(self.seconds_left, 3600)
        return (f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m") + f"{rest % 60:02d}s"


class PositionView(_Answer):
    position: Position
    stale: bool  # from the store's ledger because the broker could not answer
    time_exits: list[TimeExitCountdown] = []


class AccountPnl(_Answer):
    account: str
    since: AwareDatetime | None = None  # start of this account's period (a futures day starts at 17:00 CT)
    realized: Decimal
    fees: Decimal
    unrealized: Decimal
    net: Decimal
    fills: int


class PnlTotal(_Answer):
    realized: Decimal
    fees: Decimal
    unrealized: Decimal
    net: Decimal


class PnlReport(_Answer):
    period: Period
    since: AwareDatetime
    accounts: list[AccountPnl]
    total: PnlTotal
    by_day: list[DailyPnl]


def period_start(period: str, now: datetime, tz: str) -> datetime:
    local = now.astimezone(ZoneInfo(tz)).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        local -= timedelta(days=local.weekday())
    elif period == "month":
        local = local.replace(day=1)
    elif period != "today":
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    return local


def account_period_start(period: str, now: datetime, tz: str, futures: bool) -> datetime:
    """`period_start`, except that a futures account's "today" is the CME trading day (from the 17:00 CT roll)."""
    if futures and period == "today":
        return futures_session_start(futures_session_date(now))
    return period_start(period, now, tz)


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


class Reader:
    def __init__(self, *, store: Store, brokers: Mapping[str, Broker], engine: EngineView, timezone: str,
                 clock: Callable[[], datetime] = utcnow, futures: Collection[str] = ()) -> None:
        self.store = store
        self.futures = frozenset(futures)  # accounts whose day is the CME trading day
        self.brokers = brokers
        self.engine = engine
        self.timezone = timezone
        self.clock = clock

    def accounts_named(self, account: str | None) -> list[str]:
        """One account, or all of them for None / "all"; KeyError naming the accounts for an unknown one."""
        return self.engine.targets(account or "all")

    def controls(self, account: str) -> Controls:
        return Controls(paused=account in self.engine.paused, locked=account in self.engine.locked,
                        queue_depth=self.engine.queue_depth(account))

    def pending_signals(self) -> int:
        """Signals accepted and not yet executed, over every account."""
        return sum(self.engine.queue_depth(name) for name in self.accounts_named(None))

    async def accounts(self) -> list[AccountView]:
        views = []
        for name, broker in self.brokers.items():
            connected, controls = broker.healthy(), self.controls(name)  # as they were before this call
            error: str | None = None
            try:
                state: AccountState | None = await broker.account_state()
            except BrokerError as exc:
                error, state = exc.reason, self.store.latest_snapshot(name)
            views.append(AccountView(
                account=name, broker=broker.name, connected=connected, controls=controls,
                state=None if state is None else state.model_copy(update={"account": name, "broker": broker.name}),
                error=error, stale=error is not None and state is not None,
            ))
        return views

    async def positions(self, account: str | None = None) -> list[PositionView]:
        """Live from the broker; from the store (marked stale) when the broker cannot answer."""
        views: list[PositionView] = []
        for name in self.accounts_named(account):
            try:
                positions: list[Position] = await self.brokers[name].positions()
                stale = False
            except BrokerError:
                positions, stale = self.store.positions(name), True
            views += [PositionView(position=p, stale=stale, time_exits=self.countdowns(p))
                      for p in positions if p.quantity != 0]
        return views

    def countdowns(self, position: Position) -> list[TimeExitCountdown]:
        """The armed time exits of the entries on this position's side, soonest first."""
        now = self.clock()
        return [TimeExitCountdown(entry_signal_id=t.entry_signal_id, spec=t.spec, quantity=t.quantity,
                                  due_at=t.due_at, seconds_left=max(0, int((t.due_at - now).total_seconds())))
                for t in self.store.time_exits(position.account)
                if t.symbol == position.symbol and t.side.sign * position.quantity > 0]

    async def open_orders(self, account: str | None = None) -> list[Order]:
        """Working orders, live from the broker; from the store when the broker cannot answer."""
        orders: list[Order] = []
        for name in self.accounts_named(account):
            try:
                orders += await self.brokers[name].open_orders()
            except BrokerError:
                orders += self.store.orders(name, open_only=True)
        return [o for o in orders if o.status.is_open]

    async def pnl(self, period: Period = "today", account: str | None = None, *,
                  only: Collection[str] | None = None) -> PnlReport:
        """Realized and fees from recorded fills since the period's start; unrealized from live positions.

        `only` narrows "all accounts" to some of them (the futures accounts' summary after the CME close)."""
        names = [name for name in self.accounts_named(account) if only is None or name in only]
        now = self.clock()
        starts = {name: account_period_start(period, now, self.timezone, name in self.futures) for name in names}
        since = min(starts.values(), default=period_start(period, now, self.timezone))
        per_account: list[AccountPnl] = []
        total_realized = total_fees = total_unrealized = ZERO
        days: list[DailyPnl] = []
        for name in names:
            fills = self.store.fills_with_pnl(name, starts[name])  # read once: the totals and the days
            realized = sum((pnl for _, pnl in fills), ZERO)
            fees = sum((fill.commission for fill, _ in fills), ZERO)
            count = len(fills)
            days += daily_pnl(fills, self.timezone)
            unrealized = sum((view.position.unrealized_pnl for view in await self.positions(name)), ZERO)
            per_account.append(AccountPnl(account=name, since=starts[name], realized=cents(realized), fees=cents(fees),
                                          unrealized=cents(unrealized), net=cents(realized - fees + unrealized),
                                          fills=count))
            total_realized += realized
            total_fees += fees
            total_unrealized += unrealized
        total = PnlTotal(realized=cents(total_realized), fees=cents(total_fees), unrealized=cents(total_unrealized),
                         net=cents(total_realized - total_fees + total_unrealized))
        return PnlReport(period=period, since=since, accounts=per_account, total=total, by_day=days)
