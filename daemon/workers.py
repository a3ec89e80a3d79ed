"""One ordered queue and one worker task per account: its signals run one at a time, in arrival order.

Each signal runs under the account's lock, so risk checks see the position the earlier order left behind and
cannot race; reconciliation takes the same lock (`exclusive`) to see the store and the broker between two
signals. A worker stuck on one signal longer than `stall_seconds` makes `alive()` false (the watchdog).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from daemon.domain import Intent
from daemon.metrics import Metrics

log = logging.getLogger("traderd.engine")

Run = Callable[[Intent, bool], Awaitable[None]]  # (intent, recovered): execute one signal to its end


class AccountWorkers:
    def __init__(self, accounts: Iterable[str], run: Run, *, metrics: Metrics, stall_seconds: float) -> None:
        self._run = run
        self._metrics = metrics
        self._stall_seconds = stall_seconds
        self._locks: dict[str, asyncio.Lock] = {account: asyncio.Lock() for account in accounts}
        self._queues: dict[str, asyncio.Queue[tuple[Intent, bool] | None]] = {}  # (intent, recovered)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._busy_since: dict[str, float | None] = {}
        self.running = False

    def start(self, recovered: Iterable[Intent]) -> None:
        """Queue the signals left unfinished by the last run first, then start one worker per account."""
        for account in self._locks:
            self._queues[account] = asyncio.Queue()
            self._busy_since[account] = None
        for intent in recovered:
            self._queues[intent.account].put_nowait((intent, True))
        for account in self._locks:
            self._tasks[account] = asyncio.create_task(self._work(account), name=f"worker-{account}")
        self.running = True

    def put(self, intent: Intent) -> None:
        """Queue a signal that the store has already committed."""
        self._queues[intent.account].put_nowait((intent, False))

    async def stop(self, grace: float) -> None:
        """Finish what is queued within `grace` seconds; what is left stays durable for the next start."""
        self.running = False
        for queue in self._queues.values():
            queue.put_nowait(None)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks.values(), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
                log.warning("stopped %d workers mid-signal; their signals resume on the next start",
                            len(pending))
        self._tasks.clear()

    def alive(self) -> bool:
        now = time.monotonic()
        if any(task.done() for task in self._tasks.values()) and self.running:
            return False
        return all(since is None or now - since < self._stall_seconds for since in self._busy_since.values())

    def exclusive(self, account: str) -> asyncio.Lock:
        return self._locks[account]

    def depth(self, account: str) -> int:
        queue = self._queues.get(account)
        return queue.qsize() if queue else 0

    async def _work(self, account: str) -> None:
        queue = self._queues[account]
        while True:
            item = await queue.get()
            if item is None:
                return
            intent, recovered = item
            async with self._locks[account]:
                self._busy_since[account] = time.monotonic()
                try:
                    await self._run(intent, recovered)
                finally:
                    self._busy_since[account] = None
                self._metrics.queue_depth.labels(account).set(queue.qsize())
            # With a backlog, queue.get() returns without yielding: give the webhook (acknowledgements)
            # and the other accounts' workers a turn between signals.
            await asyncio.sleep(0)
