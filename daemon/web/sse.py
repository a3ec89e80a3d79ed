"""Server-Sent Events for the status page: every bus event marks each open stream dirty; a dirty stream sends
the freshly rendered page body once events settle, so a burst of fills costs one render per viewer, not many.

Each stream first sends the current body (so a reconnect misses nothing), then waits; a comment line every
`keepalive` seconds keeps proxies from closing an idle stream. The browser's `EventSource` reconnects by
itself after the `retry` the stream announces. `close()` (at shutdown) ends every stream promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from daemon.domain import Event

log = logging.getLogger("traderd.web.sse")
RETRY_MS = 2000


def message(event: str, data: str) -> bytes:
    """One SSE message; each line of `data` gets its own `data:` field, as the format requires."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


class EventStreams:
    def __init__(self, render: Callable[[], Awaitable[str]], *, keepalive: float = 15.0,
                 settle: float = 0.05) -> None:
        self.render = render
        self.keepalive = keepalive
        self.settle = settle
        self._dirty: set[asyncio.Event] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def viewers(self) -> int:
        return len(self._dirty)

    def notify(self, event: Event) -> None:
        """Event-bus subscriber; safe from any thread, never blocks."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for flag in list(self._dirty):
            loop.call_soon_threadsafe(flag.set)

    async def close(self, app: web.Application | None = None) -> None:
        self._closing = True
        for flag in list(self._dirty):
            flag.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self._loop = asyncio.get_running_loop()
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        flag = asyncio.Event()
        flag.set()  # the current state at once
        self._dirty.add(flag)
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            while not self._closing:
                try:
                    await asyncio.wait_for(flag.wait(), self.keepalive)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if self._closing:
                    break
                await asyncio.sleep(self.settle)
                flag.clear()
                try:
                    body = await self.render()
                except Exception:
                    log.exception("status page: rendering an update failed")
                    continue
                await response.write(message("update", body))
        except (ConnectionResetError, ConnectionError):
            pass  # the viewer went away
        finally:
            self._dirty.discard(flag)
        with contextlib.suppress(Exception):
            await response.write_eof()
        return response
