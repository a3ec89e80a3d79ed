"""Leases: which process executes each account on a shared store; PostgreSQL notifies new signals and controls.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

On PostgreSQL, triggers send `NOTIFY traderd` with `signal:<account>` after a signal is inserted and
`control:<account>` after an account's controls change, so the daemon owning the account hears of a signal
accepted by another daemon at once. SQLite gets the table only (one daemon per store, held by a lock file).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)

_NOTIFY = """
CREATE OR REPLACE FUNCTION traderd_notify_{what}() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('traderd', '{what}:' || NEW.account);
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", _TS, nullable=True),
        sa.Column("renewed_at", _TS, nullable=True),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("release_requested", sa.Boolean(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for what, table, when in (("signal", "signals", "INSERT"), ("control", "account_controls", "INSERT OR UPDATE")):
            op.execute(_NOTIFY.format(what=what))
            op.execute(f"CREATE TRIGGER traderd_{what}_notify AFTER {when} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION traderd_notify_{what}()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for what, table in (("signal", "signals"), ("control", "account_controls")):
            op.execute(f"DROP TRIGGER IF EXISTS traderd_{what}_notify ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS traderd_notify_{what}()")
    op.drop_table("leases")
