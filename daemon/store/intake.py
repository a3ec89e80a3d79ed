"""Accepted signals into the store: the rows of a new signal or of a fan-out, written on a given connection.

The direct path (`Store.record_signal`, a transaction of its own) and the group commit (`Store.submit_signal`,
a transaction and an fsync shared with concurrent submissions) both write through `SignalIntake`, so a
signal is stored the same way whichever path took it. A signal is known by (account, dedup_key): writing a
known one changes nothing and gives the existing id back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import IntegrityError

from daemon.domain import Intent, SignalStatus
from daemon.store.prepared import Cursor, Prepared
from daemon.store.tables import SignalRow


@dataclass(frozen=True)
class FanoutChild:
    """One account's signal of a fan-out: PENDING to run on its worker, or SKIPPED with the reason."""

    intent: Intent
    status: SignalStatus
    reason: str | None
    route: dict[str, Any]


def raw_json(raw: dict[str, Any] | None) -> str | None:
    return None if raw is None else json.dumps(raw, default=str, ensure_ascii=False)


_WRITTEN = ("signal_id", "account", "dedup_key", "source", "status", "reason", "intent_json", "raw_json",
            "received_at", "updated_at", "parent_id", "route_json")  # the columns a new signal sets


def signal_row(intent: Intent, status: SignalStatus, now: datetime, *, reason: str | None = None,
               raw: str | None = None, parent_id: str | None = None, route: str | None = None) -> dict[str, Any]:
    return {"signal_id": intent.signal_id, "account": intent.account, "dedup_key": intent.dedup_key,
            "source": intent.source, "status": status.value, "reason": reason,
            "intent_json": intent.model_dump_json(), "raw_json": raw, "received_at": intent.received_at,
            "updated_at": now, "parent_id": parent_id, "route_json": route}


class SignalIntake:
    """Writes new signals with one prepared `INSERT ... ON CONFLICT DO NOTHING RETURNING`."""

    def __init__(self, insert: Any, dialect: Dialect) -> None:
        """`insert` is the dialect's insert of the signals table (`on_conflict_*` differs by dialect)."""
        columns = SignalRow.__table__.c  # type: ignore[attr-defined]
        self._insert = Prepared(insert.on_conflict_do_nothing(index_elements=["account", "dedup_key"])
                                .returning(columns.seq), dialect, _WRITTEN)
        self._existing = Prepared(select(columns.signal_id).where(columns.account == bindparam("k_account"),
                                                                  columns.dedup_key == bindparam("k_dedup_key")),
                                  dialect)

    def write_signal(self, conn: Cursor, row: dict[str, Any]) -> tuple[str, bool]:
        """(signal_id, True) when inserted, (existing id, False) when (account, dedup_key) is known."""
        try:
            inserted = conn.execute(self._insert, row).fetchone()
        except IntegrityError:  # the primary key: this signal_id is another signal's
            raise ValueError(f"signal_id {row['signal_id']!r} is already used by another signal") from None
        if inserted is not None:
            return row["signal_id"], True
        existing = self.existing(conn, row["account"], row["dedup_key"])
        if existing is None:
            raise ValueError(f"signal_id {row['signal_id']!r} is already used by another signal")
        return existing, False

    def write_fanout(self, conn: Cursor, parent: Intent, raw: dict[str, Any] | None,
                     children: list[FanoutChild], now: datetime) -> tuple[str, bool, list[bool]]:
        """The parent and every child, or nothing when the parent is known: (parent id, True, which children
        are new) or (existing parent id, False, []). A child whose (account, dedup_key) is taken (the same
        alert sent to that account alone) is not new."""
        summary = f"fanned out to {len(children)} accounts"
        parent_row = signal_row(parent, SignalStatus.FANNED_OUT, now, reason=summary, raw=raw_json(raw))
        if conn.execute(self._insert, parent_row).fetchone() is None:
            existing = self.existing(conn, parent.account, parent.dedup_key)
            if existing is None:
                raise ValueError(f"signal_id {parent.signal_id!r} is already used by another signal")
            return existing, False, []
        new = []
        for child in children:
            row = signal_row(child.intent, child.status, now, reason=child.reason, parent_id=parent.signal_id,
                             route=json.dumps(child.route, default=str))
            new.append(conn.execute(self._insert, row).fetchone() is not None)
        return parent.signal_id, True, new

    def existing(self, conn: Cursor, account: str, dedup_key: str) -> str | None:
        # On PostgreSQL ON CONFLICT waited for a racing insert to commit, so its row is visible here.
        found = conn.execute(self._existing, {"k_account": account, "k_dedup_key": dedup_key}).fetchone()
        return None if found is None else str(found[0])
