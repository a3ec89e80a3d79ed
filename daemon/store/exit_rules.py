"""Durable daemon-side exit rules (a trailing stop the daemon moves, ...): one row per rule, its state as JSON.

The store keeps the rule's document opaque (`daemon.managed_exits.rules` reads it); the columns beside it are
what rules are looked up by. Every save is a durable commit of its own: a stop the daemon moved at the broker
must be remembered across a restart, or the rule would start again from the entry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel, col, select

from daemon.domain import utcnow
from daemon.store.database import Database
from daemon.store.tables import UTCDateTime

ACTIVE = "active"
DONE = "done"


class ExitRuleRow(SQLModel, table=True):
    __tablename__ = "managed_exits"
    __table_args__ = (Index("ix_managed_exits_account_status", "account", "status"),)

    id: str = Field(primary_key=True)
    account: str
    symbol: str
    kind: str
    status: str = ACTIVE  # active | done
    rule_json: str
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ExitRuleRecords(Database):
    """The `managed_exits` table; `Store` includes it."""

    def save_exit_rule(self, rule_id: str, *, account: str, symbol: str, kind: str, status: str,
                       rule_json: str) -> None:
        """Insert or replace the rule's row."""
        now = utcnow()
        with self._write(durable=True) as session:
            row = session.get(ExitRuleRow, rule_id)
            if row is None:
                session.add(ExitRuleRow(id=rule_id, account=account, symbol=symbol, kind=kind, status=status,
                                        rule_json=rule_json, created_at=now, updated_at=now))
            else:
                row.status, row.rule_json, row.updated_at = status, rule_json, now
                session.add(row)

    def active_exit_rules(self, account: str | None = None, symbol: str | None = None) -> list[str]:
        """The documents of the active rules, oldest first."""
        stmt = select(ExitRuleRow.rule_json).where(ExitRuleRow.status == ACTIVE)
        if account is not None:
            stmt = stmt.where(ExitRuleRow.account == account)
        if symbol is not None:
            stmt = stmt.where(ExitRuleRow.symbol == symbol)
        with self._read() as session:
            return list(session.exec(stmt.order_by(col(ExitRuleRow.created_at), col(ExitRuleRow.id))).all())

    def exit_rule(self, rule_id: str) -> str | None:
        with self._read() as session:
            row = session.get(ExitRuleRow, rule_id)
            return None if row is None else row.rule_json
