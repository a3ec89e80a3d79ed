"""Time exits: an entry's position closed at market at a due time, armed before the entry is sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "time_exits",
        sa.Column("entry_signal_id", sa.String(), primary_key=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("quantity", sa.String(), nullable=False),
        sa.Column("spec", sa.String(), nullable=False),
        sa.Column("origin", sa.String(), nullable=False),
        sa.Column("armed_at", _TS, nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("close_signal_id", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_time_exits_status_due", "time_exits", ["status", "due_at"])


def downgrade() -> None:
    op.drop_index("ix_time_exits_status_due", table_name="time_exits")
    op.drop_table("time_exits")
