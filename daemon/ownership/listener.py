"""Hears the store's `NOTIFY traderd` messages on a connection of its own and hands them over in batches.

PostgreSQL announces each new signal (`signal:<account>`), each change of an account's controls
(`control:<account>`) and each released lease (`lease:<name>`). A burst is handed to `on_batch` once, as
the set of distinct messages. When the connection drops, the listener reconnects with backoff and calls
`on_reconnect` (messages sent meanwhile are lost, so the owner looks at the store again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy.engine import make_url

from daemon.store.leases import CHANNEL

log = logging.getLogger("traderd.ownership")


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL of the store as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Listener:
    def __init__(self, url: str, on_batch: Callable[[set[str]], None], on_reconnect: Callable[[], None]) -> None:
        self._conninfo = libpq_url(url)
        self._on_batch, self._on_reconnect = on_batch, on_reconnect
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    async def start(self, within: float = 10.0) -> None:
        self._tasks = [asyncio.create_task(self._listen(), name="pg-listen"),
                       asyncio.create_task(self._dispatch(), name="pg-dispatch")]
        with contextlib.suppress(TimeoutError):  # not up yet: the owner's periodic look at the store covers it
            await asyncio.wait_for(self.connected.wait(), within)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _listen(self) -> None:
        import psycopg  # the postgres extra; only a shared store gets here

        delay = 0.5
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delay = 0.5
                    if not first:
                        self._on_reconnect()
                    first = False
                    async for message in conn.notifies():
                        self._pending.add(message.payload)
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("listening for store notifications failed (%s); retrying in %.1f s",
                            type(exc).__name__, delay)
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, set()
            try:
                self._on_batch(batch)
            except Exception:
                log.exception("handling store notifications failed")
            await asyncio.sleep(0)  # let a burst gather into the next batch
