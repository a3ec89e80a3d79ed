"""Statements compiled once for a dialect and run straight on the driver's cursor, in the driver's transaction.

The per-signal writes on the event loop (order upsert, fill and ledger, outcome) are a handful of fixed
statements. Run through SQLAlchemy, each execution costs an execution context, cache-key lookup, parameter
processing and events, and each transaction a pool checkout and reset: at 20 accounts per alert, that was
most of a fan-out's time on the loop. Here each statement is compiled once (its SQL text, its parameter order
and its types' bind processors, so stored values are exactly what SQLAlchemy would store), and one connection
per thread is kept for these writes (`KeptConnection`). Driver errors are raised as SQLAlchemy's
(`OperationalError`, ...), so the callers' retry of transient faults works unchanged, and a lost connection is
replaced on the next use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Engine, literal_column
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_SAVEPOINT = "traderd_hot"


def written_in(column: Any, values: Iterable[str]) -> Any:
    """`column IN (...)` over a fixed list of our own constants (statuses), written into the SQL: a list of
    bound values would be re-rendered into the statement on every execution."""
    return column.in_([literal_column("'" + value.replace("'", "''") + "'") for value in values])


class Prepared:
    """One statement for one dialect. `column_keys` names the columns an INSERT sets (all that have no
    server-generated value): a column left out with a Python-side default would be skipped here, so that is
    refused when the statement is built, not discovered in the data."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        assert isinstance(compiled, SQLCompiler)
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError("a prepared statement must set every column that has a Python-side default")
        self.sql = compiled.string
        self.positional = compiled.positional
        names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
        processors: dict[str, Callable[[Any], Any] | None] = {
            name: compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names}
        self._order = [(name, processors[name]) for name in names]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for `values` (every bound name must be present)."""
        bound = [(name, values[name] if process is None else process(values[name])) for name, process in self._order]
        return tuple(v for _, v in bound) if self.positional else dict(bound)


class Cursor:
    """Runs prepared statements inside one transaction of the driver's connection."""

    def __init__(self, raw: Any, dbapi: Any) -> None:
        self._raw = raw
        self._dbapi = dbapi

    def execute(self, statement: Prepared, values: Mapping[str, Any]) -> Any:
        """The driver's cursor after running `statement` (`fetchone()`, `rowcount`)."""
        return self._run(statement.sql, statement.parameters(values))

    def savepoint(self) -> None:
        """Mark a point to undo back to with `release(undo=True)` (one at a time)."""
        self._run(f"SAVEPOINT {_SAVEPOINT}", None)

    def release(self, *, undo: bool) -> None:
        if undo:
            self._run(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", None)
        self._run(f"RELEASE SAVEPOINT {_SAVEPOINT}", None)

    def _run(self, sql: str, parameters: Any) -> Any:
        cursor = self._raw.cursor()
        try:
            if parameters is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, parameters)
        except self._dbapi.Error as exc:
            raise DBAPIError.instance(sql, None, exc, self._dbapi.Error) from exc
        return cursor


class KeptConnection:
    """A write connection per thread, kept open between transactions. Durable: each commit waits for the
    disk (SQLite `synchronous=FULL`; PostgreSQL `synchronous_commit` as configured, on by default). Not
    durable: it does not (SQLite `synchronous=NORMAL`; PostgreSQL `synchronous_commit` off for the
    transaction), for writes that reconciliation re-derives from the broker after a crash."""

    def __init__(self, engine: Engine, *, durable: bool, turns: AbstractContextManager[None] | None = None) -> None:
        """`turns` is the process's queue of SQLite writers (`daemon.store.turns`), None on PostgreSQL."""
        self.engine = engine
        self.durable = durable
        self._turns = turns if turns is not None else nullcontext()
        self.dialect = engine.dialect
        self._dbapi = engine.dialect.loaded_dbapi
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []  # every thread's, to hand back at close
        sqlite = self.dialect.name == "sqlite"
        self._begin = "BEGIN IMMEDIATE" if sqlite else None if durable else "SET LOCAL synchronous_commit TO OFF"

    def close(self) -> None:
        """Hand every thread's connection back to the pool (before the engine is disposed)."""
        with self._lock:
            kept, self._open = self._open, []
        self._local = threading.local()
        for raw in kept:
            raw.close()

    def _connection(self) -> Any:
        raw = getattr(self._local, "raw", None)
        if raw is None:
            raw = self.engine.raw_connection()
            if self.dialect.name == "sqlite":
                driver: Any = raw.driver_connection
                wanted = "FULL" if self.durable else "NORMAL"
                driver.execute(f"PRAGMA synchronous={wanted}")
                raw.info["synchronous"] = wanted  # what the begin of SQLAlchemy's writes checks
            self._local.raw = raw
            with self._lock:
                self._open.append(raw)
        return raw

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """Commits when the block ends, rolls back if it raises; a driver error arrives as SQLAlchemy's."""
        raw = self._connection()
        driver = raw.driver_connection
        with self._turns:
            try:
                try:
                    if self._begin is not None:
                        driver.execute(self._begin)
                    yield Cursor(driver, self._dbapi)
                    driver.commit()
                except self._dbapi.Error as exc:  # BEGIN or COMMIT (statements raise through Cursor already)
                    raise DBAPIError.instance("BEGIN/COMMIT", None, exc, self._dbapi.Error) from exc
            except BaseException as exc:
                self._after_failure(raw, exc)
                raise

    def _after_failure(self, raw: Any, exc: BaseException) -> None:
        """Roll back; a connection that is gone (or cannot roll back) is dropped for a new one next time."""
        original = exc.orig if isinstance(exc, DBAPIError) else exc
        lost = isinstance(original, self._dbapi.Error) and self.dialect.is_disconnect(original, raw, None)
        try:
            raw.driver_connection.rollback()
        except self._dbapi.Error:
            lost = True
        if lost:
            self._local.raw = None
            with self._lock:
                if raw in self._open:
                    self._open.remove(raw)
            raw.invalidate()
            if isinstance(exc, DBAPIError):
                exc.connection_invalidated = True
