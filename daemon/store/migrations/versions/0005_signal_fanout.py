"""Signals: a fan-out child points to its parent signal and keeps the route it took (multiplier, symbol map).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("route_json", sa.String(), nullable=True))
        batch.create_index("ix_signals_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.drop_index("ix_signals_parent_id")
        batch.drop_column("route_json")
        batch.drop_column("parent_id")
