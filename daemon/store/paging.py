"""Keyset pagination for the store's newest-first lists: opaque cursors and the page they continue from.

A cursor names the last row of a page by its sort key (time and row id, or an arrival number), so the next
page starts right after it however many rows arrive meanwhile, and every page is one indexed range scan.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, or_

T = TypeVar("T")


class BadCursor(ValueError):
    """A cursor this store did not hand out (or hand-edited)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a newest-first list and the cursor of the next one (None on the last page)."""

    items: list[T]
    next: str | None


def encode(at: datetime | None, row_id: int) -> str:
    raw = f"{at.astimezone(UTC).isoformat() if at is not None else ''}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime | None, int]:
    """(time, row id) of a cursor; BadCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.rpartition("|")
        at = datetime.fromisoformat(stamp) if stamp else None
        if at is not None and at.tzinfo is None:
            raise ValueError("naive time")
        return at, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"cursor {cursor[:40]!r} is not one this daemon handed out") from None


def before(time_column: Any, id_column: Any, cursor: str) -> Any:
    """The WHERE clause of rows after `cursor` in (time desc, id desc) order: strictly older, ties by id."""
    at, row_id = decode(cursor)
    if at is None:
        raise BadCursor("this cursor belongs to another list")
    return or_(time_column < at, and_(time_column == at, id_column < row_id))


def page(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Rows were fetched with limit + 1: cut to `limit` and name the cursor when there is more."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, key(rows[-1])
