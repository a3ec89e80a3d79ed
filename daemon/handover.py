"""What a daemon starts and stops as it gains and loses an account: broker, reconciliation, worker, the alert.

Gaining an account: connect its broker (once; it stays connected), drop cached rule state another owner may
have moved on, reconcile the store with the broker, then resume its unfinished signals (each looked up at the
broker first, as after a restart) and start its worker. A takeover from another daemon is announced as an
alert ("apex1 taken over by host-b after host-a stopped renewing at 14:03:07"). Losing it stops the worker;
handing it over (release, stop) lets the signal in hand finish first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from brokers.base import Broker
from daemon.domain import Event
from daemon.engine import Engine
from daemon.reconcile import Reconciler
from daemon.store.leases import Grant

log = logging.getLogger("traderd.ownership")


def takeover_text(what: str, grant: Grant, by: str, timezone: str) -> str | None:
    """The alert for a lease `by` just took, or None when nothing changed hands (first start, own restart)."""
    before = grant.previous_holder
    if before is None or (before == by and grant.previous_released):
        return None
    when = _clock_time(grant.previous_renewed_at, timezone)
    if grant.previous_released:
        return f"{what} taken over by {by} after {before} released it at {when}"
    return f"{what} taken over by {by} after {before} stopped renewing at {when}"


def _clock_time(at: datetime | None, timezone: str) -> str:
    return "?" if at is None else at.astimezone(ZoneInfo(timezone)).strftime("%H:%M:%S")


class AccountHandover:
    """`connect(account)` connects the account's broker (adding it to `connected`); `reconcile(account)`
    brings the store in line with the broker's reports; `forget(account)` drops the funded-rule state cached
    in memory, so the store's is read again."""

    def __init__(self, *, engine: Engine, brokers: Mapping[str, Broker], reconciler: Reconciler,
                 connect: Callable[[str], Awaitable[None]], reconcile: Callable[[str], Awaitable[None]],
                 connected: Collection[str],
                 forget: Callable[[str], None], publish: Callable[[Event], None], name: str, timezone: str,
                 grace: float) -> None:
        self.engine = engine
        self.brokers = brokers
        self.reconciler = reconciler
        self.connect = connect
        self.reconcile = reconcile
        self.connected = connected
        self.forget = forget
        self.publish = publish
        self.name = name
        self.timezone = timezone
        self.grace = grace

    async def gained(self, account: str, grant: Grant) -> None:
        if account not in self.brokers:
            log.error("holding the lease of %s, which is not configured here", account)
            return
        if account not in self.connected:
            await self.connect(account)
        self.forget(account)
        if grant.previous_holder is not None and grant.previous_holder != self.name:
            self.reconciler.continue_from_store(account)  # the last owner kept the store current
        if account in self.connected:
            await self.reconcile(account)
        resumed = self.engine.adopt(account)
        text = takeover_text(account, grant, self.name, self.timezone)
        if text is not None:
            if resumed:
                text += f"; {resumed} unfinished signal(s) resumed"
            self.publish(Event(kind="daemon", account=account, summary=text,
                               data={"ownership": "taken_over", "by": self.name, "from": grant.previous_holder,
                                     "token": grant.token}))
        log.info("%s executes %s (token %d)", self.name, account, grant.token)

    async def lost(self, account: str, why: str, graceful: bool) -> None:
        await self.engine.relinquish(account, self.grace if graceful else 0.0)
        self.forget(account)
        (log.info if graceful else log.warning)("%s no longer executes %s: %s", self.name, account, why)
