"""History indexes: the reads made per signal and by the periodic jobs find their rows without walking history.

- `ix_orders_status_account`: the open orders (of an account), read per exit check and reconciliation;
  `ix_orders_account_created` walked every order the account ever had to find them.
- `ix_fills_account_filled_at`: an account's fills since a time (the PDT window, reconciliation, P&L);
  the time index alone crossed every account's fills, the (account, fill_id) key every fill of the account.
- `ix_signals_status_account` replaces `ix_signals_status`: the unfinished signals of an account (an owner
  adopting it) as well as of all accounts (recovery at start).
- `ix_violations_at`: the newest violations over every account.
- `ix_outbox_status_transport` replaces `ix_outbox_pending` (transport, status, id): the pending alerts of
  every transport (the backlog the status page and metrics show) as well as of one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_orders_status_account", "orders", ["status", "account"])
    op.create_index("ix_fills_account_filled_at", "fills", ["account", "filled_at"])
    op.create_index("ix_signals_status_account", "signals", ["status", "account"])
    op.drop_index("ix_signals_status", table_name="signals")
    op.create_index("ix_violations_at", "violations", ["at"])
    op.create_index("ix_outbox_status_transport", "outbox", ["status", "transport", "id"])
    op.drop_index("ix_outbox_pending", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_pending", "outbox", ["transport", "status", "id"])
    op.drop_index("ix_outbox_status_transport", table_name="outbox")
    op.drop_index("ix_violations_at", table_name="violations")
    op.create_index("ix_signals_status", "signals", ["status"])
    op.drop_index("ix_signals_status_account", table_name="signals")
    op.drop_index("ix_fills_account_filled_at", table_name="fills")
    op.drop_index("ix_orders_status_account", table_name="orders")
