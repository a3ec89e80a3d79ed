"""The engine: accepts intents durably, runs them on one ordered worker per account, applies account controls.

Intake goes one way: the webhook, strategies, chat, the API and the risk monitor all hand an `Intent` to
`Engine.accept`, the only writer of an accepted signal; it returns once the store has committed it, and the
account's worker (`daemon.workers`) executes it afterwards (`daemon.execution`). At start, the signals
accepted before the last stop are queued again first, in arrival order.

On a shared store (`shared=True`: several daemons on one PostgreSQL database) a daemon runs workers only for
the accounts it owns (`adopt` when it gains one, `relinquish` when it loses it), and `accept` only commits:
the account's owner, whichever daemon that is, hears of the signal (`feed`) and queues it in store order.
Every send is fenced (`fence(account)` raises `NotOwner` unless this process proves it owns the account).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from brokers.base import Broker, BrokerReport
from daemon.domain import Action, Event, Intent, SignalStatus, utcnow
from daemon.entry_hooks import EntryShapes
from daemon.events import EventBus
from daemon.execution import Executor, Outcome
from daemon.fanout import FanoutAcceptance
from daemon.metrics import Metrics
from daemon.ownership.fence import no_fence
from daemon.risk.engine import RiskEngine
from daemon.store.commits import COMMIT_WAIT_SECONDS, CommitWaitExpired
from daemon.store.feed import SignalFeed
from daemon.store.repository import FanoutChild, Store
from daemon.workers import AccountWorkers, Fenced

log = logging.getLogger("traderd.engine")
T = TypeVar("T")


class Acceptance(NamedTuple):
    """What `Engine.accept` made of an intent."""

    signal_id: str  # the intent's own id when new; for a duplicate, the id the signal was first accepted under
    is_new: bool  # False: a duplicate, nothing was written or queued


class Engine:
    """`paused` and `locked` are changed in place only: the executor reads these same sets at each risk check."""

    def __init__(
        self,
        *,
        store: Store,
        brokers: Mapping[str, Broker],
        risk: RiskEngine,
        events: EventBus,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
        stall_seconds: float = 30.0,
        groups: Mapping[str, Sequence[str]] | None = None,
        shared: bool = False,
        fence: Callable[[str], None] = no_fence,
        fenced: Fenced | None = None,
        shapes: EntryShapes | None = None,
    ) -> None:
        self.store = store
        self.shared = shared
        self._feed = SignalFeed(store)
        self.brokers = dict(brokers)
        self.risk = risk
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.paused: set[str] = set()
        self.locked: set[str] = set()
        self.groups = {name: [a for a in members if a in self.brokers] for name, members in (groups or {}).items()}
        self._executor = Executor(store=store, brokers=self.brokers, risk=risk, events=events, metrics=metrics,
                                  clock=clock, paused=self.paused, locked=self.locked,
                                  exclusive=lambda account: self._workers.exclusive(account), fence=fence,
                                  shapes=shapes, others_busy=lambda account: self._workers.busy_besides(account))
        self._workers = AccountWorkers(self.brokers, self._executor.run, metrics=metrics,
                                       stall_seconds=stall_seconds, fenced=fenced)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self, accounts: Iterable[str] | None = None) -> None:
        """Load controls, queue unfinished signals in arrival order, start one worker per account of
        `accounts` (default: all; `()` starts none, for accounts to be adopted as they are owned). On a
        shared store nothing is recovered here: each account's signals resume when it is adopted, and those
        of accounts this daemon does not know are another daemon's."""
        self.reload_controls()
        for account, broker in self.brokers.items():
            broker.set_report_handler(self.report_handler(account))
        recovered = []
        for intent, _status in [] if self.shared else self.store.unfinished_signals():
            if intent.account in self.brokers:
                recovered.append(intent)
            else:
                self.store.set_signal_status(intent.signal_id, SignalStatus.FAILED,
                                             f"account {intent.account} is no longer configured")
        chosen = list(self.brokers) if accounts is None else list(accounts)
        recovered = [intent for intent in recovered if intent.account in chosen]
        if recovered:
            log.info("re-queued %d signals accepted before the last stop", len(recovered))
        self._workers.start(recovered, chosen)
        for account in chosen:  # exits to follow of entries that filled while the daemon was away
            self._executor.follow.soon(account)

    def adopt(self, account: str) -> int:
        """Start executing an account this process now owns: its controls as stored, then its unfinished
        signals (each looked up at the broker first: the last owner may have sent it). Returns how many."""
        self.reload_controls(account)
        recovered = self._feed.intents([sid for _, sid in self._feed.unfinished_ids([account])])
        self._workers.start_account(account, recovered)
        self._executor.follow.reload()  # the account's last owner may have left plans to follow
        self._executor.managed.load(account)  # and stops to trail
        self._executor.follow.soon(account)
        if recovered:
            log.info("%s: resuming %d unfinished signals", account, len(recovered))
        return len(recovered)

    async def relinquish(self, account: str, grace: float) -> None:
        """Stop executing an account: the signal in hand may finish within `grace`, the rest stays stored."""
        await self._workers.stop_account(account, grace)

    def serving(self, account: str) -> bool:
        return self._workers.serving(account)

    def feed(self, accounts: Iterable[str]) -> int:
        """Queue the unfinished signals of those `accounts` this process executes, in store order."""
        mine = [account for account in accounts if self._workers.serving(account)]
        fresh = [sid for account, sid in self._feed.unfinished_ids(mine)
                 if sid not in self._workers.queued(account)]
        queued = 0
        for intent in self._feed.intents(fresh):
            queued += self._workers.put(intent)
        return queued

    def reload_controls(self, account: str | None = None) -> None:
        """Pause and lock as the store holds them (another daemon may have changed them)."""
        controls = self.store.controls()
        for name in [account] if account is not None else list(self.brokers):
            control = controls.get(name)
            (self.paused.add if control is not None and control.paused else self.paused.discard)(name)
            (self.locked.add if control is not None and control.locked else self.locked.discard)(name)

    async def stop(self, grace: float) -> None:
        """Finish what is queued within `grace` seconds; what is left stays durable for the next start."""
        await self._workers.stop(grace)
        await self._executor.exits.close()
        await self._executor.follow.close()

    async def mark_exits(self) -> None:
        """Move the stops the daemon trails to their brokers' current prices (a periodic job)."""
        await self._executor.managed.poll([account for account in self.brokers if self._workers.serving(account)])

    def alive(self) -> bool:
        """False when a worker has died or been stuck on one signal longer than `stall_seconds` (watchdog)."""
        return self._workers.alive()

    def exclusive(self, account: str) -> asyncio.Lock:
        """The account's worker lock: hold it to see the store and the broker between two signals."""
        return self._workers.exclusive(account)

    def queue_depth(self, account: str) -> int:
        return self._workers.depth(account)

    def report_handler(self, account: str) -> Callable[[BrokerReport], Any]:
        """What the account's broker calls with each order update and fill it reports. On a shared store only
        the account's owner records them: two recorders would race on the rule state a fill moves."""
        record = self._executor.report_handler(account)
        if not self.shared:
            return record

        async def owned(report: BrokerReport) -> None:
            if self._workers.serving(account):
                await record(report)

        return owned

    # ---- intake ----------------------------------------------------------------------------------

    def accept(self, intent: Intent, raw: dict[str, Any] | None = None, *,
               also_known_as: Sequence[str] = ()) -> Acceptance:
        """Commit the intent durably and queue it on its account's worker, unless it is a known signal.

        When this returns the signal survives a crash: a restart resumes it, never loses or doubles it. A
        signal is known by (account, dedup_key); `also_known_as` names other keys the same signal may have
        been stored under (a body hash's previous time bucket), which are looked up and never stored. `raw`
        is the payload as received, without its secret. A store error propagates with nothing committed
        (or, if the commit itself was cut off, a resend is answered as a duplicate).
        """
        existing = self.known_signal(intent.account, also_known_as)
        if existing is not None:
            return Acceptance(existing, False)
        signal_id, is_new = self.store.record_signal(intent, raw)
        if is_new and not self.shared:  # shared: the store announces it to the account's owner
            self._workers.put(intent)
        return Acceptance(signal_id, is_new)

    def accept_fanout(self, parent: Intent, children: Sequence[FanoutChild], raw: dict[str, Any] | None = None,
                      *, also_known_as: Sequence[str] = ()) -> FanoutAcceptance:
        """Commit an alert and its one child per account in one transaction, then queue each child on its
        account's worker (skipped children are recorded, not queued). A known parent is a duplicate for all."""
        existing = self.known_signal(parent.account, also_known_as)
        if existing is not None:
            return FanoutAcceptance(existing, False)
        parent_id, is_new, fresh = self.store.record_fanout(parent, raw, children)
        self._fanout_committed(children, parent_id, is_new, fresh)
        return FanoutAcceptance(parent_id, is_new, list(zip(children, fresh, strict=True)) if is_new else [])

    async def submit(self, intent: Intent, raw: dict[str, Any] | None = None, *,
                     also_known_as: Sequence[str] = (), within: float = COMMIT_WAIT_SECONDS) -> Acceptance:
        """`accept` for the event loop: the commit is shared with concurrent submissions (one fsync for a
        burst) and done off the loop, which serves other requests meanwhile. Returns once committed.

        The signal is queued on its worker once committed, before this returns (so the answer is written
        before the worker runs it); if this wait gives up (`within` seconds, then `CommitWaitExpired`) or is
        cancelled, it is queued when the commit lands, and a resend is answered as a duplicate.
        """
        existing = self.known_signal(intent.account, also_known_as)
        if existing is not None:
            return Acceptance(existing, False)
        pending = asyncio.wrap_future(self.store.submit_signal(intent, raw))
        signal_id, is_new = await self._committed(pending, within,
                                                  lambda result: self._queue([intent] if result[1] else []))
        return Acceptance(signal_id, is_new)

    async def submit_fanout(self, parent: Intent, children: Sequence[FanoutChild],
                            raw: dict[str, Any] | None = None, *, also_known_as: Sequence[str] = (),
                            within: float = COMMIT_WAIT_SECONDS) -> FanoutAcceptance:
        """`accept_fanout` for the event loop, on the group commit like `submit`."""
        existing = self.known_signal(parent.account, also_known_as)
        if existing is not None:
            return FanoutAcceptance(existing, False)
        pending = asyncio.wrap_future(self.store.submit_fanout(parent, raw, children))
        parent_id, is_new, fresh = await self._committed(pending, within,
                                                         lambda result: self._fanout_committed(children, *result))
        return FanoutAcceptance(parent_id, is_new, list(zip(children, fresh, strict=True)) if is_new else [])

    def _fanout_committed(self, children: Sequence[FanoutChild], parent_id: str, is_new: bool, fresh: list[bool]
                          ) -> None:
        """Announce a new fan-out (its report starts following the children), then queue its children."""
        if not is_new:
            return
        listed = [{"account": c.intent.account, "signal_id": c.intent.signal_id, "new": new,
                   "dedup_key": c.intent.dedup_key} for c, new in zip(children, fresh, strict=True)]
        # Queued first: the report that follows the children can then tell which ones this process runs.
        self._queue([c.intent for c, new in zip(children, fresh, strict=True)
                     if new and c.status is SignalStatus.PENDING])
        self.events.publish(Event(kind="signal_accepted", account=None, summary=f"fan-out {parent_id} to "
                                  f"{len(children)} accounts", data={"fanout": parent_id, "children": listed}))

    def _queue(self, intents: Iterable[Intent]) -> None:
        if not self.shared:  # shared: the store announces new signals to their account's owner
            for intent in intents:
                self._workers.put(intent)

    @staticmethod
    def _on_commit(pending: asyncio.Future[T], act: Callable[[T], None]) -> None:
        """Act on a commit once it lands, whoever is still waiting for it. Nothing committed: the caller was
        (or will be) told."""
        def landed(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                act(done.result())

        pending.add_done_callback(landed)

    @classmethod
    async def _committed(cls, pending: asyncio.Future[T], within: float, act: Callable[[T], None]) -> T:
        """Wait for the commit, then `act` on it (queue its signals) here, so that the caller's answer goes
        out before the workers run them; a wait that gives up or is cancelled leaves `act` to the commit."""
        try:
            result = await asyncio.wait_for(asyncio.shield(pending), within)
        except TimeoutError:
            cls._on_commit(pending, act)
            raise CommitWaitExpired(within) from None
        except asyncio.CancelledError:
            cls._on_commit(pending, act)
            raise
        act(result)
        return result

    def known_signal(self, account: str, dedup_keys: Iterable[str]) -> str | None:
        """The id of a signal already accepted for `account` under one of `dedup_keys` (first match), or None."""
        for key in dedup_keys:
            existing = self.store.signal_exists(account, key)
            if existing:
                return existing
        return None

    def is_queued(self, account: str, signal_id: str) -> bool:
        """Whether this process's worker has the signal queued or is still running it (its follow-up work,
        such as resizing the resting exits, comes after its outcome is written)."""
        return signal_id in self._workers.queued(account)

    def outcome_of_queued(self, account: str, signal_id: str) -> asyncio.Future[Outcome] | None:
        """The future outcome of a signal this process's worker has queued, without reading the store
        (None: not queued here; ask `wait_for`). Taken before the worker runs it, it cannot miss the end."""
        if not self.is_queued(account, signal_id):
            return None
        return self._executor.outcome_future(signal_id)

    async def wait_for(self, signal_id: str, within: float) -> Outcome:
        """Wait until a queued signal is finished (used by control actions that report their result)."""
        record = self.store.get_signal(signal_id) if self.shared else None
        if not self.shared or (record is not None and self._workers.serving(record.account)):
            return await self._executor.wait_for(signal_id, within)
        deadline = asyncio.get_running_loop().time() + within  # another daemon may be the one executing it
        while True:
            known = self.store.signal_outcome(signal_id)  # status and reason only, not orders and fills
            if known is not None and known[0].is_final:
                return Outcome(signal_id, *known)
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(f"signal {signal_id} not finished within {within:g} s")
            await asyncio.sleep(0.1)

    async def execute(self, intent: Intent, recovered: bool = False) -> Outcome:
        """Execute an already recorded intent now, outside the workers (the replay runs bars this way)."""
        return await self._executor.execute(intent, recovered)

    # ---- controls --------------------------------------------------------------------------------

    def targets(self, target: str) -> list[str]:
        if target == "all":
            return list(self.brokers)
        if target in self.groups:
            return list(self.groups[target])
        if target not in self.brokers:
            groups = f"; groups: {', '.join(self.groups)}" if self.groups else ""
            raise KeyError(f"unknown account {target!r}; accounts: {', '.join(self.brokers)}{groups}")
        return [target]

    def pause(self, target: str, actor: str, paused: bool = True) -> list[str]:
        """Pause (no new entries, exits still allowed) or resume; persisted across restarts."""
        accounts = self.targets(target)
        for account in accounts:
            self.store.set_control(account, paused=paused, by=actor)
            (self.paused.add if paused else self.paused.discard)(account)
            self.events.publish(Event(kind="paused" if paused else "resumed", account=account,
                                      summary=f"{'paused' if paused else 'resumed'} by {actor}"))
        self.store.audit(actor, "pause" if paused else "resume", target)
        return accounts

    def request_flatten(self, target: str, actor: str, request_id: str, source: str = "api") -> list[str]:
        """Queue a flatten (cancel orders, close positions) on each account's own worker; idempotent per id."""
        return self._request_all(Action.FLATTEN, "flat", target, actor, request_id, source)

    def request_cancel(self, target: str, actor: str, request_id: str, source: str = "api") -> list[str]:
        """Queue a cancel of every open order on each account's own worker; idempotent per id."""
        return self._request_all(Action.CANCEL, "cancel", target, actor, request_id, source)

    def _request_all(self, action: Action, prefix: str, target: str, actor: str, request_id: str,
                     source: str) -> list[str]:
        """An account-wide control action takes the same per-account path as any order."""
        ids = []
        for account in self.targets(target):
            intent = Intent(signal_id=f"{prefix}_{request_id}_{account}", dedup_key=f"{action.value}:{request_id}",
                            account=account, source=source, action=action,
                            received_at=self.clock(), comment=f"{action.value} by {actor}")
            ids.append(self.accept(intent).signal_id)
        self.store.audit(actor, action.value, target, f"request {request_id}")
        return ids

    # ---- AccountControls: how the risk monitor holds an account ------------------------------------
    # `locked` is changed in place, never rebound: the executor reads the same set at every risk check.

    def is_locked(self, account: str) -> bool:
        return account in self.locked

    def lock(self, account: str, actor: str, reason: str | None = None) -> None:
        """Refuse new exposure (exits still pass) until `unlock`; persisted across restarts."""
        self.store.set_control(account, locked=True, reason=reason, by=actor)
        self.locked.add(account)

    def unlock(self, account: str, actor: str) -> None:
        self.store.set_control(account, locked=False, by=actor)
        self.locked.discard(account)
