"""Alembic environment for the traderd store: runs migrations on a connection handed in by `daemon.store.database`.

At runtime `Database.open()` builds the Alembic `Config` in code and passes an open connection through
`config.attributes["connection"]`; no alembic.ini is involved. For development (`alembic revision`,
`alembic upgrade` by hand) a URL can come from `-x url=...`, the `sqlalchemy.url` option or the
`TRADERD_DATABASE_URL` environment variable.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlmodel import SQLModel

# Registers the tables on SQLModel.metadata for autogenerate.
import daemon.store.tables
import daemon.store.time_exits  # noqa: F401
from daemon.store.database import normalize_url

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("TRADERD_DATABASE_URL", "")
    if not url:
        raise RuntimeError("no database URL: pass -x url=..., set sqlalchemy.url or TRADERD_DATABASE_URL")
    return normalize_url(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER goes through batch mode
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
