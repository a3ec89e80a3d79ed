"""Durable JSON documents by (namespace, key): funded-account rule state, strategy warm-up, and the like.

A small repository on the store's `Database`: callers keep their own pydantic models and store them with
`model_dump(mode="json")`, so this table never needs a migration for a new kind of state.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from daemon.domain import utcnow
from daemon.store.database import Database
from daemon.store.tables import KvRow


class StateStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        with Session(self.database.engine) as session:
            row = session.get(KvRow, (namespace, key))
            return None if row is None else json.loads(row.value_json)

    def put(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        with self.database.writing() as session:
            row = session.get(KvRow, (namespace, key))
            text = json.dumps(value, default=str, sort_keys=True)
            if row is None:
                session.add(KvRow(namespace=namespace, key=key, value_json=text, updated_at=utcnow()))
            else:
                row.value_json, row.updated_at = text, utcnow()

    def all(self, namespace: str) -> dict[str, dict[str, Any]]:
        with Session(self.database.engine) as session:
            rows = session.exec(select(KvRow).where(KvRow.namespace == namespace))
            return {row.key: json.loads(row.value_json) for row in rows}

    def delete(self, namespace: str, key: str) -> None:
        with self.database.writing() as session:
            row = session.get(KvRow, (namespace, key))
            if row is not None:
                session.delete(row)

    def claim(self, namespace: str, key: str, value: dict[str, Any]) -> bool:
        """Store `value` under a key not stored yet; False (and nothing changed) when the key is there already.
        One insert, so two claims of the same key can never both succeed."""
        row = KvRow(namespace=namespace, key=key, value_json=json.dumps(value, default=str, sort_keys=True),
                    updated_at=utcnow())
        try:
            with self.database.writing() as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    def prune(self, namespace: str, before: datetime) -> None:
        """Forget a namespace's documents last written before `before`."""
        with self.database.writing() as session:
            session.execute(delete(KvRow).where(col(KvRow.namespace) == namespace, col(KvRow.updated_at) < before))
