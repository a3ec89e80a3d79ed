"""Which store errors are transient faults (disk full, I/O error, locked, connection lost), and the backoff
to retry a write through them: a failed write is tried again, in order, until the store takes it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger("traderd.store")
T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 2.0


def is_transient(exc: BaseException) -> bool:
    """A fault of the disk or the connection, which passes; not a bug or a constraint violation, which stays."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def describe(exc: BaseException) -> str:
    """One line for the log: the driver's message without the statement and its parameters."""
    original = getattr(exc, "orig", None)
    return f"{type(original or exc).__name__}: {str(original or exc).splitlines()[0][:200]}"


class Backoff:
    """Delays doubling from `first` up to `cap` seconds: bounded, so recovery is seen within `cap`."""

    def __init__(self, first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> None:
        self.first, self.cap = first, cap
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempts)
        self.attempts += 1
        return delay


async def until_written(write: Callable[[], T], what: str, backoff: Backoff | None = None) -> T:
    """Run the synchronous store `write` until it succeeds; transient faults are retried with backoff."""
    backoff = backoff or Backoff()
    while True:
        try:
            result = write()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff.next_delay()
            log.warning("the store did not take %s (%s); retrying in %.2f s", what, describe(exc), delay)
            await asyncio.sleep(delay)
            continue
        if backoff.attempts:
            log.warning("the store took %s after %d retries", what, backoff.attempts)
        return result
