"""The store's database: engines, URL normalisation, SQLite pragmas, durable vs fast commits, migrations.

`open_engine(url)` returns the engine and its writer (write transactions: SQLite `BEGIN IMMEDIATE`, durable
by default) after bringing the schema to the newest Alembic revision. `Database(url)` owns them between
`open()` and `close()` and hands out short transactions, and a group commit (`daemon.store.commits`) for
the durable writes that many callers make at once; the repositories (`daemon.store.records`,
`daemon.store.repository`, `daemon.store.state`) are built on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, select

from daemon.store.checkpoints import Checkpointer
from daemon.store.commits import GroupCommit, committed
from daemon.store.prepared import Cursor, KeptConnection, Prepared
from daemon.store.turns import Turns

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_WRITE = "traderd_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
# Execution option: this commit is a promise to the outside world (a signal accepted, a control action) and
# must survive a power loss: SQLite synchronous=FULL / PostgreSQL synchronous_commit=on. Other writes (orders,
# fills, statuses) are derived from the broker, which reconciliation re-reads after any crash, so they
# commit without waiting for the disk (still atomic and crash-safe for the process); they become durable at
# the next durable commit or checkpoint. This keeps one fsync per accepted signal instead of four.
_DURABLE = "traderd_durable"
# How long a write waits for another process's write lock before failing. TradingView gives up on a request
# after 3 s and never resends a timeout, but it resends a 5xx: the webhook's 503 must be sent before then.
BUSY_TIMEOUT_MS = 2000
_PG_MIGRATION_LOCK = 0x7472_6164_6572  # advisory lock id ("trader"): one migrator at a time


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3; everything else is passed through."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no alembic.ini) pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get(_WRITE):
        wanted = "FULL" if options.get(_DURABLE) else "NORMAL"
        if conn.info.get("synchronous") != wanted:  # a connection keeps it: one statement less per commit
            conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            conn.info["synchronous"] = wanted
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def open_engine(url: str) -> tuple[Engine, Engine]:
    """(engine, writer) for `url`, with the schema migrated to head. Migrations never delete data."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        database = parsed.database or ""
        if database in ("", ":memory:"):  # one shared connection, or every session sees a new database
            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        elif not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_pre_ping=True)
    engine = create_engine(parsed, **kwargs)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    writer = engine.execution_options(**{_WRITE: True, _DURABLE: True})
    try:
        with writer.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), "head")
    except BaseException:
        engine.dispose()
        raise
    return engine, writer


class Database:
    """One database between `open()` and `close()`; every transaction it hands out is short and its own.

    Synchronous and cheap per call, so it can be used from the asyncio thread.
    """

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self._engine: Engine | None = None
        self._writer: Engine | None = None
        self._commits: GroupCommit | None = None
        self._kept: dict[bool, KeptConnection] = {}  # durable or not -> the prepared statements' connections
        self._checkpoints: Checkpointer | None = None
        self._turns: Turns | None = None  # SQLite: this process's writers, one at a time, first come first served

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("Store is not open")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def open(self) -> None:
        if self._engine is None:
            self._engine, self._writer = open_engine(self.url)
            self._turns = Turns() if self._engine.dialect.name == "sqlite" else None
            self._kept = {durable: KeptConnection(self._engine, durable=durable, turns=self._turns)
                          for durable in (True, False)}
            # An in-memory SQLite database is one connection, which the commit thread may not share.
            threaded = not isinstance(self._engine.pool, StaticPool)
            self._commits = GroupCommit(self._kept[True].transaction, self._kept[False].transaction,
                                        threaded=threaded)
            if threaded and self._engine.dialect.name == "sqlite":
                self._checkpoints = Checkpointer(self._engine)
                self._checkpoints.start()

    def warm(self) -> None:
        """Start the commit thread and open its connections now (an empty transaction of each kind), so the
        first alert after a start does not wait for them."""
        if isinstance(self.engine.pool, StaticPool):
            return  # in memory: no commit thread
        for durable in (False, True):
            committed(self.commits.submit(lambda conn: None, durable=durable), BUSY_TIMEOUT_MS / 1000 + 5)

    def close(self) -> None:
        if self._commits is not None:
            self._commits.close()  # what is queued commits first
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        for kept in self._kept.values():
            kept.close()
        self._kept = {}
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._writer = self._commits = None

    @property
    def commits(self) -> GroupCommit:
        """Where durable writes made by many callers at once are queued, to share a transaction and an fsync."""
        if self._commits is None:
            raise RuntimeError("Store is not open")
        return self._commits

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT 1")).scalar() == 1
        except (SQLAlchemyError, RuntimeError):
            return False

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @property
    def _writer_engine(self) -> Engine:
        if self._writer is None:
            raise RuntimeError("Store is not open")
        return self._writer

    def writing(self, durable: bool = True) -> AbstractContextManager[Session]:
        """A write transaction for code beside the repositories (durable by default). On SQLite it begins
        `IMMEDIATE`: one that read first and then wrote would fail at once, not wait, whenever another
        connection (the commit thread) had committed since its read began."""
        return self._write(durable)

    @contextmanager
    def _write(self, durable: bool = False) -> Iterator[Session]:
        engine = self._writer_engine if durable else self._writer_engine.execution_options(**{_DURABLE: False})
        with self._turns or nullcontext(), Session(engine, expire_on_commit=False) as session, session.begin():
            if not durable and self.dialect == "postgresql":
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield session

    def _prepared_write(self, durable: bool = False) -> AbstractContextManager[Cursor]:
        """A write transaction for prepared statements (`daemon.store.prepared`); not durable by default."""
        if not self._kept:
            raise RuntimeError("Store is not open")
        return self._kept[durable].transaction()

    def _prepared_read(self, statement: Prepared, values: Mapping[str, Any]) -> list[Any]:
        """The rows of a prepared read (through SQLAlchemy's connection, so its events see the query)."""
        with self.engine.connect() as conn:
            return list(conn.exec_driver_sql(statement.sql, statement.parameters(values)).fetchall())

    def _insert(self, model: type[SQLModel]) -> Any:
        """A Core (not ORM-bulk) dialect insert, for `on_conflict_*` (SQLite >= 3.24, PostgreSQL)."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return dialect_insert(model.__table__)  # type: ignore[attr-defined]

    def _locked_row(self, session: Session, model: Any, key: dict[str, Any], defaults: dict[str, Any]) -> Any:
        """The row for `key`, created from `defaults` if missing, locked for the rest of the transaction."""
        stmt = select(model).where(*[getattr(model, k) == v for k, v in key.items()]).with_for_update()
        row = session.exec(stmt).first()
        if row is None:
            session.execute(
                self._insert(model).values(**key, **defaults).on_conflict_do_nothing(index_elements=list(key))
            )
            row = session.exec(stmt).one()
        return row
