"""One ordered queue and one worker task per account: its signals run one at a time, in arrival order.

Each signal runs under the account's lock, so risk checks see the position the earlier order left behind and
cannot race; reconciliation takes the same lock (`exclusive`) to see the store and the broker between two
signals. A worker stuck on one signal longer than `stall_seconds` makes `alive()` false (the watchdog).

A worker runs only for an account this process owns: `start_account` when it gains the account, and
`stop_account` when it loses or hands it over (what is still queued stays in the store for the next owner).
A signal is queued at most once per worker: on a shared store it can be announced more than once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from daemon.domain import Intent
from daemon.metrics import Metrics
from daemon.ownership.fence import NotOwner

log = logging.getLogger("traderd.engine")

Run = Callable[[Intent, bool], Awaitable[None]]  # (intent, recovered): execute one signal to its end
Fenced = Callable[[str, str], None]  # (account, why): a send was refused, this worker has stopped


class AccountWorkers:
    """`fenced` hears of a worker that stopped because its account's fence refused a send: the signals from
    that one on stay in the store, to be resumed in order (each looked up first) by the next owner."""

    def __init__(self, accounts: Iterable[str], run: Run, *, metrics: Metrics, stall_seconds: float,
                 fenced: Fenced | None = None) -> None:
        self._run = run
        self._fenced = fenced
        self._metrics = metrics
        self._stall_seconds = stall_seconds
        self._locks: dict[str, asyncio.Lock] = {account: asyncio.Lock() for account in accounts}
        self._queues: dict[str, asyncio.Queue[tuple[Intent, bool] | None]] = {}  # (intent, recovered)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._busy_since: dict[str, float | None] = {}
        self._queued: dict[str, set[str]] = {}  # signal ids queued or running, per account
        self.running = False

    def start(self, recovered: Iterable[Intent], accounts: Iterable[str] | None = None) -> None:
        """Queue the signals left unfinished by the last run first, then start one worker per account
        (of `accounts`, or all of them)."""
        self.running = True
        chosen = list(self._locks) if accounts is None else list(accounts)
        by_account: dict[str, list[Intent]] = {account: [] for account in chosen}
        for intent in recovered:
            by_account[intent.account].append(intent)
        for account in chosen:
            self.start_account(account, by_account[account])

    def start_account(self, account: str, recovered: Iterable[Intent]) -> None:
        """Start the account's worker with the signals to resume first (each looked up at the broker)."""
        if account in self._tasks:
            return
        self._queues[account] = asyncio.Queue()
        self._busy_since[account] = None
        self._queued[account] = set()
        for intent in recovered:
            self._enqueue(intent, True)
        self._tasks[account] = asyncio.create_task(self._work(account), name=f"worker-{account}")

    def serving(self, account: str) -> bool:
        return account in self._tasks

    def put(self, intent: Intent) -> bool:
        """Queue a signal that the store has already committed; False when it is not this worker's to run."""
        if intent.account not in self._tasks:
            return False
        return self._enqueue(intent, False)

    def _enqueue(self, intent: Intent, recovered: bool) -> bool:
        queued = self._queued[intent.account]
        if intent.signal_id in queued:
            return False
        queued.add(intent.signal_id)
        self._queues[intent.account].put_nowait((intent, recovered))
        return True

    def queued(self, account: str) -> set[str]:
        """Ids queued or running on the account's worker (empty when it has none)."""
        return self._queued.get(account, set())

    async def stop_account(self, account: str, grace: float) -> None:
        """Finish what is queued within `grace` seconds (0: stop at once); what is left stays in the store."""
        task = self._tasks.pop(account, None)
        queue = self._queues.pop(account, None)
        if task is None or queue is None:
            return
        while grace <= 0 and not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)
        await self._wait([task], grace)
        self._busy_since.pop(account, None)
        self._queued.pop(account, None)

    async def stop(self, grace: float) -> None:
        """Finish what is queued within `grace` seconds; what is left stays durable for the next start."""
        self.running = False
        for queue in self._queues.values():
            queue.put_nowait(None)
        await self._wait(list(self._tasks.values()), grace)
        self._tasks.clear()

    @staticmethod
    async def _wait(tasks: list[asyncio.Task[None]], grace: float) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
            log.warning("stopped %d workers mid-signal; their signals resume on the next start", len(pending))

    def alive(self) -> bool:
        now = time.monotonic()
        if any(task.done() for task in self._tasks.values()) and self.running:
            return False
        return all(since is None or now - since < self._stall_seconds for since in list(self._busy_since.values()))

    def exclusive(self, account: str) -> asyncio.Lock:
        return self._locks[account]

    def busy_besides(self, account: str) -> bool:
        """Whether another account's worker has a signal queued or running."""
        return any(ids for other, ids in self._queued.items() if ids and other != account)

    def depth(self, account: str) -> int:
        queue = self._queues.get(account)
        return queue.qsize() if queue else 0

    async def _work(self, account: str) -> None:
        queue, queued = self._queues[account], self._queued[account]  # this term's, whatever comes after
        while True:
            item = await queue.get()
            if item is None:
                return
            intent, recovered = item
            async with self._locks[account]:
                self._busy_since[account] = time.monotonic()
                try:
                    await self._run(intent, recovered)
                except NotOwner as exc:
                    log.warning("%s: %s; signal %s and those after it are left to the account's owner",
                                account, exc, intent.signal_id)
                    if self._tasks.get(account) is asyncio.current_task():
                        del self._tasks[account]
                        self._queues.pop(account, None)
                        self._queued.pop(account, None)
                    if self._fenced is not None:
                        self._fenced(account, str(exc))
                    return
                except Exception:  # never let one signal's fault stop the account: the next one still runs
                    log.exception("%s: signal %s ended with an error; the worker goes on (a restart re-runs "
                                  "it if it is unfinished)", account, intent.signal_id)
                finally:
                    self._busy_since[account] = None
                    # Its outcome is committed: a later announcement finds it finished in the store.
                    queued.discard(intent.signal_id)
                self._metrics.queue_depth.labels(account).set(queue.qsize())
            # With a backlog, queue.get() returns without yielding: give the webhook (acknowledgements)
            # and the other accounts' workers a turn between signals.
            await asyncio.sleep(0)
