"""The daemon's links to its brokers: connect (and say when one comes back), and reconcile the accounts it owns."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from brokers.base import Broker, BrokerError
from daemon.domain import Event
from daemon.events import EventBus
from daemon.metrics import Metrics
from daemon.reconcile import Reconciler

log = logging.getLogger("traderd")


class BrokerLinks:
    """`owns(account)`: whether this daemon executes the account; `announce()`: whether a reconnect is news
    (not during start-up)."""

    def __init__(self, *, brokers: Mapping[str, Broker], reconciler: Reconciler, events: EventBus, metrics: Metrics,
                 clock: Callable[[], datetime], owns: Callable[[str], bool], announce: Callable[[], bool]) -> None:
        self.brokers, self.reconciler, self.events, self.metrics = brokers, reconciler, events, metrics
        self.clock, self.owns, self.announce = clock, owns, announce
        self.connected: set[str] = set()

    async def connect(self, name: str) -> None:
        try:
            await self.brokers[name].connect()
        except BrokerError as exc:
            log.error("broker of account %s is unavailable: %s", name, exc.reason)
            self.events.publish(Event(kind="broker", account=name, summary=f"broker unavailable: {exc.reason}"))
            return
        if name not in self.connected and self.announce():
            self.events.publish(Event(kind="broker", account=name, summary="broker reconnected"))
        self.connected.add(name)

    async def reconcile_all(self) -> None:
        """Reconnect what dropped, then reconcile each owned account with its broker's own reports."""
        for name in self.brokers:
            if not self.owns(name):
                continue
            if name not in self.connected:
                await self.connect(name)
                if name not in self.connected:
                    continue
            await self.reconcile(name)

    async def reconcile(self, name: str) -> None:
        """One account against its broker's own reports; a failure is logged and retried at the next round."""
        try:
            await self.reconciler.account(name, self.brokers[name])
        except BrokerError as exc:
            log.warning("reconciliation of %s failed: %s", name, exc.reason)
        else:
            self.metrics.last_reconcile.labels(name).set(self.clock().timestamp())
