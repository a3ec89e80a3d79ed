"""Reading traderd's store after a load run: signal-to-fill latencies, lost and doubled signals, fan-out children.

Reads through SQLAlchemy Core on the daemon's own tables, so SQLite and PostgreSQL are read the same way, and
only what the run wrote: its signals by id (or by parent id) and the fills since the run began, so a store
seeded with a million rows of history costs no more to read than an empty one. Waits are bounded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, func, select

from daemon.store.database import normalize_url
from daemon.store.tables import FillRow, SignalRow

_SIGNALS = SignalRow.__table__.c
_FILLS = FillRow.__table__.c
_CHUNK = 500
_UNFINISHED = ("pending", "submitting")
_ENDED_WITHOUT_FILL = ("expired", "rejected", "skipped")  # not lost: the daemon decided not to trade


def reader(url: str) -> Engine:
    return create_engine(normalize_url(url))


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _fills_since(engine: Engine, since: datetime) -> dict[str, list[datetime]]:
    """client order id -> fill times, for the fills at or after `since` (the fills table's time index)."""
    found: dict[str, list[datetime]] = {}
    with engine.connect() as conn:
        query = select(_FILLS.client_order_id, _FILLS.filled_at).where(_FILLS.filled_at >= since)
        for coid, filled_at in conn.execute(query):
            found.setdefault(coid, []).append(filled_at)
    return found


def _rows(engine: Engine, column: Any, keys: list[str]) -> list[Any]:
    wanted = (_SIGNALS.signal_id, _SIGNALS.parent_id, _SIGNALS.received_at, _SIGNALS.updated_at,
              _SIGNALS.client_order_id, _SIGNALS.status)
    rows: list[Any] = []
    with engine.connect() as conn:
        for chunk in _chunks(keys):
            rows.extend(conn.execute(select(*wanted).where(column.in_(chunk))))
    return rows


def _wait_final(engine: Engine, column: Any, keys: list[str], within: float, expected: int | None) -> list[Any]:
    """The signal rows for `keys`, once the store has nothing pending or submitting (and, when `expected` is
    given, that many rows exist), or when `within` seconds have passed. Each case has a store of its own, so
    "nothing unfinished" (the status index: what is in flight, not the history) means the run is done."""
    deadline = time.monotonic() + within
    while _unfinished(engine) and time.monotonic() < deadline:
        time.sleep(0.25)
    while True:
        rows = _rows(engine, column, keys)
        done = all(r.status not in _UNFINISHED for r in rows) and (expected is None or len(rows) >= expected)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.25)


def _unfinished(engine: Engine) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(SignalRow.__table__).where(_SIGNALS.status.in_(_UNFINISHED))
        return int(conn.execute(query).scalar() or 0)


def fills_of(url: str, accepted: list[str], since_wall: float, within: float) -> dict[str, Any]:
    """Signal-to-fill latencies from the store's own timestamps, waiting (bounded) until no accepted signal is
    pending; also counts lost (no fill and no decision) and doubled (more than one fill) signals."""
    engine = reader(url)
    try:
        rows = _wait_final(engine, _SIGNALS.signal_id, accepted, within, None)
        fills = _fills_since(engine, _since(since_wall))
    finally:
        engine.dispose()
    statuses = Counter(r.status for r in rows)
    done = [(r.received_at, fills[r.client_order_id]) for r in rows if r.client_order_id in fills]
    ended = sum(statuses.get(s, 0) for s in _ENDED_WITHOUT_FILL)
    return {"to_fill": [(min(times) - received).total_seconds() for received, times in done],
            "lost": len(set(accepted)) - len(done) - ended, "doubled": sum(1 for _, times in done if len(times) > 1),
            "statuses": dict(statuses), "last_fill_at": _last(t for _, times in done for t in times)}


def fanout_of(url: str, parents: list[str], group_size: int, since_wall: float, within: float) -> dict[str, Any]:
    """Every child of every fan-out parent: filled exactly once? When was the last fill, and the last child's
    outcome, recorded? Waits (bounded) until every parent has its `group_size` children, all finished."""
    engine = reader(url)
    try:
        kids = _wait_final(engine, _SIGNALS.parent_id, parents, within, len(parents) * group_size)
        fills = _fills_since(engine, _since(since_wall))
    finally:
        engine.dispose()
    per_child = [len(fills.get(k.client_order_id, [])) for k in kids]
    decided = sum(1 for k, n in zip(kids, per_child, strict=True) if n == 0 and k.status in _ENDED_WITHOUT_FILL)
    first_fill = [min(fills[k.client_order_id]) - k.received_at for k in kids if k.client_order_id in fills]
    return {"children_expected": len(parents) * group_size, "children": len(kids),
            "children_filled_once": sum(1 for n in per_child if n == 1),
            "children_doubled": sum(1 for n in per_child if n > 1),
            "children_without_fill": sum(1 for n in per_child if n == 0),
            "lost": len(parents) * group_size - sum(1 for n in per_child if n > 0) - decided,
            "child_statuses": dict(Counter(k.status for k in kids)),
            "to_fill": [d.total_seconds() for d in first_fill],
            "last_fill_at": _last(t for k in kids for t in fills.get(k.client_order_id, [])),
            "last_child_final_at": _last(k.updated_at for k in kids)}


def wait_drained(url: str, within: float) -> bool:
    """True once nothing accepted is waiting to be executed; False if `within` seconds pass first."""
    engine = reader(url)
    deadline = time.monotonic() + within
    try:
        while _unfinished(engine):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True
    finally:
        engine.dispose()


def _since(wall: float) -> datetime:
    return datetime.fromtimestamp(wall - 1.0, UTC)  # a second early: clocks are read in different places


def _last(times: Iterable[datetime]) -> float:
    return max((t.timestamp() for t in times), default=float("nan"))
