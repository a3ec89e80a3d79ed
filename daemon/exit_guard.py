"""Keeps resting exits within their position: shrinks or cancels bracket legs after the position shrinks.

A position shrinks by a partial exit, a manual close at the broker, a take-profit level filling; its resting
exits must shrink with it, and must never be able to open the opposite position. `daemon.planner.protect_exits`
decides; this carries it out at the broker. The position it protects is the larger of the broker's and the
store's view (same sign): a broker whose position lags its fills must not make the guard cancel the exits
of an entry that has just filled, and when the two disagree on the side nothing is changed until they agree.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal

from brokers.base import Broker, BrokerError, OrderRejected
from daemon.domain import ZERO, Event
from daemon.events import EventBus
from daemon.ownership.fence import NotOwner, no_fence
from daemon.planner import protect_exits
from daemon.store.repository import Store

log = logging.getLogger("traderd.engine")


class ExitGuard:
    """`exclusive(account)` is the account's worker lock: fixes run between signals, never inside one."""

    def __init__(self, *, store: Store, brokers: Mapping[str, Broker], events: EventBus,
                 exclusive: Callable[[str], asyncio.Lock], fence: Callable[[str], None] = no_fence,
                 managed: Callable[[str], set[str]] = lambda account: set()) -> None:
        self.managed = managed  # broker ids of the plain stops the daemon trails: exits, though not bracket legs
        self.fence = fence  # raises NotOwner unless this process owns the account right now
        self.store = store
        self.brokers = brokers
        self.events = events
        self.exclusive = exclusive
        self._tasks: set[asyncio.Task[None]] = set()

    def has_exits(self, account: str, symbol: str) -> bool:
        return self.store.has_open_exit(account, symbol, self.managed(account))

    def soon(self, account: str, symbol: str) -> None:
        """Check `symbol` once the account's worker is free (a fill reported outside any signal)."""
        if not self.has_exits(account, symbol):
            return

        async def later() -> None:
            async with self.exclusive(account):
                try:
                    await self.protect(account, symbol)
                except Exception:  # a task of its own: nobody else would hear of it
                    log.exception("%s: checking the exits of %s failed", account, symbol)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def protect(self, account: str, symbol: str) -> None:
        """Bring `symbol`'s resting exits in line with the position (the caller holds the account's lock)."""
        if not self.has_exits(account, symbol):
            return
        broker = self.brokers[account]
        try:
            held = _quantity({p.symbol: p.quantity for p in await broker.positions()}, symbol)
            stored = _quantity({p.symbol: p.quantity for p in self.store.positions(account)}, symbol)
            if held * stored < ZERO:
                log.info("%s %s: broker and store disagree on the side (%s / %s); exits checked later",
                         account, symbol, held, stored)
                return
            position = held if abs(held) >= abs(stored) else stored
            for fix in protect_exits(position, await broker.open_orders(), symbol, self.managed(account)):
                order = fix.order
                self.fence(account)
                if fix.quantity is not None:
                    try:
                        result = await broker.modify_order(order.broker_order_id, quantity=fix.quantity)
                        what = f"shrunk to {fix.quantity.normalize():f}"
                    except OrderRejected as exc:  # an exit that cannot shrink must not stay oversized
                        log.warning("%s: could not shrink exit %s (%s); cancelling it", account,
                                    order.broker_order_id, exc.reason)
                        result, what = await broker.cancel_order(order.broker_order_id), "cancelled"
                else:
                    result, what = await broker.cancel_order(order.broker_order_id), "cancelled"
                self.store.upsert_order(result)
                summary = (f"{symbol} exit {order.order_type.value} {order.side.value} "
                           f"{order.quantity.normalize():f} {what}: {fix.why}")
                log.info("%s: %s", account, summary)
                self.events.publish(Event(kind="order", account=account, summary=summary,
                                          data={"order": result.model_dump(mode="json")}))
        except NotOwner:
            log.info("%s %s: no longer this daemon's account; its owner checks the exits", account, symbol)
        except BrokerError as exc:
            log.warning("%s: could not check the exits of %s: %s", account, symbol, exc.reason)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _quantity(positions: Mapping[str, Decimal], symbol: str) -> Decimal:
    return positions.get(symbol, ZERO)
