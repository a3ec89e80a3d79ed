"""Reconciliation: bring the store in line with the broker's own reports (orders, fills, positions).

Runs at start-up before READY and periodically from the scheduler. Differences are healed in the store
(the broker is the source of truth for what exists) and reported as a `broker` event; fills the store had
missed are published like any other fill, so the risk monitor sees them. Each account is reconciled while
holding its worker's lock, never in the middle of a signal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from brokers.base import Broker
from daemon.domain import Event, utcnow
from daemon.engine import Engine
from daemon.events import EventBus, fill_event
from daemon.store.repository import Store

log = logging.getLogger("traderd.reconcile")

FILL_LOOKBACK = timedelta(days=3)  # first pass after start: how far before the newest stored fill to look
FILL_OVERLAP = timedelta(minutes=10)  # later passes: brokers may report a fill with an earlier timestamp


class Reconciler:
    def __init__(self, *, store: Store, events: EventBus, engine: Engine,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.events = events
        self.engine = engine
        self.clock = clock
        self._fills_since: dict[str, datetime | None] = {}

    def continue_from_store(self, account: str) -> None:
        """Another daemon kept the account's fills current in the shared store until it stopped: the first
        pass here looks back `FILL_OVERLAP` from the newest stored fill, not `FILL_LOOKBACK`."""
        newest = self.store.fills(account, limit=1)
        if newest:
            self._fills_since[account] = newest[0].filled_at - FILL_OVERLAP

    async def account(self, account: str, broker: Broker) -> list[str]:
        """Heal the store from the broker; returns the differences found, in plain words."""
        async with self.engine.exclusive(account):
            differences = await self._orders(account, broker)
            differences += await self._fills(account, broker)
            differences += await self._positions(account, broker)
            self.store.record_snapshot(await broker.account_state())
        if differences:
            summary = "reconciliation: " + "; ".join(differences)
            log.warning("[%s] %s", account, summary)
            self.events.publish(Event(kind="broker", account=account, summary=summary))
        return differences

    async def _orders(self, account: str, broker: Broker) -> list[str]:
        differences = []
        open_at_broker = {o.broker_order_id: o for o in await broker.open_orders()}
        for order in open_at_broker.values():
            self.store.upsert_order(order)
        for order in self.store.orders(account, open_only=True):
            if order.broker_order_id in open_at_broker:
                continue
            current = await broker.find_order(order.client_order_id)
            if current is not None and current.status != order.status:
                self.store.upsert_order(current)
                differences.append(f"order {order.client_order_id} is {current.status.value} at the broker")
        return differences

    async def _fills(self, account: str, broker: Broker) -> list[str]:
        if account in self._fills_since:
            since = self._fills_since[account]
        else:
            newest = self.store.fills(account, limit=1)
            since = newest[0].filled_at - FILL_LOOKBACK if newest else None
        checked_at = self.clock()
        known = self.store.fill_ids(account, since)
        missed = 0
        for n, fill in enumerate(sorted(await broker.fills(since), key=lambda f: f.filled_at)):
            if fill.fill_id in known:
                continue
            realized = self.store.record_fill(fill, broker.multiplier(fill.symbol))
            if realized is not None:
                missed += 1
                self.events.publish(fill_event(fill, realized))
            if n % 200 == 199:
                await asyncio.sleep(0)  # a long gap to fill must not hold up the acknowledgements
        self._fills_since[account] = checked_at - FILL_OVERLAP
        return [f"{missed} fills recorded that the store had missed"] if missed else []

    async def _positions(self, account: str, broker: Broker) -> list[str]:
        differences = []
        at_broker = {p.symbol: p for p in await broker.positions()}
        in_store = {p.symbol: p for p in self.store.positions(account)}
        for symbol in sorted(set(at_broker) | set(in_store)):
            theirs, ours = at_broker.get(symbol), in_store.get(symbol)
            their_qty = theirs.quantity if theirs else 0
            our_qty = ours.quantity if ours else 0
            if their_qty != our_qty:
                self.store.set_position(account, symbol, theirs.quantity if theirs else 0,  # type: ignore[arg-type]
                                        theirs.average_price if theirs else 0)  # type: ignore[arg-type]
                differences.append(f"{symbol} position {our_qty} in the store, {their_qty} at the broker: healed")
        return differences
