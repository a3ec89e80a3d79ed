"""The per-signal hot path's writes: order upsert, fill + positions ledger, signal outcome, prepared once.

Each statement is built once per Store and compiled for its dialect (`daemon.store.prepared`), then run with
parameters on the driver's cursor in a transaction of a `KeptConnection`. At 20 accounts an alert, building
statements per call (value coercion, cache keys), the ORM unit of work or even SQLAlchemy's per-execution
machinery cost more CPU than the SQLite commit itself, and the event loop that acknowledges webhooks and runs
every account's signal waits on every millisecond of it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect

from daemon.domain import ZERO, Fill, Order, OrderStatus, SignalStatus, utcnow
from daemon.store.prepared import Cursor, Prepared, written_in
from daemon.store.tables import FillRow, OrderRow, PositionRow, SignalRow, apply_fill, average_of, order_root

_FINAL = [s.value for s in OrderStatus if not s.is_open]
_OPEN = [s.value for s in OrderStatus if s.is_open]
_ORDER_UPDATES = ("status", "filled_quantity", "average_fill_price", "limit_price", "stop_price", "quantity",
                  "reject_reason", "updated_at")


def _columns(table: Any) -> list[str]:
    """Every column an insert sets: all but the generated id."""
    return [c.name for c in table.c if c.name != "id"]


class DuplicateFill(Exception):
    """The fill is already recorded; the caller rolls back whatever it changed for it."""


class HotWrites:
    def __init__(self, dialect: Dialect, redact: Callable[[str], str] = str) -> None:
        self.redact = redact
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        orders = OrderRow.__table__.c  # type: ignore[attr-defined]
        positions = PositionRow.__table__  # type: ignore[attr-defined]
        signals = SignalRow.__table__  # type: ignore[attr-defined]
        fills = FillRow.__table__  # type: ignore[attr-defined]

        upsert = insert(OrderRow.__table__)  # type: ignore[attr-defined]
        new = upsert.excluded
        regress = and_(written_in(orders.status, _FINAL), written_in(new.status, _OPEN))  # a late "new" report
        # never reopens a final order
        changes: dict[str, Any] = {name: case((regress, orders[name]), else_=new[name]) for name in _ORDER_UPDATES}
        changes["signal_id"] = case((new.signal_id.is_(None), orders.signal_id), else_=new.signal_id)
        self.order_upsert = Prepared(upsert.on_conflict_do_update(index_elements=["account", "broker_order_id"],
                                                                  set_=changes), dialect, _columns(OrderRow.__table__))  # type: ignore[attr-defined]

        self.fill_insert = Prepared(insert(fills).on_conflict_do_nothing(index_elements=["account", "fill_id"])
                                    .returning(fills.c.id), dialect, _columns(fills))
        where_position = and_(positions.c.account == bindparam("k_account"),
                              positions.c.symbol == bindparam("k_symbol"))
        self.position_seed = Prepared(insert(positions).on_conflict_do_nothing(index_elements=["account", "symbol"]),
                                      dialect, _columns(positions))
        self.position_lock = Prepared(select(positions.c.quantity, positions.c.cost_basis, positions.c.realized_pnl)
                                      .where(where_position).with_for_update(), dialect)
        self.position_update = Prepared(update(positions).where(where_position).values(
            **{name: bindparam(f"v_{name}", type_=positions.c[name].type)
               for name in ("quantity", "cost_basis", "average_price", "realized_pnl", "updated_at")}
        ), dialect)
        self.open_orders_of = Prepared(  # a symbol's resting orders: few, by the (account, status) index
            select(orders.broker_order_id, orders.parent_order_id, orders.order_type)
            .where(orders.account == bindparam("k_account"), orders.symbol == bindparam("k_symbol"),
                   written_in(orders.status, _OPEN)), dialect)
        self.signal_finish = Prepared(update(signals).where(signals.c.signal_id == bindparam("k_signal_id")).values(
            status=bindparam("v_status", type_=signals.c.status.type),
            reason=bindparam("v_reason", type_=signals.c.reason.type),
            updated_at=bindparam("v_updated_at", type_=signals.c.updated_at.type),
            client_order_id=func.coalesce(bindparam("v_client_order_id", type_=signals.c.client_order_id.type),
                                          signals.c.client_order_id),
        ), dialect)

    def upsert_order(self, conn: Cursor, order: Order, signal_id: str | None) -> None:
        values = order.model_dump(mode="python")
        values.update(side=order.side.value, order_type=order.order_type.value, status=order.status.value,
                      time_in_force=order.time_in_force.value, signal_id=signal_id,
                      client_order_root=order_root(order.client_order_id))
        if order.reject_reason:
            values["reject_reason"] = self.redact(order.reject_reason)
        conn.execute(self.order_upsert, values)

    def apply_fill(self, conn: Cursor, fill: Fill, multiplier: Decimal) -> Decimal:
        """Insert the fill and move the (account, symbol) ledger; raises DuplicateFill for a known fill, having
        changed nothing (the caller's transaction goes on)."""
        now = utcnow()
        key = {"k_account": fill.account, "k_symbol": fill.symbol}
        row = conn.execute(self.position_lock, key).fetchone()
        seeded = row is None
        if seeded:  # first fill of this symbol: create the flat row, then lock it
            conn.savepoint()  # undone if the fill turns out to be known
            conn.execute(self.position_seed, {"account": fill.account, "symbol": fill.symbol, "quantity": ZERO,
                                              "average_price": ZERO, "cost_basis": ZERO, "realized_pnl": ZERO,
                                              "updated_at": now})
            row = conn.execute(self.position_lock, key).fetchone()
        held, cost_basis, realized_before = (Decimal(v) for v in row)  # stored as exact text
        quantity, cost, realized = apply_fill(held, cost_basis, fill.side.sign * fill.quantity, fill.price,
                                              multiplier)
        values = fill.model_dump(mode="python")
        values.update(side=fill.side.value, realized_pnl=realized, multiplier=multiplier)
        known = conn.execute(self.fill_insert, values).fetchone() is None  # otherwise the first write
        if seeded:
            conn.release(undo=known)
        if known:
            raise DuplicateFill
        conn.execute(self.position_update, {**key, "v_quantity": quantity, "v_cost_basis": cost,
                                            "v_average_price": average_of(quantity, cost),
                                            "v_realized_pnl": realized_before + realized, "v_updated_at": now})
        return realized

    def finish_signal(self, conn: Cursor, signal_id: str, status: SignalStatus, reason: str | None,
                      client_order_id: str | None) -> None:
        result = conn.execute(self.signal_finish, {
            "k_signal_id": signal_id, "v_status": SignalStatus(status).value,
            "v_reason": None if reason is None else self.redact(reason),
            "v_updated_at": utcnow(), "v_client_order_id": client_order_id,
        })
        if result.rowcount == 0:
            raise KeyError(f"unknown signal {signal_id!r}")
