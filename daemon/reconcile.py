"""Reconciliation: bring the store in line with the broker's own reports (orders, fills, positions).

Runs at start-up before READY and periodically from the scheduler. Differences are healed in the store
(the broker is the source of truth for what exists) and reported as a `broker` event.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from brokers.base import Broker
from daemon.domain import Event
from daemon.engine import multiplier_of
from daemon.events import EventBus
from daemon.store import Store

log = logging.getLogger("traderd.reconcile")

FILL_LOOKBACK = timedelta(days=3)


async def reconcile_account(account: str, broker: Broker, store: Store, events: EventBus) -> list[str]:
    """Heal the store from the broker; returns the differences found, in plain words."""
    differences: list[str] = []
    open_at_broker = {o.broker_order_id: o for o in await broker.open_orders()}
    for order in open_at_broker.values():
        store.upsert_order(order)
    for order in store.orders(account, open_only=True):
        if order.broker_order_id in open_at_broker:
            continue
        current = await broker.find_order(order.client_order_id)
        if current is not None and current.status != order.status:
            store.upsert_order(current)
            differences.append(f"order {order.client_order_id} is {current.status.value} at the broker")

    recent = store.fills(account, limit=1)
    since = (recent[0].filled_at - FILL_LOOKBACK) if recent else None
    missed = 0
    for fill in sorted(await broker.fills(since), key=lambda f: f.filled_at):
        if store.record_fill(fill, multiplier_of(broker, fill.symbol)) is not None:
            missed += 1
    if missed:
        differences.append(f"{missed} fills recorded that the store had missed")

    at_broker = {p.symbol: p for p in await broker.positions()}
    in_store = {p.symbol: p for p in store.positions(account)}
    for symbol in sorted(set(at_broker) | set(in_store)):
        theirs, ours = at_broker.get(symbol), in_store.get(symbol)
        their_qty = theirs.quantity if theirs else 0
        our_qty = ours.quantity if ours else 0
        if their_qty != our_qty:
            store.set_position(account, symbol, theirs.quantity if theirs else 0,  # type: ignore[arg-type]
                               theirs.average_price if theirs else 0)  # type: ignore[arg-type]
            differences.append(f"{symbol} position {our_qty} in the store, {their_qty} at the broker: healed")

    store.record_snapshot(await broker.account_state())
    if differences:
        summary = "reconciliation: " + "; ".join(differences)
        log.warning("[%s] %s", account, summary)
        events.publish(Event(kind="broker", account=account, summary=summary))
    return differences
