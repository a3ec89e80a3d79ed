"""How an adapter hears of its fills and order changes: polling, an optional stream over it, one report gate.

Every real adapter runs the same lifecycle: `connect()` starts a `Poller` (and the broker's websocket
stream, when it has one and it is on), `close()` stops both, and `healthy()` includes both. `Feed` is that
lifecycle: while the stream is up the poller runs at its slower `streaming` interval (reconciling what
the stream missed); while it is down, at its normal one; the adapter wires the stream's up/down hooks to
`Feed.wake` where polling should take over (or catch up) at once. A stream refused by the broker, or down
past the adapter's grace period, makes the feed unhealthy.

Both paths report through one `ReportGate`, so each fill reaches the engine once (keyed by the broker's
own fill id, marked after the handler took it: a failed handler sees it again on the next round) and an
order's (status, filled quantity) only moves forward (a stale view that raced a newer one is dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

from brokers.base import BrokerError, BrokerReport
from brokers.http import Throttled
from brokers.stream import ReconnectingStream
from daemon.domain import Fill, Order, OrderStatus

log = logging.getLogger(__name__)

OrderState = tuple[OrderStatus, Decimal]


class Poller:
    """An adapter's background polling of orders and fills: started by `connect()`, stopped by `close()`,
    part of `healthy()`. A failed round is logged and retried on the next tick; a 429 waits as long as the
    broker asks; a bug in a report handler is logged and never stops fills from flowing."""

    def __init__(self, name: str, poll_once: Callable[[], Awaitable[None]], interval: Callable[[], float]) -> None:
        self.name = name
        self.poll_once = poll_once
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # rounds run (ok or failed): shows whether a report came by polling or by the stream

    def wake(self) -> None:
        """Poll now rather than at the end of the interval: a stream went down (polling takes over at once)
        or came back (catch up on what it missed)."""
        self._wake.set()

    def start(self) -> None:
        if self.interval() > 0 and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name=f"{self.name}-poll")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def healthy(self) -> bool:
        return self._task is None or not self._task.done()

    async def _run(self) -> None:
        while True:
            pause = self.interval()
            try:
                await self.poll_once()
            except Throttled as exc:
                log.warning("%s: polling throttled for %.0f s", self.name, exc.retry_after)
                pause = max(pause, exc.retry_after)
            except BrokerError as exc:
                log.warning("%s: polling failed: %s", self.name, exc.reason)
            except Exception:
                log.exception("%s: polling error", self.name)
            self.rounds += 1
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError  # a cancel swallowed as a timeout inside poll_once (Python 3.11)
            with contextlib.suppress(TimeoutError):  # asyncio.timeout, not wait_for: 3.11's may swallow a cancel
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            self._wake.clear()


class Feed:
    """A poller with an optional stream over it, started, stopped and judged together (module docstring).

    `interval` and `streaming` are read on every round, so a changed setting applies at the next one; set
    `stream` (a `brokers.stream.ReconnectingStream` whose hooks call `wake`) before `start()`.
    """

    def __init__(
        self,
        name: str,
        poll_once: Callable[[], Awaitable[None]],
        interval: Callable[[], float],
        streaming: Callable[[], float],
    ) -> None:
        self._interval, self._streaming = interval, streaming
        self.poller = Poller(name, poll_once, self.pace)
        self.stream: ReconnectingStream | None = None

    def pace(self) -> float:
        """Seconds between polls: the slower `streaming` interval while the stream is up."""
        return self._streaming() if self.stream is not None and self.stream.healthy() else self._interval()

    def wake(self) -> None:
        self.poller.wake()

    def start(self) -> None:
        self.poller.start()
        if self.stream is not None:
            self.stream.start()

    async def stop(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        await self.poller.stop()

    def healthy(self, grace: float) -> bool:
        """Polling alive, and the stream (if any) up or reconnecting for less than `grace` seconds."""
        return self.poller.healthy() and (self.stream is None or self.stream.within_grace(grace))


def is_stale(known: OrderState | None, state: OrderState) -> bool:
    """True when `state` is the same as or behind `known` (less filled, or open again after finishing)."""
    return known is not None and (known == state or state[1] < known[1] or (
        not known[0].is_open and state[0].is_open))


class ReportGate:
    """The one way an adapter's fills and order changes reach the engine (module docstring)."""

    def __init__(self, emit: Callable[[BrokerReport], Awaitable[None]]) -> None:
        self._emit = emit
        self._lock = asyncio.Lock()
        self.seen_fills: set[str] = set()  # broker fill ids already handed over
        self.known: dict[str, OrderState] = {}  # broker order id -> last state reported (or told to a caller)

    async def fill(self, fill: Fill) -> bool:
        """Hand a fill over unless the stream or the poller already did; True if this call did."""
        async with self._lock:
            if fill.fill_id in self.seen_fills:
                return False
            await self._emit(BrokerReport(fill=fill))
            self.seen_fills.add(fill.fill_id)
            return True

    async def order(self, order: Order) -> bool:
        """Hand a status change over once; an older view never moves it back. True if this call did."""
        async with self._lock:
            state = (order.status, order.filled_quantity)
            if is_stale(self.known.get(order.broker_order_id), state):
                return False
            self.known[order.broker_order_id] = state
            await self._emit(BrokerReport(order=order))
            return True

    def remember(self, order: Order) -> None:
        """What a caller was just told (placement, cancel, modify) is not news for the stream or the poller."""
        state = (order.status, order.filled_quantity)
        if not is_stale(self.known.get(order.broker_order_id), state):
            self.known[order.broker_order_id] = state
