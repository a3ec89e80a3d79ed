"""What the store returns besides domain types: stored signals with their outcome, audit entries, controls,
daily P&L (and how fills add up to it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

from daemon.domain import ZERO, Fill, Intent, Order, SignalStatus


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SignalSummary(_Model):
    """A stored signal and its outcome, as listed newest first."""

    seq: int  # arrival order
    signal_id: str
    account: str
    source: str
    status: SignalStatus
    reason: str | None
    intent: Intent
    received_at: AwareDatetime
    updated_at: AwareDatetime
    client_order_id: str | None


class SignalRecord(SignalSummary):
    """A stored signal with what became of it: the orders it produced and their fills."""

    orders: list[Order] = []
    fills: list[Fill] = []
    parent_id: str | None = None  # set on a fan-out child
    route: dict[str, Any] | None = None  # a child's route: ticker, symbol, multiplier, ratio, quantity
    children: list[SignalRecord] = []  # a fan-out parent's children, one per account


class AuditEntry(_Model):
    id: int
    at: AwareDatetime
    actor: str
    action: str
    target: str | None
    detail: str | None
    ok: bool


class AccountControl(_Model):
    account: str
    paused: bool
    locked: bool
    reason: str | None
    updated_at: AwareDatetime
    updated_by: str


class DailyPnl(_Model):
    day: date  # calendar day in the requested time zone
    account: str
    realized: Decimal  # gross of fees
    fees: Decimal
    fills: int

    @property
    def net(self) -> Decimal:
        return self.realized - self.fees


def daily_pnl(fills: Iterable[tuple[Fill, Decimal]], tz: str = "America/New_York",
              day_of: Callable[[datetime], date] | None = None) -> list[DailyPnl]:
    """Realized P&L, fees and fill count per (local calendar day in `tz`, account) of fills with the P&L each
    realized, oldest day first; `day_of` gives another day of a fill (a futures account's trading day)."""
    zone = ZoneInfo(tz)
    days: dict[tuple[date, str], tuple[Decimal, Decimal, int]] = {}
    for fill, realized in fills:
        key = (day_of(fill.filled_at) if day_of else fill.filled_at.astimezone(zone).date(), fill.account)
        r, f, n = days.get(key, (ZERO, ZERO, 0))
        days[key] = (r + realized, f + fill.commission, n + 1)
    return [DailyPnl(day=day, account=acct, realized=r, fees=f, fills=n)
            for (day, acct), (r, f, n) in sorted(days.items())]
