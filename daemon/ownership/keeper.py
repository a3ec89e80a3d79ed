"""Holds this daemon's leases on a shared store: takes free ones, renews them, hands them over, fences sends.

Every `poll_seconds` (sooner when poked: a lease was released) the keeper renews what it holds when a renewal
is due, gives up what it could not renew in time, and takes free leases it may hold (its accounts, up to
`capacity`, and the singleton). It never takes a lease another daemon still renews: rebalancing is explicit
(`request_release`), never churning.

Safety does not rest on the renewal loop: a term ends on this process's monotonic clock at
`renewal sent + lease_seconds - margin_seconds`, which comes before the database lets the lease pass on, and
`fence(account)` refuses a send unless the term is still running *and* the database confirms the token is
current. A frozen (SIGSTOPped) or partitioned owner therefore places nothing once it resumes late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon.ownership.fence import SINGLETON, NotOwner, account_lease, account_of
from daemon.store.leases import Grant, Leases

log = logging.getLogger("traderd.ownership")

Gain = Callable[[str, Grant], Awaitable[None]]  # (lease, grant): start what the lease covers
Loss = Callable[[str, str, bool], Awaitable[None]]  # (lease, why, graceful): stop it (graceful: finish first)


@dataclass
class Term:
    token: int
    deadline: float  # monotonic: no send at or after this instant unless a renewal moved it on


class LeaseKeeper:
    def __init__(self, leases: Leases, *, name: str, accounts: Sequence[str], capacity: int | None,
                 singleton: bool, lease_seconds: float, renew_seconds: float, margin_seconds: float,
                 on_gain: Gain, on_loss: Loss, poll_seconds: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.leases = leases
        self.name = name
        self.owner = f"{name}/{os.getpid()}/{secrets.token_hex(4)}"  # unique per run, even on one host
        wanted = [account_lease(account) for account in accounts]
        random.shuffle(wanted)  # daemons started together spread over the accounts instead of queueing
        self._wanted = ([SINGLETON] if singleton else []) + wanted
        self.capacity = capacity
        self.lease_seconds, self.renew_seconds, self.margin = lease_seconds, renew_seconds, margin_seconds
        self.poll_seconds = min(poll_seconds, renew_seconds)
        self._on_gain, self._on_loss = on_gain, on_loss
        self._mono = monotonic
        self._terms: dict[str, Term] = {}
        self._releasing: set[str] = set()
        self._cooldown: dict[str, float] = {}  # lease -> monotonic time before which we do not take it back
        self._transitions: dict[str, asyncio.Task[None]] = {}
        self._gains: dict[str, asyncio.Task[None]] = {}  # starts in progress, cancelled by a loss
        self._last_renewal = float("-inf")
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # ---- what we hold ----------------------------------------------------------------------------

    def holds(self, lease: str) -> bool:
        term = self._terms.get(lease)
        return term is not None and self._mono() < term.deadline

    def held(self) -> list[str]:
        return sorted(lease for lease in self._terms if self.holds(lease))

    def fence(self, account: str) -> None:
        """Return only while this process provably owns `account`; raise `NotOwner` otherwise."""
        lease = account_lease(account)
        term = self._terms.get(lease)
        if term is None or self._mono() >= term.deadline:
            raise NotOwner(f"{self.name} does not hold the lease of {account}")
        try:
            current = self.leases.holds(lease, self.owner, term.token)
        except SQLAlchemyError as exc:
            raise NotOwner(f"{self.name} cannot prove its lease of {account} ({type(exc).__name__})") from exc
        if not current or self._mono() >= term.deadline:
            raise NotOwner(f"the lease of {account} moved on from {self.name} (token {term.token})")

    def describe(self) -> dict[str, Any]:
        """Every lease as the store has it (who holds what, until when), and ours."""
        try:
            rows = [{"name": v.name, "holder": v.holder, "token": v.token, "held": v.held,
                     "seconds_left": round(max(v.seconds_left, 0.0), 1), "release_requested": v.release_requested,
                     "renewed_at": v.renewed_at.isoformat() if v.renewed_at else None}
                    for v in self.leases.all()]
        except SQLAlchemyError as exc:
            rows = [{"error": f"leases unreadable: {type(exc).__name__}"}]
        return {"name": self.name, "owner": self.owner, "held": self.held(), "leases": rows}

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take what can be taken now and finish starting it, then keep the leases in the background."""
        self.tick()
        await self._settled()
        self._runner = asyncio.create_task(self._run(), name="lease-keeper")

    async def stop(self) -> None:
        """Hand every lease over: what each covers stops first (gracefully), then the lease is released."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        accounts = [lease for lease in self._terms if lease != SINGLETON]
        for group in (accounts, [SINGLETON] if SINGLETON in self._terms else []):
            for lease in group:
                if lease not in self._releasing:
                    self._release(lease, "stopping")
            await asyncio.gather(*(self._transitions[lease] for lease in group), return_exceptions=True)
        self._terms.clear()

    def poke(self) -> None:
        """Look at the leases now (another daemon released one)."""
        self._wake.set()

    def drop(self, lease: str, why: str) -> None:
        """End our term now (a send was refused): stop what it covers; the next tick may take it anew."""
        term = self._terms.pop(lease, None)
        if term is None:
            return
        self._lost(lease, why)
        with contextlib.suppress(SQLAlchemyError):
            self.leases.release(lease, self.owner, term.token)

    def request_release(self, lease: str) -> bool:
        """Hand one lease over (`traderd release`): it is not taken back for two lease periods."""
        if lease not in self._terms or lease in self._releasing:
            return False
        self._release(lease, "release requested")
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # the loop must survive anything; a missed tick only delays a renewal
                log.exception("lease keeping failed; retrying")

    async def _settled(self) -> None:
        pending = [task for task in self._transitions.values() if not task.done()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- one tick --------------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._mono()
        due = now - self._last_renewal >= self.renew_seconds
        if self._terms and (due or any(t.deadline - now < self.margin for t in self._terms.values())):
            self._renew()
        for lease, term in list(self._terms.items()):
            if self._mono() >= term.deadline:
                del self._terms[lease]
                self._lost(lease, f"{self.name} could not renew its lease in time")
        self._acquire()

    def _renew(self) -> None:
        sent = self._mono()
        try:
            renewed = self.leases.renew(self.owner, self.lease_seconds)
        except SQLAlchemyError as exc:
            log.warning("could not renew leases: %s", type(exc).__name__)
            return  # the terms run out on their own deadlines
        self._last_renewal = sent
        for lease, term in list(self._terms.items()):
            got = renewed.get(lease)
            if got is None or got[0] != term.token:
                del self._terms[lease]
                self._lost(lease, f"the lease moved on from {self.name}")
                continue
            term.deadline = sent + self.lease_seconds - self.margin
            if got[1] and lease not in self._releasing:
                self._release(lease, "release requested")

    def _acquire(self) -> None:
        now = self._mono()
        try:
            live = {view.name for view in self.leases.all() if view.held}
        except SQLAlchemyError as exc:
            log.warning("could not read leases: %s", type(exc).__name__)
            return
        room = (self.capacity if self.capacity is not None else len(self._wanted)) - sum(
            1 for lease in self._terms if account_of(lease) is not None)
        for lease in self._wanted:
            is_account = account_of(lease) is not None
            if lease in self._terms or lease in live or self._cooldown.get(lease, 0) > now:
                continue
            if is_account and room <= 0:
                continue
            sent = self._mono()
            try:
                grant = self.leases.acquire(lease, self.owner, self.name, self.lease_seconds)
            except SQLAlchemyError as exc:
                log.warning("could not take lease %s: %s", lease, type(exc).__name__)
                return
            if grant is None:
                continue
            self._terms[lease] = Term(grant.token, sent + self.lease_seconds - self.margin)
            room -= is_account
            log.info("took lease %s (token %d)", lease, grant.token)
            self._gains[lease] = self._spawn(lease, self._gain_step(lease, grant))

    # ---- transitions -----------------------------------------------------------------------------

    def _gain_step(self, lease: str, grant: Grant) -> Callable[[], Awaitable[None]]:
        return lambda: self._on_gain(lease, grant)

    def _lost(self, lease: str, why: str) -> None:
        log.warning("lost lease %s: %s", lease, why)
        self._releasing.discard(lease)
        gain = self._gains.pop(lease, None)
        if gain is not None and not gain.done():
            gain.cancel()  # a start still in progress: what it started, the loss stops
        self._spawn(lease, lambda: self._on_loss(lease, why, False))

    def _release(self, lease: str, why: str) -> None:
        self._releasing.add(lease)

        async def hand_over() -> None:
            try:
                await self._on_loss(lease, why, True)  # the term still runs: the signal in hand may finish
            finally:
                term = self._terms.pop(lease, None)
                self._releasing.discard(lease)
                if term is not None:
                    self._cooldown[lease] = self._mono() + 2 * self.lease_seconds
                    with contextlib.suppress(SQLAlchemyError):
                        self.leases.release(lease, self.owner, term.token)
                    log.info("released lease %s (%s)", lease, why)

        self._spawn(lease, hand_over)

    def _spawn(self, lease: str, step: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run `step` after the lease's previous transition, so a loss never overtakes the start it undoes."""
        previous = self._transitions.get(lease)

        async def run() -> None:
            if previous is not None:
                await asyncio.wait([previous])  # however it ended; our own cancellation still propagates
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling lease %s failed", lease)

        task = self._transitions[lease] = asyncio.create_task(run(), name=f"lease-{lease}")
        return task
