"""What happened over time, read from the store: an account's equity curve with its fills, and recent signals.

The curve is the account snapshots the daemon records (at start-up and each reconciliation) since a time,
plus the live equity now when given; fills are marked on it at the equity the curve had when they happened.
The status page and the chat charts draw the same curve.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict
from sqlmodel import Session, col, select

from daemon.charts import png
from daemon.charts.series import EquityCurve, Mark, equity_at
from daemon.domain import Intent, Period
from daemon.queries import Reader, cents, period_start
from daemon.store.repository import Store
from daemon.store.tables import SignalRow, SnapshotRow

MAX_POINTS = 2000


class SignalLine(BaseModel):
    """One accepted signal and what became of it (the refusal or failure reason when it did not trade)."""

    model_config = ConfigDict(frozen=True)

    signal_id: str
    account: str
    source: str
    action: str
    symbol: str
    quantity: str | None
    status: str
    reason: str | None
    received_at: AwareDatetime


def equity_curve(store: Store, account: str, since: datetime, live: tuple[datetime, Decimal] | None = None,
                 until: datetime | None = None) -> EquityCurve:
    """Equity of `account` from `since` (to `until`), oldest first, with `live` (time, equity) as the last point."""
    stmt = (select(col(SnapshotRow.as_of), col(SnapshotRow.equity))
            .where(SnapshotRow.account == account, col(SnapshotRow.as_of) >= since)
            .order_by(col(SnapshotRow.as_of), col(SnapshotRow.id)))
    if until is not None:
        stmt = stmt.where(col(SnapshotRow.as_of) <= until)
    with Session(store.engine) as session:
        rows = list(session.exec(stmt).all())
    if len(rows) > MAX_POINTS:  # keep the shape, not every minute of a month
        step = len(rows) / MAX_POINTS
        rows = [rows[int(i * step)] for i in range(MAX_POINTS)] + [rows[-1]]
    points = [(at, cents(equity)) for at, equity in rows]
    if live is not None and (not points or live[0] > points[-1][0]):
        points.append((live[0], cents(live[1])))
    fills = list(reversed(store.fills(account, since=since, until=until, limit=500)))
    marks = [Mark(at=f.filled_at, side=f.side.value, equity=equity_at(points, f.filled_at),
                  label=f"{f.side.value} {f.quantity.normalize():f} {f.symbol} @ {f.price.normalize():f}")
             for f in fills]
    return EquityCurve(account=account, points=points, marks=marks)


def recent_signals(store: Store, limit: int = 20) -> list[SignalLine]:
    """The newest accepted signals, newest first, each with its status and reason."""
    stmt = select(SignalRow).order_by(col(SignalRow.seq).desc()).limit(limit)
    with Session(store.engine) as session:
        rows = list(session.exec(stmt).all())
    lines = []
    for row in rows:
        intent = Intent.model_validate_json(row.intent_json)
        quantity = intent.quantity if intent.quantity is not None else intent.target_position
        lines.append(SignalLine(
            signal_id=row.signal_id, account=row.account, source=row.source, action=intent.action.value,
            symbol=intent.symbol, quantity=None if quantity is None else f"{quantity.normalize():f}",
            status=row.status, reason=row.reason, received_at=row.received_at,
        ))
    return lines


async def period_curves(reader: Reader, store: Store, account: str | None, period: Period) -> list[EquityCurve]:
    """The equity curve of each account `account` names (None: all) since the period's start, up to now."""
    now = reader.clock()
    since = period_start(period, now, reader.timezone)
    names = reader.accounts_named(account)
    curves = []
    for view in await reader.accounts():
        if view.account in names:
            live = (now, view.state.equity) if view.state is not None and not view.stale else None
            curves.append(equity_curve(store, view.account, since, live))
    return curves


def chart_png(curves: list[EquityCurve], period: Period, timezone: str, now: datetime) -> bytes:
    """The chat picture of `curves`: one panel per account, titled with the period and the local date."""
    local = now.astimezone(ZoneInfo(timezone))
    title = f"traderd equity, {'today' if period == 'today' else 'this ' + period}: {local:%a %Y-%m-%d}"
    return png.render(curves, title=title, timezone=timezone)
