"""In-process fan-out of `Event`s to subscribers (logging, the outbox, tests) without blocking trading.

Subscribers are plain callables; one that raises is logged and skipped so that a broken listener can
never stop an order from being recorded.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from decimal import Decimal

from daemon.domain import Event, Fill

log = logging.getLogger("traderd.events")

Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self, keep: int = 200) -> None:
        self._subscribers: list[Subscriber] = []
        self.recent: deque[Event] = deque(maxlen=keep)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, event: Event) -> None:
        self.recent.append(event)
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on a %s event", subscriber, event.kind)


def log_event(event: Event) -> None:
    """Default subscriber: one journald-friendly line per event."""
    level = logging.WARNING if event.kind in ("violation", "signal_rejected", "signal_failed", "flatten") \
        else logging.INFO
    log.log(level, "%s%s: %s", event.kind, f" [{event.account}]" if event.account else "", event.summary)


def fill_event(fill: Fill, realized: Decimal) -> Event:
    """The event for a newly recorded fill, whoever recorded it (the engine, reconciliation)."""
    pnl = f", realized {realized.normalize():f}" if realized else ""
    return Event(
        kind="fill", account=fill.account,
        summary=f"{fill.side.value} {fill.quantity.normalize():f} {fill.symbol} @ {fill.price.normalize():f}{pnl}",
        data={"fill": fill.model_dump(mode="json"), "realized_pnl": str(realized)},
    )
