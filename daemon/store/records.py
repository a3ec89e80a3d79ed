"""Account records in the store: pause/lock controls, the audit log, risk violations and account snapshots.

Controls and audit entries are promises to the trader (a pause, a lock, who did what) and commit durably; a
violation or a snapshot describes what the broker and the risk rules already know and commits fast.
"""

from __future__ import annotations

from sqlmodel import col, select

from daemon.domain import AccountState, Violation, utcnow
from daemon.store.database import Database
from daemon.store.scope import Accounts, only
from daemon.store.tables import AuditRow, ControlRow, SnapshotRow, ViolationRow
from daemon.store.views import AccountControl, AuditEntry


class AccountRecords(Database):
    """The per-account records beside the trading ones; `Store` adds signals, orders, fills and positions."""

    # -- snapshots and violations --------------------------------------------------------------------------

    def record_snapshot(self, state: AccountState) -> None:
        row = SnapshotRow.of(state)
        with self._write() as session:
            session.add(row)

    def latest_snapshot(self, account: str) -> AccountState | None:
        stmt = (
            select(SnapshotRow.state_json)
            .where(SnapshotRow.account == account)
            .order_by(col(SnapshotRow.as_of).desc(), col(SnapshotRow.id).desc())
            .limit(1)  # the session reads every row a query returns, even for `.first()`
        )
        with self._read() as session:
            state_json = session.exec(stmt).first()
        return None if state_json is None else AccountState.model_validate_json(state_json)

    def record_violation(self, v: Violation) -> None:
        row = ViolationRow.of(v)
        with self._write() as session:
            session.add(row)

    def violations(self, account: Accounts = None, limit: int = 100) -> list[Violation]:
        """Newest first."""
        stmt = only(select(ViolationRow), ViolationRow.account, account)
        stmt = stmt.order_by(col(ViolationRow.at).desc(), col(ViolationRow.id).desc()).limit(limit)
        with self._read() as session:
            rows = session.exec(stmt).all()
        return [r.to_violation() for r in rows]

    # -- audit ---------------------------------------------------------------------------------------------

    def audit(
        self, actor: str, action: str, target: str | None = None, detail: str | None = None, ok: bool = True
    ) -> None:
        row = AuditRow(at=utcnow(), actor=actor, action=action, target=target, detail=detail, ok=ok)
        with self._write(durable=True) as session:
            session.add(row)

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        stmt = select(AuditRow).order_by(col(AuditRow.at).desc(), col(AuditRow.id).desc()).limit(limit)
        with self._read() as session:
            rows = session.exec(stmt).all()
        return [AuditEntry.model_validate(r, from_attributes=True) for r in rows]

    # -- account controls ----------------------------------------------------------------------------------

    def set_control(
        self,
        account: str,
        *,
        paused: bool | None = None,
        locked: bool | None = None,
        reason: str | None = None,
        by: str = "",
    ) -> None:
        """Change only the flags given. The reason is replaced when given and cleared once nothing is held."""
        with self._write(durable=True) as session:
            now = utcnow()
            defaults = {"paused": False, "locked": False, "reason": None, "updated_at": now, "updated_by": by}
            row: ControlRow = self._locked_row(session, ControlRow, {"account": account}, defaults)
            if paused is not None:
                row.paused = paused
            if locked is not None:
                row.locked = locked
            if reason is not None:
                row.reason = reason
            elif not row.paused and not row.locked:
                row.reason = None
            row.updated_at, row.updated_by = now, by

    def controls(self) -> dict[str, AccountControl]:
        with self._read() as session:
            rows = session.exec(select(ControlRow).order_by(col(ControlRow.account))).all()
        return {r.account: AccountControl.model_validate(r, from_attributes=True) for r in rows}
