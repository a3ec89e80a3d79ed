"""SQLite's log copied into the database file on a thread of its own, so that no writer pays for it.

In WAL mode every commit appends to the log, and the commit that takes the log past 1,000 pages also copies
it into the database and fsyncs it: that writer (the event loop's, or the commit thread's with webhooks
waiting on it) stalls for the whole copy. This thread runs a PASSIVE checkpoint once a second, so the log
seldom gets there: it takes no write lock, writers go on meanwhile, and it copies only what no reader still
needs. The commits keep SQLite's own threshold as the bound on the log's size: a log let grow further is not
given back, and on a full disk it is what must still fit.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger("traderd.store")
EVERY_SECONDS = 1.0


class Checkpointer:
    def __init__(self, engine: Engine, every: float = EVERY_SECONDS) -> None:
        self._engine = engine
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="traderd-checkpoint", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        raw: Any = None
        try:
            raw = self._engine.raw_connection()
            while not self._stop.wait(self._every):
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except self._engine.dialect.loaded_dbapi.Error as exc:  # busy or I/O: tried again next time
                    log.debug("checkpoint skipped: %s", exc)
        except Exception:
            log.exception("the checkpoint thread stopped; commits past the backstop checkpoint themselves")
        finally:
            if raw is not None:
                raw.close()
