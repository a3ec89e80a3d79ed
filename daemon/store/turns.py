"""Write transactions of one process on one SQLite database take turns, in the order they asked.

SQLite lets one connection write at a time. A connection that finds the lock taken waits in SQLite's busy
handler, which sleeps in steps growing to 100 ms and looks again: a writer that keeps committing (the commit
thread under load) can starve another (the event loop's hot writes) for whole seconds, and every wait costs
at least its next sleep. Within the process, writers queue on this lock instead, and each one is woken as
soon as the one before it commits. Other processes still meet at SQLite's lock and busy timeout.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class Turns:
    """A first-come, first-served lock (`with turns: ...`). Not reentrant."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._guard:
            if not self._held and not self._waiting:
                self._held = True
                return
            mine = threading.Lock()
            mine.acquire()
            self._waiting.append(mine)
        mine.acquire()  # released by the writer before us, which hands the turn over (still held)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()  # the turn passes on; _held stays True
            else:
                self._held = False
