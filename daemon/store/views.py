"""What the store returns besides domain types: stored signals with their outcome, audit entries, controls,
daily P&L."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict

from daemon.domain import Fill, Intent, Order, SignalStatus


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
