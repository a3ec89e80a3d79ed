"""Initial schema: signals, orders, fills, positions, snapshots, violations, audit log, account controls.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Written by hand. Decimals are VARCHAR holding `str(Decimal)` (exact on every backend); timestamps are
`DateTime(timezone=True)` holding UTC (see `daemon.store.tables`). Later schema changes go in new revisions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sa.String
_DEC = sa.String  # Decimal as exact text
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("signal_id", _S(), nullable=False),
        sa.Column("account", _S(), nullable=False),
        sa.Column("dedup_key", _S(), nullable=False),
        sa.Column("source", _S(), nullable=False),
        sa.Column("status", _S(), nullable=False),
        sa.Column("reason", _S(), nullable=True),
        sa.Column("intent_json", _S(), nullable=False),
        sa.Column("raw_json", _S(), nullable=True),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("client_order_id", _S(), nullable=True),
        sa.UniqueConstraint("signal_id", name="uq_signals_signal_id"),
        sa.UniqueConstraint("account", "dedup_key", name="uq_signals_account_dedup"),
    )
    op.create_index("ix_signals_status", "signals", ["status"])

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account", _S(), nullable=False),
        sa.Column("broker_order_id", _S(), nullable=False),
        sa.Column("client_order_id", _S(), nullable=False),
        sa.Column("signal_id", _S(), nullable=True),
        sa.Column("symbol", _S(), nullable=False),
        sa.Column("side", _S(), nullable=False),
        sa.Column("quantity", _DEC(), nullable=False),
        sa.Column("order_type", _S(), nullable=False),
        sa.Column("status", _S(), nullable=False),
        sa.Column("filled_quantity", _DEC(), nullable=False),
        sa.Column("average_fill_price", _DEC(), nullable=True),
        sa.Column("limit_price", _DEC(), nullable=True),
        sa.Column("stop_price", _DEC(), nullable=True),
        sa.Column("time_in_force", _S(), nullable=False),
        sa.Column("parent_order_id", _S(), nullable=True),
        sa.Column("oco_group", _S(), nullable=True),
        sa.Column("reject_reason", _S(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.UniqueConstraint("account", "broker_order_id", name="uq_orders_account_broker_id"),
    )
    op.create_index("ix_orders_client_order_id", "orders", ["client_order_id"])
    op.create_index("ix_orders_signal_id", "orders", ["signal_id"])
    op.create_index("ix_orders_account_created", "orders", ["account", "created_at"])

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account", _S(), nullable=False),
        sa.Column("fill_id", _S(), nullable=False),
        sa.Column("broker_order_id", _S(), nullable=False),
        sa.Column("client_order_id", _S(), nullable=False),
        sa.Column("symbol", _S(), nullable=False),
        sa.Column("side", _S(), nullable=False),
        sa.Column("quantity", _DEC(), nullable=False),
        sa.Column("price", _DEC(), nullable=False),
        sa.Column("commission", _DEC(), nullable=False),
        sa.Column("filled_at", _TS, nullable=False),
        sa.Column("realized_pnl", _DEC(), nullable=False),
        sa.Column("multiplier", _DEC(), nullable=False),
        sa.UniqueConstraint("account", "fill_id", name="uq_fills_account_fill_id"),
    )
    op.create_index("ix_fills_broker_order_id", "fills", ["broker_order_id"])
    op.create_index("ix_fills_filled_at", "fills", ["filled_at"])

    op.create_table(
        "positions",
        sa.Column("account", _S(), primary_key=True),
        sa.Column("symbol", _S(), primary_key=True),
        sa.Column("quantity", _DEC(), nullable=False),
        sa.Column("average_price", _DEC(), nullable=False),
        sa.Column("cost_basis", _DEC(), nullable=False),
        sa.Column("realized_pnl", _DEC(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )

    op.create_table(
        "account_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account", _S(), nullable=False),
        sa.Column("as_of", _TS, nullable=False),
        sa.Column("equity", _DEC(), nullable=False),
        sa.Column("cash", _DEC(), nullable=False),
        sa.Column("state_json", _S(), nullable=False),
    )
    op.create_index("ix_account_snapshots_account_as_of", "account_snapshots", ["account", "as_of"])

    op.create_table(
        "violations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account", _S(), nullable=False),
        sa.Column("rule", _S(), nullable=False),
        sa.Column("detail", _S(), nullable=False),
        sa.Column("numbers_json", _S(), nullable=False),
        sa.Column("signal_id", _S(), nullable=True),
        sa.Column("symbol", _S(), nullable=True),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_violations_account_at", "violations", ["account", "at"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", _S(), nullable=False),
        sa.Column("action", _S(), nullable=False),
        sa.Column("target", _S(), nullable=True),
        sa.Column("detail", _S(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])

    op.create_table(
        "account_controls",
        sa.Column("account", _S(), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("reason", _S(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", _S(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "account_controls",
        "audit_log",
        "violations",
        "account_snapshots",
        "positions",
        "fills",
        "orders",
        "signals",
    ):
        op.drop_table(table)
