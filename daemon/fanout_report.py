"""One report per fan-out: waits for every child's outcome and publishes a single `fanout` event for chat.

`FanoutReports` sits between the event bus and the chat outbox: `publish` is the bus subscriber, `subscribe`
is what the outbox subscribes to instead of the bus. While a fan-out runs, its children's own order, fill,
refusal and failure events are held back from the outbox (they stay on the bus for logs and the status page);
when every child is final, or `within` seconds have passed, one `fanout` event carries each account's outcome
(filled, placed, refused with the reason, skipped, pending) and how its symbol and size were mapped. Risk
warnings (the order still went) pass through at once. Events of a child that arrive after the report (a
resting limit order filling later) are news and go out on their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.domain import Event, OrderStatus, OrderType, SignalStatus, client_order_id
from daemon.store.repository import Store
from daemon.store.views import SignalRecord

log = logging.getLogger("traderd.fanout")

Subscriber = Callable[[Event], None]
WaitFor = Callable[[str, float], Awaitable[Any]]
Expect = Callable[[str, str], "asyncio.Future[Any] | None"]  # (account, signal id): its outcome, if run here
_REFUSED = (SignalStatus.REJECTED, SignalStatus.FAILED, SignalStatus.EXPIRED)


def child_outcome(record: SignalRecord) -> dict[str, Any]:
    """One account's line of the report, as JSON-ready values."""
    route = record.route or {}
    line: dict[str, Any] = {"account": record.account, "signal_id": record.signal_id, "status": record.status.value,
                            "symbol": route.get("symbol") or record.intent.symbol, "contract": route.get("contract"),
                            "ratio": route.get("ratio"), "ticker": route.get("ticker"),
                            "quantity": route.get("quantity"), "reason": record.reason}
    order = record.orders[-1] if record.orders else None
    if record.status is SignalStatus.SKIPPED:
        line["outcome"] = "skipped"
    elif record.status in _REFUSED:
        line["outcome"] = "refused"
    elif not record.status.is_final:
        line["outcome"] = "pending"
    elif order is None:
        line["outcome"] = "done"  # nothing needed (already at target, no position to close)
    else:
        line["outcome"] = "filled" if order.status is OrderStatus.FILLED else "placed"
        line["side"], line["quantity"] = order.side.value, f"{order.quantity.normalize():f}"
        if order.average_fill_price is not None:
            line["price"] = f"{order.average_fill_price.normalize():f}"
    return line


def _settled(record: SignalRecord) -> bool:
    """Every child final, and no executed market order still waiting for the fill its broker reports next."""
    for kid in record.children:
        if not kid.status.is_final:
            return False
        order = kid.orders[-1] if kid.orders else None
        if order is not None and order.order_type is OrderType.MARKET and order.status.is_open:
            return False
    return True


class FanoutReports:
    def __init__(self, *, store: Store, wait_for: WaitFor, publish: Subscriber, within: float = 60.0,
                 settle_seconds: float = 2.0, expect: Expect = lambda account, signal_id: None) -> None:
        """`expect` gives the outcome future of a child this process has queued, so following it costs no
        store read while the children run; `wait_for` follows any other (run by another daemon)."""
        self.store = store
        self.wait_for = wait_for
        self.expect = expect
        self.bus_publish = publish
        self.within = within
        self.settle_seconds = settle_seconds
        self._subscribers: list[Subscriber] = []
        self._signals: dict[str, str] = {}  # child signal id -> parent id, while the fan-out runs
        self._orders: dict[str, str] = {}  # child client order id -> parent id
        self._tasks: set[asyncio.Task[None]] = set()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        """Event-bus subscriber: start tracking a new fan-out, hold back its children's events, pass the rest."""
        if event.kind == "signal_accepted" and "fanout" in event.data:
            self._track(event.data["fanout"], event.data.get("children") or [])
        if self._held(event):
            return
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("fan-out subscriber %r failed on a %s event", subscriber, event.kind)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)

    def _held(self, event: Event) -> bool:
        data = event.data
        if event.kind == "fill":
            coid = str((data.get("fill") or {}).get("client_order_id") or "")
            return coid[:32] in self._orders
        if event.kind == "violation" and data.get("warning"):
            return False
        return event.kind in ("order", "violation", "signal_rejected", "signal_failed", "signal_expired") \
            and data.get("signal_id") in self._signals

    def _track(self, parent_id: str, children: list[dict[str, Any]]) -> None:
        kids = [c for c in children if c.get("new")]
        for kid in kids:
            self._signals[kid["signal_id"]] = parent_id
            self._orders[client_order_id(kid["account"], kid["dedup_key"])] = parent_id
        # Taken now, before any child can run: a child that ends first cannot be missed.
        ends = [(k["signal_id"], self.expect(k["account"], k["signal_id"])) for k in kids]
        task = asyncio.get_running_loop().create_task(self._report(parent_id, ends), name=f"fanout-{parent_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, parent_id: str, ends: list[tuple[str, asyncio.Future[Any] | None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.within
        try:
            for child_id, end in ends:
                left = max(0.0, deadline - loop.time())
                try:
                    await (self.wait_for(child_id, left) if end is None
                           else asyncio.wait_for(asyncio.shield(end), left))
                except TimeoutError:
                    break
            settle_until = min(deadline, loop.time() + self.settle_seconds)
            record = self.store.get_signal(parent_id)
            while record is not None and not _settled(record) and loop.time() < settle_until:
                await asyncio.sleep(0.05)
                record = self.store.get_signal(parent_id)
        finally:
            for table in (self._signals, self._orders):
                for key in [k for k, v in table.items() if v == parent_id]:
                    del table[key]
        if record is not None:
            self.bus_publish(report_event(record))


def report_event(record: SignalRecord) -> Event:
    """The `fanout` event of a parent signal: the alert, then one line per account."""
    intent = record.intent
    lines = [child_outcome(kid) for kid in record.children]
    counts: dict[str, int] = {}
    for line in lines:
        counts[line["outcome"]] = counts.get(line["outcome"], 0) + 1
    alerted = f"{intent.quantity.normalize():f} " if intent.quantity is not None else ""
    what = f"{intent.action.value} {alerted}{intent.symbol}".strip()
    summary = f"{what} -> " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    return Event(kind="fanout", summary=summary,
                 data={"signal_id": record.signal_id, "alert": what, "group": record.account.lstrip("@"),
                       "counts": counts, "children": lines})
