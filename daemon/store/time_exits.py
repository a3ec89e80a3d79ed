"""Durable time exits: an entry's position is closed at `due_at`; armed before the entry is sent, fired once.

A row is armed (durably) before the entry's order leaves, so a crash between the send and the signal's outcome
cannot lose it, or by chat's `/exit-after` for a position already held. The runner (`daemon.strategy.time_exits`)
fires an entry's only if that entry executed, and marks it `fired` (with the closing signal's id) or `skipped`
(with the reason), each at most once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Index
from sqlmodel import Field, SQLModel, col, select

from daemon.domain import Side, utcnow
from daemon.store.database import Database
from daemon.store.tables import DecimalText, UTCDateTime

TimeExitStatus = Literal["armed", "fired", "skipped"]
TimeExitOrigin = Literal["signal", "chat"]


class TimeExitRow(SQLModel, table=True):
    __tablename__ = "time_exits"
    __table_args__ = (Index("ix_time_exits_status_due", "status", "due_at"),)

    entry_signal_id: str = Field(primary_key=True)
    account: str
    symbol: str
    side: str  # the entry's side: the position it opens is long for buy, short for sell
    quantity: Decimal = Field(sa_type=DecimalText)
    spec: str  # what the alert asked for, in words ("after 45m", "at 15:55")
    origin: str = "signal"  # "signal": armed by the entry signal `entry_signal_id`; "chat": by /exit-after
    armed_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    status: str = "armed"
    close_signal_id: str | None = None
    note: str | None = None
    updated_at: datetime = Field(sa_type=UTCDateTime)


class TimeExitView(BaseModel):
    """One time exit as the API, chat and the status page show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_signal_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    spec: str
    origin: TimeExitOrigin
    armed_at: datetime
    due_at: datetime
    status: TimeExitStatus
    close_signal_id: str | None = None
    note: str | None = None

    @classmethod
    def of(cls, row: TimeExitRow) -> TimeExitView:
        return cls(entry_signal_id=row.entry_signal_id, account=row.account, symbol=row.symbol, side=Side(row.side),
                   quantity=row.quantity, spec=row.spec, origin=row.origin, armed_at=row.armed_at, due_at=row.due_at,
                   status=row.status, close_signal_id=row.close_signal_id, note=row.note)


class TimeExitRecords(Database):
    """The `time_exits` table; `Store` carries these methods."""

    def arm_time_exit(self, *, entry_signal_id: str, account: str, symbol: str, side: Side, quantity: Decimal,
                      spec: str, due_at: datetime, now: datetime, origin: TimeExitOrigin = "signal") -> None:
        """Arm once: a re-executed entry (after a restart) keeps the time exit armed the first time."""
        values = dict(entry_signal_id=entry_signal_id, account=account, symbol=symbol, side=side.value,
                      quantity=quantity, spec=spec, origin=origin, armed_at=now, due_at=due_at, status="armed",
                      updated_at=now)
        with self._write(durable=True) as session:
            session.execute(self._insert(TimeExitRow).values(**values)
                            .on_conflict_do_nothing(index_elements=["entry_signal_id"]))

    def time_exits(self, account: str | None = None, *, armed_only: bool = True) -> list[TimeExitView]:
        """Soonest first."""
        stmt = select(TimeExitRow)
        if account is not None:
            stmt = stmt.where(TimeExitRow.account == account)
        if armed_only:
            stmt = stmt.where(TimeExitRow.status == "armed")
        with self._read() as session:
            rows = session.exec(stmt.order_by(col(TimeExitRow.due_at), col(TimeExitRow.entry_signal_id))).all()
        return [TimeExitView.of(row) for row in rows]

    def time_exit(self, entry_signal_id: str) -> TimeExitView | None:
        with self._read() as session:
            row = session.get(TimeExitRow, entry_signal_id)
        return None if row is None else TimeExitView.of(row)

    def settle_time_exit(self, entry_signal_id: str, status: TimeExitStatus, *, note: str,
                         close_signal_id: str | None = None) -> bool:
        """Mark an armed time exit fired or skipped; False when it was not armed (settled already)."""
        with self._write(durable=True) as session:
            row = session.get(TimeExitRow, entry_signal_id, with_for_update=True)
            if row is None or row.status != "armed":
                return False
            row.status, row.note, row.close_signal_id, row.updated_at = status, note, close_signal_id, utcnow()
            session.add(row)
        return True
