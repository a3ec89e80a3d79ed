"""Child-order and signal-page indexes: an entry's bracket legs and an account's newest signals without history.

- `ix_orders_account_parent`: the legs of an entry (account, parent_order_id), read by the exit follower to
  tell whether a ladder level's take-profit filled; the newest orders of the account missed legs that had
  more than a window of newer orders above them.
- `ix_signals_account_seq`: an account's signals newest first (`GET /api/signals?account=`), walked backwards
  and stopped by the page's LIMIT; the (account, dedup_key) key found them but sorted all of them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_account_parent", "orders", ["account", "parent_order_id"])
    op.create_index("ix_signals_account_seq", "signals", ["account", "seq"])


def downgrade() -> None:
    op.drop_index("ix_signals_account_seq", table_name="signals")
    op.drop_index("ix_orders_account_parent", table_name="orders")
