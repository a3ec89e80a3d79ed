"""Cancelling a symbol's (or an account's) open orders at the broker, each group through its root.

A broker cancels a bracket or OCO group with its root; a leg it does not cancel with its group is cancelled
on its own. What really happened to each order is written to the store, and only the orders that were really
cancelled (not those that filled meanwhile) are returned.
"""

from __future__ import annotations

from collections.abc import Callable

from brokers.base import Broker
from daemon.domain import Order, OrderStatus
from daemon.planner import cancel_order_of
from daemon.store.repository import Store


async def cancel_open(broker: Broker, account: str, symbol: str | None, *, store: Store,
                      fence: Callable[[str], None]) -> list[Order]:
    """`fence(account)` proves ownership right before the cancels are sent."""
    wanted = [o for o in await broker.open_orders() if not symbol or o.symbol == symbol]
    fence(account)
    final = {o.broker_order_id: await broker.cancel_order(o.broker_order_id) for o in cancel_order_of(wanted)}
    if len(final) < len(wanted):
        still = {o.broker_order_id for o in await broker.open_orders()}
        for order in wanted:
            if order.broker_order_id in final:
                continue
            if order.broker_order_id in still:  # a leg this broker does not cancel with its group
                fence(account)
                final[order.broker_order_id] = await broker.cancel_order(order.broker_order_id)
                continue
            root = final.get(order.parent_order_id or "") or next(
                (r for r in final.values() if r.oco_group is not None and r.oco_group == order.oco_group), None)
            if root is not None and root.status is OrderStatus.CANCELLED:  # went with its group
                final[order.broker_order_id] = order.model_copy(update={"status": OrderStatus.CANCELLED,
                                                                        "updated_at": root.updated_at})
    for result in final.values():
        store.upsert_order(result)
    return [o for o in final.values() if o.status is OrderStatus.CANCELLED]
