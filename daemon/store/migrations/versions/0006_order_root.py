"""Orders: `client_order_root`, the signal's derived id that bracket legs extend, indexed with the account.

A signal's orders and legs are then found by exact match (`account`, `client_order_root`) instead of a
`LIKE 'id%'` scan. The backfill applies `daemon.store.tables.order_root` in SQL: the first 32 characters of
an id that starts "td" followed by 30 lowercase hex digits, else the whole id (a regex on PostgreSQL, GLOB
on SQLite).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_derived(column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    if op.get_bind().dialect.name == "postgresql":
        return column.regexp_match("^td[0-9a-f]{30}")
    return column.op("GLOB")("td" + "[0-9a-f]" * 30 + "*")  # SQLite's GLOB knows character classes


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("client_order_root", sa.String(), nullable=True))
    orders = sa.table("orders", sa.column("client_order_id", sa.String()), sa.column("client_order_root", sa.String()))
    coid = orders.c.client_order_id
    op.execute(orders.update().values(
        client_order_root=sa.case((_is_derived(coid), sa.func.substr(coid, 1, 32)), else_=coid)
    ))
    op.create_index("ix_orders_account_root", "orders", ["account", "client_order_root"])


def downgrade() -> None:
    op.drop_index("ix_orders_account_root", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("client_order_root")
