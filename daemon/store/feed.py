"""Accepted signals an account's owner has yet to run: the unfinished ones of its accounts, in arrival order.

On a shared store another daemon may have accepted them; the owner asks for the ids first (cheap) and reads
the intents only of those it has not queued yet.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlmodel import Session, col, select

from daemon.domain import Intent, SignalStatus
from daemon.store.database import Database
from daemon.store.tables import SignalRow

_UNFINISHED = [SignalStatus.PENDING.value, SignalStatus.SUBMITTING.value]


class SignalFeed:
    def __init__(self, database: Database) -> None:
        self.database = database

    def unfinished_ids(self, accounts: Collection[str]) -> list[tuple[str, str]]:
        """(account, signal_id) of every unfinished signal of `accounts`, oldest first.

        Sorted here, not by the query: asked to order by arrival, SQLite walks `ix_signals_account_seq`
        (it saves the sort) through every signal the accounts ever had instead of the few unfinished ones."""
        if not accounts:
            return []
        stmt = (select(SignalRow.seq, SignalRow.account, SignalRow.signal_id)
                .where(col(SignalRow.status).in_(_UNFINISHED), col(SignalRow.account).in_(list(accounts))))
        with Session(self.database.engine) as session:
            rows = sorted(session.exec(stmt).all())
        return [(account, signal_id) for _, account, signal_id in rows]

    def intents(self, signal_ids: Sequence[str]) -> list[Intent]:
        """The intents of those of `signal_ids` still unfinished, oldest first."""
        if not signal_ids:
            return []
        stmt = (select(SignalRow.intent_json)
                .where(col(SignalRow.signal_id).in_(list(signal_ids)), col(SignalRow.status).in_(_UNFINISHED))
                .order_by(col(SignalRow.seq)))
        with Session(self.database.engine) as session:
            return [Intent.model_validate_json(text) for text in session.exec(stmt).all()]
