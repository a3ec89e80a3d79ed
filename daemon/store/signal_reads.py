"""Reading stored signals back: one signal with its orders and fills in a fixed number of queries.

A fan-out parent comes with every child's orders and fills, and the count of queries does not grow with the
number of children: the fan-out report reads a 20-account parent on the event loop right after its last
child filled, while the next alert's children wait for the same loop. Rows become domain objects here too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, or_
from sqlmodel import col, select

from daemon.domain import Fill, Intent, Order, SignalStatus
from daemon.store.tables import FillRow, OrderRow, SignalRow, order_root
from daemon.store.views import SignalRecord, SignalSummary

# An ORM object or a plain row of its table: the same attributes, read the same way.
Signalish = SignalRow | Row[Any]
Orderish = OrderRow | Row[Any]
Fillish = FillRow | Row[Any]


def order_of(row: Orderish) -> Order:
    return Order.model_validate(row, from_attributes=True)


def fill_of(row: Fillish) -> Fill:
    return Fill.model_validate(row, from_attributes=True)


def _summary_fields(row: Signalish) -> dict[str, Any]:
    return {"seq": row.seq or 0, "signal_id": row.signal_id, "account": row.account, "source": row.source,
            "status": SignalStatus(row.status), "reason": row.reason,
            "intent": Intent.model_validate_json(row.intent_json), "received_at": row.received_at,
            "updated_at": row.updated_at, "client_order_id": row.client_order_id}


def summary_of(row: Signalish) -> SignalSummary:
    return SignalSummary(**_summary_fields(row))


def outcome_of(session: Any, signal_id: str) -> tuple[SignalStatus, str | None] | None:
    """A signal's status and reason alone (one indexed row, no orders): for waiting on an outcome."""
    row = session.exec(select(SignalRow.status, SignalRow.reason).where(SignalRow.signal_id == signal_id)).first()
    return None if row is None else (SignalStatus(row[0]), row[1])


def read_signal(session: Any, signal_id: str) -> SignalRecord | None:
    """The signal, its orders and fills; a fan-out parent also each child's, in four queries in all."""
    # Plain rows, not ORM objects: a 20-account parent is 61 rows, and their mapping cost more than the reads.
    signals = SignalRow.__table__  # type: ignore[attr-defined]
    row = session.execute(select(signals).where(signals.c.signal_id == signal_id)).first()
    if row is None:
        return None
    children = list(session.execute(
        select(signals).where(signals.c.parent_id == signal_id).order_by(signals.c.seq)
    ).all())
    orders, fills = _orders_and_fills(session, [row, *children])
    kids = [_record(child, orders, fills, []) for child in children]
    return _record(row, orders, fills, kids)


def _record(row: Signalish, orders: dict[str, list[Orderish]], fills: dict[tuple[str, str], list[Fillish]],
            children: list[SignalRecord]) -> SignalRecord:
    own = orders.get(row.signal_id, [])
    found = [f for o in own for f in fills.get((row.account, o.broker_order_id), [])]
    found.sort(key=lambda f: (f.filled_at, f.id or 0))
    # Built from the row's fields directly: going through a summary and its dump parsed the intent twice.
    return SignalRecord(**_summary_fields(row), orders=[order_of(o) for o in own],
                        fills=[fill_of(f) for f in found], parent_id=row.parent_id,
                        route=None if row.route_json is None else json.loads(row.route_json), children=children)


def _orders_and_fills(session: Any, rows: Sequence[Signalish]
                      ) -> tuple[dict[str, list[Orderish]], dict[tuple[str, str], list[Fillish]]]:
    """Each signal's orders (by its id, or, for legs that carry no signal id, by its order's id root within
    its account: both indexed), and the fills of those orders by (account, broker order id)."""
    wanted = {r.signal_id for r in rows}
    match: list[ColumnElement[bool]] = [col(OrderRow.signal_id).in_([r.signal_id for r in rows])]
    roots: dict[tuple[str, str], str] = {}
    for r in rows:
        if r.client_order_id:
            roots[(r.account, order_root(r.client_order_id))] = r.signal_id
    if roots:  # (account IN ..., root IN ...) keeps the statement's shape, and its cache entry, the same
        match.append(and_(col(OrderRow.account).in_(sorted({a for a, _ in roots})),
                          col(OrderRow.client_order_root).in_(sorted({root for _, root in roots}))))
    orders = OrderRow.__table__  # type: ignore[attr-defined]
    found = [o for o in session.execute(select(orders).where(or_(*match))
                                        .order_by(col(OrderRow.created_at), col(OrderRow.id))).all()
             if o.signal_id in wanted or (o.account, o.client_order_root or "") in roots]
    by_signal: dict[str, list[Orderish]] = defaultdict(list)
    for order in found:
        owners = {order.signal_id} if order.signal_id else set()
        root_owner = roots.get((order.account, order.client_order_root or ""))
        if root_owner is not None:
            owners.add(root_owner)
        for owner in owners:
            by_signal[owner].append(order)
    fills: dict[tuple[str, str], list[Fillish]] = defaultdict(list)
    ids = sorted({o.broker_order_id for o in found})
    if ids:  # by the broker_order_id index; the account is matched after (another's order may share an id)
        fills_table = FillRow.__table__  # type: ignore[attr-defined]
        for fill in session.execute(select(fills_table).where(fills_table.c.broker_order_id.in_(ids))).all():
            fills[(fill.account, fill.broker_order_id)].append(fill)
    return by_signal, fills
