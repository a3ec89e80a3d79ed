"""Group commit: one writer thread runs the store's hot writes, and queued durable ones share one fsync.

Callers (concurrent webhook requests, the account workers) hand `submit` a function of a cursor and get
a future. The thread takes everything queued at that moment and runs it in at most two transactions: the
fast writes (outcomes, orders, fills: derived from the broker, which reconciliation re-reads after a crash)
in one that does not wait for the disk, then the durable ones (accepted signals: promises) in one that does
(SQLite `synchronous=FULL`, PostgreSQL `synchronous_commit=on`). Only after a transaction has committed are
its futures resolved: a caller learns of its write after the commit that holds it, so "accepted means
durable" holds for each, while a burst of N costs one fsync instead of N. One thread writes, so these writes
never wait on each other's locks, and no fsync blocks the event loop.

A function that raises rolls its transaction back; its writes are then run again one per transaction, so a
bad write fails only its own caller. A fault of the transaction itself (disk full, lock timeout) fails every
caller in it, with nothing committed. Futures of one kind resolve in submission order.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from daemon.store.prepared import Cursor

log = logging.getLogger("traderd.store")
T = TypeVar("T")
Work = Callable[[Cursor], Any]
Begin = Callable[[], AbstractContextManager[Cursor]]
Item = tuple[Work, "Future[Any]", bool]  # (work, its future, durable)

MAX_BATCH = 512  # bounds one transaction's size (and the wait of its first caller) under any backlog
# How long a caller waits for its commit. Under the webhook's answer deadline: TradingView gives up after 3 s
# and never resends a timeout, but resends a 503, which a caller that waited this long answers.
COMMIT_WAIT_SECONDS = 2.5
# How long a worker waits for its signal's outcome to commit. No client waits on it, and a wait that gives up
# executes the signal again (looked up at the broker first), so it is long enough for any backlog the commit
# thread clears, and well under the watchdog's stall limit.
OUTCOME_WAIT_SECONDS = 10.0


class CommitWaitExpired(OperationalError):
    """The commit did not report back in time (a transient fault): the write may still commit, so a resend
    is answered as a duplicate and a re-executed signal finds its order."""

    def __init__(self, within: float) -> None:
        super().__init__(None, None, TimeoutError(f"the commit did not report back within {within:g} s"))


def committed(future: Future[T], within: float = COMMIT_WAIT_SECONDS) -> T:
    """Block until the write is committed (bounded); its error is raised here."""
    try:
        return future.result(timeout=within)
    except FutureTimeout:
        raise CommitWaitExpired(within) from None


async def written(future: Future[T], within: float = COMMIT_WAIT_SECONDS) -> T:
    """`committed` for the event loop, which serves other work while it waits (bounded the same way)."""
    try:
        # Shielded: a wait that gives up must not cancel the write, which the commit thread still resolves.
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), within)
    except TimeoutError:
        raise CommitWaitExpired(within) from None


class GroupCommit:
    """`durable()` and `fast()` each open one write transaction of their kind. `threaded=False` runs each
    write in the caller's thread instead (an in-memory SQLite database is one connection, not to be shared)."""

    def __init__(self, durable: Begin, fast: Begin, *, threaded: bool = True, max_batch: int = MAX_BATCH) -> None:
        self._begin = {True: durable, False: fast}
        self._threaded = threaded
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[Cursor], T], *, durable: bool = True) -> Future[T]:
        """Queue `work`; the future has its result once the transaction that ran it has committed."""
        future: Future[T] = Future()
        if not self._threaded:
            self._run_alone((work, future, durable))
            return future
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="traderd-commit", daemon=True)
                self._thread.start()
            self._queue.put((work, future, durable))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread (bounded by `timeout`)."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the commit thread did not stop within %.0f s", timeout)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(more)
            # Fast writes first: the workers waiting on them should not wait for the disk as well.
            for durable in (False, True):
                kind = [entry for entry in batch if entry[2] is durable]
                if kind:
                    self._run(kind)

    def _run(self, batch: list[Item]) -> None:
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        results: list[Any] = []
        in_write = False
        try:
            with self._begin[batch[0][2]]() as conn:
                for work, _, _ in batch:
                    in_write = True
                    results.append(work(conn))
                    in_write = False
        except Exception as exc:
            if in_write:  # one write failed: find it; the others commit without it
                for entry in batch:
                    self._run_alone(entry)
                return
            for _, future, _ in batch:  # begin or commit failed: each write would fail again the same way
                future.set_exception(exc)
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            future.set_result(result)

    def _run_alone(self, item: Item) -> None:
        work, future, durable = item
        try:
            with self._begin[durable]() as conn:
                result = work(conn)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
