"""Prebuilt Core statements for the per-signal hot path: order upsert, fill + positions ledger, signal outcome.

Built once per Store and executed with parameters on a plain connection. At 200 signals a second, building
statements per call (value coercion, cache keys) and the ORM unit of work cost more CPU than the SQLite
commit itself, and the event loop that acknowledges webhooks waits on every millisecond of it.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite

from daemon.domain import ZERO, Fill, Order, OrderStatus, SignalStatus, utcnow
from daemon.store.tables import FillRow, OrderRow, PositionRow, SignalRow, apply_fill, average_of, order_root

_FINAL = [s.value for s in OrderStatus if not s.is_open]
_OPEN = [s.value for s in OrderStatus if s.is_open]
_ORDER_UPDATES = ("status", "filled_quantity", "average_fill_price", "limit_price", "stop_price", "quantity",
                  "reject_reason", "updated_at")


class DuplicateFill(Exception):
    """The fill is already recorded; the caller rolls back whatever it changed for it."""


class HotWrites:
    def __init__(self, dialect: str, redact: Callable[[str], str] = str) -> None:
        self.redact = redact
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        orders = OrderRow.__table__.c  # type: ignore[attr-defined]
        positions = PositionRow.__table__  # type: ignore[attr-defined]
        signals = SignalRow.__table__  # type: ignore[attr-defined]
        fills = FillRow.__table__  # type: ignore[attr-defined]

        upsert = insert(OrderRow.__table__)  # type: ignore[attr-defined]
        new = upsert.excluded
        # A late "new" report never reopens a final order. The statuses are written into the SQL: a list of
        # bound values would be re-rendered into the statement on every execution.
        regress = and_(orders.status.in_([literal_column(f"'{s}'") for s in _FINAL]),
                       new.status.in_([literal_column(f"'{s}'") for s in _OPEN]))
        changes: dict[str, Any] = {name: case((regress, orders[name]), else_=new[name]) for name in _ORDER_UPDATES}
        changes["signal_id"] = case((new.signal_id.is_(None), orders.signal_id), else_=new.signal_id)
        self.order_upsert = upsert.on_conflict_do_update(index_elements=["account", "broker_order_id"],
                                                         set_=changes)

        self.fill_insert = (insert(fills).on_conflict_do_nothing(index_elements=["account", "fill_id"])
                            .returning(fills.c.id))
        where_position = and_(positions.c.account == bindparam("k_account"),
                              positions.c.symbol == bindparam("k_symbol"))
        self.position_seed = insert(positions).on_conflict_do_nothing(index_elements=["account", "symbol"])
        self.position_lock = (select(positions.c.quantity, positions.c.cost_basis, positions.c.realized_pnl)
                              .where(where_position).with_for_update())
        self.position_update = update(positions).where(where_position).values(
            **{name: bindparam(f"v_{name}", type_=positions.c[name].type)
               for name in ("quantity", "cost_basis", "average_price", "realized_pnl", "updated_at")}
        )
        self.signal_finish = update(signals).where(signals.c.signal_id == bindparam("k_signal_id")).values(
            status=bindparam("v_status", type_=signals.c.status.type),
            reason=bindparam("v_reason", type_=signals.c.reason.type),
            updated_at=bindparam("v_updated_at", type_=signals.c.updated_at.type),
            client_order_id=func.coalesce(bindparam("v_client_order_id", type_=signals.c.client_order_id.type),
                                          signals.c.client_order_id),
        )

    def upsert_order(self, conn: Connection, order: Order, signal_id: str | None) -> None:
        values = order.model_dump(mode="python")
        values.update(side=order.side.value, order_type=order.order_type.value, status=order.status.value,
                      time_in_force=order.time_in_force.value, signal_id=signal_id,
                      client_order_root=order_root(order.client_order_id))
        if order.reject_reason:
            values["reject_reason"] = self.redact(order.reject_reason)
        conn.execute(self.order_upsert, values)

    def apply_fill(self, conn: Connection, fill: Fill, multiplier: Decimal) -> Decimal:
        """Insert the fill and move the (account, symbol) ledger; raises DuplicateFill for a known fill, having
        changed nothing (the caller's transaction goes on)."""
        now = utcnow()
        key = {"k_account": fill.account, "k_symbol": fill.symbol}
        row = conn.execute(self.position_lock, key).first()
        seeded = None
        if row is None:  # first fill of this symbol: create the flat row, then lock it
            seeded = conn.begin_nested()  # undone if the fill turns out to be known
            conn.execute(self.position_seed, {"account": fill.account, "symbol": fill.symbol, "quantity": ZERO,
                                              "average_price": ZERO, "cost_basis": ZERO, "realized_pnl": ZERO,
                                              "updated_at": now})
            row = conn.execute(self.position_lock, key).one()
        quantity, cost, realized = apply_fill(row.quantity, row.cost_basis, fill.side.sign * fill.quantity,
                                              fill.price, multiplier)
        values = fill.model_dump(mode="python")
        values.update(side=fill.side.value, realized_pnl=realized, multiplier=multiplier)
        known = conn.execute(self.fill_insert, values).first() is None  # the insert is the first write otherwise
        if seeded is not None and known:
            seeded.rollback()
        elif seeded is not None:
            seeded.commit()
        if known:
            raise DuplicateFill
        conn.execute(self.position_update, {**key, "v_quantity": quantity, "v_cost_basis": cost,
                                            "v_average_price": average_of(quantity, cost),
                                            "v_realized_pnl": row.realized_pnl + realized, "v_updated_at": now})
        return realized

    def finish_signal(self, conn: Connection, signal_id: str, status: SignalStatus, reason: str | None,
                      client_order_id: str | None) -> None:
        result = conn.execute(self.signal_finish, {
            "k_signal_id": signal_id, "v_status": SignalStatus(status).value,
            "v_reason": None if reason is None else self.redact(reason),
            "v_updated_at": utcnow(), "v_client_order_id": client_order_id,
        })
        if result.rowcount == 0:
            raise KeyError(f"unknown signal {signal_id!r}")
