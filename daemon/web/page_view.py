"""What the status page shows, gathered in one pass: accounts, P&L and equity curves, positions, orders, risk
meters, signals, alerts, connectivity and strategies, as plain values the templates print.

Everything comes from the same readers the API and chat use (`daemon.queries.Reader`, `RiskEngine.describe`,
the risk monitor's snapshot, the store), so the page never disagrees with `/api/*` or `/risk`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.charts import svg
from daemon.domain import Event, Order, Position, StrategyStatus
from daemon.history import SignalLine, equity_curve, recent_signals
from daemon.queries import AccountPnl, AccountView, Reader, TimeExitCountdown, period_start
from daemon.risk.engine import RiskEngine
from daemon.risk.monitor import RiskMonitor
from daemon.store.repository import Store

ALERT_KINDS = ("fill", "order", "violation", "signal_failed", "signal_expired", "flatten", "paused", "resumed",
               "broker", "daemon")
LABELS = {"daily_loss_limit": "Daily loss", "max_loss": "Max-loss floor", "day_trades": "PDT day trades",
          "contracts": "Contracts", "flat_by": "Flat by", "max_position": "Position size",
          "max_open_positions": "Open positions", "max_orders_per_minute": "Orders / minute",
          "safety_buffer": "Safety buffer", "profit_target": "Profit target", "trading_hours": "Trading hours"}
BAR_RULES = ("daily_loss_limit", "day_trades", "contracts", "max_position", "max_open_positions",
             "max_orders_per_minute")
_NUMBER = re.compile(r"-?[\d,]+(?:\.\d+)?")


def first_number(text: str) -> Decimal | None:
    match = _NUMBER.search(text)
    if match is None:
        return None
    try:
        return Decimal(match.group().replace(",", ""))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class Meter:
    """One risk limit as a meter: the numbers as `/risk` prints them and, where it is a quantity, how full."""

    rule: str
    label: str
    used: str
    limit: str
    left: str
    breached: bool
    fraction: float | None = None  # 0..1 of the limit used
    deadline: str | None = None  # ISO time a countdown runs to (flat-by)


@dataclass(frozen=True)
class AccountCard:
    view: AccountView
    pnl: AccountPnl | None
    chart: str  # inline SVG
    meters: list[Meter]
    positions: list[Position]
    orders: list[Order]
    time_exits: dict[str, list[TimeExitCountdown]]  # by symbol


@dataclass(frozen=True)
class Link:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class PageData:
    now: datetime
    timezone: str
    accounts: list[AccountCard]
    signals: list[SignalLine]
    alerts: list[Event]
    links: list[Link]
    strategies: list[StrategyStatus]
    total_net: Decimal
    status: dict[str, Any] = field(default_factory=dict)


def countdown(seconds: float) -> str:
    """7h05m09s style, as the page's script counts on; "past" once it is over."""
    left = int(seconds)
    if left <= 0:
        return "past"
    hours, minutes, secs = left // 3600, left % 3600 // 60, left % 60
    return (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m") + f"{secs:02d}s"


def meters(rows: Sequence[Any], funded: dict[str, Any] | None, now: datetime) -> list[Meter]:
    """`RiskEngine.describe` rows as meters; the flat-by row counts down to the monitor's deadline."""
    out = []
    for row in rows:
        left = row.left
        fraction = None
        if row.name in BAR_RULES:
            used, limit = first_number(row.used), first_number(row.limit)
            if used is not None and limit is not None and limit > 0:
                fraction = max(0.0, min(1.0, float(used / limit)))
        deadline = funded.get("flat_by") if funded and row.name == "flat_by" else None
        if deadline:
            left = countdown((datetime.fromisoformat(deadline) - now).total_seconds())
        out.append(Meter(rule=row.name, label=LABELS.get(row.name, row.name.replace("_", " ")), used=row.used,
                         limit=row.limit, left=left, breached=row.breached, fraction=fraction,
                         deadline=deadline))
    return out


class PageView:
    """Gathers `PageData`; every source is passed in (the app wires them)."""

    def __init__(self, *, reader: Reader, store: Store, risk: RiskEngine, monitor: RiskMonitor | None,
                 strategies: Callable[[], list[StrategyStatus]], recent_events: Callable[[], Sequence[Event]],
                 links: Callable[[], list[Link]], status: Callable[[], dict[str, Any]], timezone: str,
                 clock: Callable[[], datetime]) -> None:
        self.reader, self.store, self.risk, self.monitor = reader, store, risk, monitor
        self.strategies, self.recent_events, self.links, self.status = strategies, recent_events, links, status
        self.timezone, self.clock = timezone, clock

    async def gather(self) -> PageData:
        now = self.clock()
        since = period_start("today", now, self.timezone)
        views = await self.reader.accounts()
        pnl = await self.reader.pnl("today")
        by_account = {line.account: line for line in pnl.accounts}
        cards = []
        for view in views:
            held = await self.reader.positions(view.account)
            positions = [p.position for p in held]
            orders = await self.reader.open_orders(view.account)
            live = (now, view.state.equity) if view.state is not None and not view.stale else None
            curve = equity_curve(self.store, view.account, since, live)
            cards.append(AccountCard(view=view, pnl=by_account.get(view.account),
                                     chart=svg.render(curve, self.timezone),
                                     meters=self._meters(view.account, positions, now), positions=positions,
                                     orders=orders, time_exits={p.position.symbol: p.time_exits for p in held}))
        alerts = [e for e in reversed(list(self.recent_events())) if e.kind in ALERT_KINDS][:15]
        return PageData(now=now, timezone=self.timezone, accounts=cards, signals=recent_signals(self.store, 15),
                        alerts=alerts, links=self.links(), strategies=self.strategies(), total_net=pnl.total.net,
                        status=self.status())

    def _meters(self, account: str, positions: list[Position], now: datetime) -> list[Meter]:
        held = {p.symbol: p.quantity for p in positions}
        try:
            rows = self.risk.describe(account, held)
        except KeyError:
            return []
        funded = None
        if self.monitor is not None:
            try:
                funded = self.monitor.snapshot(account)
            except KeyError:
                funded = None
        return meters(rows, funded, now)
