"""Managed exits: durable daemon-side exit rules (trailing stops the daemon moves), one row per rule.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "managed_exits",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("rule_json", sa.String(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_managed_exits_account_status", "managed_exits", ["account", "status"])


def downgrade() -> None:
    op.drop_index("ix_managed_exits_account_status", table_name="managed_exits")
    op.drop_table("managed_exits")
