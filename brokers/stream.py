"""Reconnecting websocket loop shared by the streaming broker adapters (Alpaca, Tradovate, ProjectX), on aiohttp.

`StreamClient` owns one background task: connect (bounded by `connect_timeout`), run the adapter's
`authenticate` hook (which sends credentials/subscriptions and waits, bounded, for the answer), then hand
every text or binary frame (decoded as UTF-8) to the adapter's `on_message`. An optional `heartbeat` hook
is called every `heartbeat_interval` seconds while connected (Tradovate's `[]`); `idle_timeout` closes a
connection that has been silent that long. When the connection fails or drops, it reconnects after a
bounded exponential backoff with jitter (reset once a session authenticated). `healthy()` is True only
while connected and authenticated; `on_up` / `on_down` let the adapter speed its poller up while the
stream is down and catch up right after it reconnects. A refused authentication (`StreamAuthFailed`) is
logged as an error with the broker's reason and retried at the longest backoff; the adapter keeps
polling meanwhile. A bug in `on_message` is logged and never ends the stream.

`ReconnectingStream` is that loop and state without the socket, for a stream whose websocket a client
library owns (ccxt.pro's in `brokers.ccxt.stream`): it supplies one session, the base retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

Socket = aiohttp.ClientWebSocketResponse


class StreamAuthFailed(Exception):
    """The broker refused the stream's credentials; `reason` is safe to log (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StreamClosed(Exception):
    """The connection ended while the stream waited for an answer."""


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5  # seconds before the first reconnect
    maximum: float = 30.0
    jitter: float = 0.25  # fraction of the delay added at random

    def delay(self, failures: int) -> float:
        base = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        return base + random.uniform(0, base * self.jitter)


def ws_url(base_url: str, path: str) -> str:
    """`https://host/v1` + `/websocket` -> `wss://host/v1/websocket` (`http` -> `ws` for loopback stand-ins)."""
    scheme, sep, rest = base_url.partition("://")
    scheme = {"https": "wss", "http": "ws"}.get(scheme, scheme)
    return f"{scheme}{sep}{rest.rstrip('/')}{path}"


async def receive_text(ws: Socket, within: float) -> str:
    """The next text or binary frame as text, waiting at most `within` seconds; `StreamClosed` if it ends."""
    msg = await ws.receive(timeout=within)
    if msg.type is aiohttp.WSMsgType.TEXT:
        return str(msg.data)
    if msg.type is aiohttp.WSMsgType.BINARY:
        return bytes(msg.data).decode("utf-8")
    raise StreamClosed(f"connection ended ({msg.type.name})")


class ReconnectingStream:
    """The reconnect loop and up/down state every stream shares; a subclass supplies one session (`_run`).

    A session authenticates, calls `_authenticated()` (up), then serves until its connection ends; it
    raises `StreamAuthFailed` for refused credentials. `_loop` retries it after the backoff.
    """

    def __init__(
        self,
        name: str,
        *,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self._on_up, self._on_down = on_up, on_down
        self._task: asyncio.Task[None] | None = None
        self._up = False
        self._down_since = time.monotonic()
        self.connects = 0  # sessions that authenticated
        self.last_error: str | None = None
        self.auth_failed = False

    # -- public --------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._down_since = time.monotonic()
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-stream")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)  # bounded: a stuck socket must not hang shutdown
            if not done:
                log.error("%s: stream task did not stop within 5 s", self.name)
            elif not task.cancelled() and task.exception() is not None:
                log.error("%s: stream task ended with %r", self.name, task.exception())
        self._set_up(False)

    def healthy(self) -> bool:
        return self._up

    def within_grace(self, grace: float) -> bool:
        """Connected, or reconnecting for less than `grace` seconds after a drop (a refused login is not)."""
        return self._up or (not self.auth_failed and self.down_for() < grace)

    def down_for(self) -> float:
        """Seconds since the stream was last up (0 while it is up)."""
        return 0.0 if self._up else time.monotonic() - self._down_since

    async def drop(self) -> None:
        """Close the current connection (it reconnects); for operators and tests."""
        raise NotImplementedError

    # -- loop ----------------------------------------------------------------------------------------------

    def _set_up(self, up: bool) -> None:
        if up == self._up:
            return
        self._up = up
        if not up:
            self._down_since = time.monotonic()
        hook = self._on_up if up else self._on_down
        if hook is not None:
            try:
                hook()
            except Exception:
                log.exception("%s: stream state hook failed", self.name)

    def _authenticated(self, where: str) -> None:
        self.auth_failed, self.last_error = False, None
        self.connects += 1
        log.info("%s: stream connected to %s", self.name, where)
        self._set_up(True)

    async def _run(self) -> None:
        raise NotImplementedError

    async def _loop(self, session: Callable[[], Awaitable[None]]) -> None:
        """Run `session` again and again, with the backoff in between, until cancelled."""
        failures = 0
        while True:
            before = self.connects
            try:
                await session()
                self.last_error = "connection closed by the broker"
            except asyncio.CancelledError:
                raise
            except StreamAuthFailed as exc:
                self.auth_failed, self.last_error = True, exc.reason
                log.error("%s: stream authentication refused: %s; polling continues, retrying in %.0f s",
                          self.name, exc.reason, self.backoff.maximum)
            except (aiohttp.ClientError, StreamClosed, TimeoutError, OSError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("%s: stream error", self.name)
            finally:
                self._set_up(False)
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # Python 3.11: a cancel that lands as an asyncio.timeout fires surfaces as TimeoutError,
                # which the except above swallowed; stop() is waiting for us.
                raise asyncio.CancelledError
            failures = 1 if self.connects > before else failures + 1
            delay = self.backoff.maximum if self.auth_failed else self.backoff.delay(failures)
            log.warning("%s: stream down (%s); reconnecting in %.1f s", self.name, self.last_error, delay)
            await asyncio.sleep(delay)


class StreamClient(ReconnectingStream):
    """One broker websocket on aiohttp: `start()`, `stop()`, `healthy()`; see the module docstring."""

    def __init__(
        self,
        name: str,
        url: Callable[[], str],
        *,
        authenticate: Callable[[Socket], Awaitable[None]],
        on_message: Callable[[str], Awaitable[None]],
        heartbeat: Callable[[Socket], Awaitable[None]] | None = None,
        heartbeat_interval: float = 0.0,
        idle_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        ws_heartbeat: float | None = None,
        backoff: Backoff | None = None,
        on_up: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name, connect_timeout=connect_timeout, backoff=backoff, on_up=on_up, on_down=on_down)
        self._url = url
        self._authenticate, self._on_message = authenticate, on_message
        self._heartbeat, self.heartbeat_interval = heartbeat, heartbeat_interval
        self.idle_timeout, self.ws_heartbeat = idle_timeout, ws_heartbeat
        self._ws: Socket | None = None

    async def drop(self) -> None:
        """Close the current connection (it reconnects); for operators and tests."""
        if self._ws is not None:
            await self._ws.close()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self._loop(lambda: self._session(session))

    async def _session(self, session: aiohttp.ClientSession) -> None:
        """One connection, from connect to close."""
        url = self._url()
        async with asyncio.timeout(self.connect_timeout):
            ws = await session.ws_connect(url, heartbeat=self.ws_heartbeat, autoping=True)
        self._ws = ws
        pinger: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._authenticate(ws)
            self._authenticated(url)
            if self._heartbeat is not None and self.heartbeat_interval > 0:
                pinger = asyncio.create_task(self._beat(ws), name=f"{self.name}-heartbeat")
            while True:
                text = await receive_text(ws, self.idle_timeout)
                try:
                    await self._on_message(text)
                except Exception:
                    log.exception("%s: stream message handler failed on %.200s", self.name, text)
        finally:
            self._ws = None
            if pinger is not None:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pinger
            was_up = self.healthy()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
            if was_up:
                self._set_up(False)

    async def _beat(self, ws: Socket) -> None:
        assert self._heartbeat is not None
        while not ws.closed:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self._heartbeat(ws)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return
