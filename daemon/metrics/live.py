"""Sets the operator's gauges from the running daemon's state at scrape time (cheap, in-memory reads only).

What it reads is passed in as small protocols (brokers, the engine's queues, the outbox, the funded-account
monitor), so this stays on the ground floor. Equity and day P&L need broker calls and are set by the daemon
after its periodic account read instead; the reconciliation time is set when a reconciliation succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from daemon.metrics import Metrics


class _Broker(Protocol):
    def healthy(self) -> bool: ...


class _Queues(Protocol):
    def queue_depth(self, account: str) -> int: ...


class _Row(Protocol):
    @property
    def created_at(self) -> datetime: ...


class _Outbox(Protocol):
    def pending_count(self) -> int: ...
    def pending(self, transport: str | None = None, limit: int = 1000) -> Sequence[_Row]: ...


class _Funded(Protocol):
    def accounts(self) -> list[str]: ...
    def snapshot(self, account: str) -> dict[str, Any]: ...


def stream_up(broker: object) -> bool | None:
    """Whether the broker's live stream is up; None for a broker without one (paper)."""
    connected = getattr(broker, "stream_connected", None)
    if isinstance(connected, bool):
        return connected
    stream = getattr(broker, "stream", None)
    healthy = getattr(stream, "healthy", None)
    return bool(healthy()) if callable(healthy) else None


def _number(value: Any) -> float | None:
    try:
        return float(Decimal(str(value))) if value is not None else None
    except (InvalidOperation, ValueError):
        return None


class LiveGauges:
    """`refresh()` is registered with `Metrics.before_render`."""

    def __init__(self, metrics: Metrics, *, brokers: Mapping[str, _Broker], connected: Callable[[str], bool],
                 queues: _Queues, outbox: _Outbox, funded: _Funded | None,
                 daily_loss_limits: Mapping[str, Decimal | None], clock: Callable[[], datetime]) -> None:
        self.metrics, self.brokers, self.connected = metrics, brokers, connected
        self.queues, self.outbox, self.funded, self.clock = queues, outbox, funded, clock
        self.daily_loss_limits = daily_loss_limits

    def refresh(self) -> None:
        m = self.metrics
        for name, broker in self.brokers.items():
            m.broker_connected.labels(name).set(1 if self.connected(name) and broker.healthy() else 0)
            up = stream_up(broker)
            if up is not None:
                m.stream_connected.labels(name).set(1 if up else 0)
            m.queue_depth.labels(name).set(self.queues.queue_depth(name))
        self._outbox()
        if self.funded is not None:
            self._funded(self.funded)

    def _outbox(self) -> None:
        try:
            backlog = self.outbox.pending_count()
            oldest = self.outbox.pending(limit=1)
        except Exception:  # a scrape must answer even while the database is unhappy
            return
        self.metrics.outbox_backlog.set(backlog)
        age = (self.clock() - oldest[0].created_at).total_seconds() if oldest else 0.0
        self.metrics.outbox_oldest_age.set(max(0.0, age))

    def _funded(self, funded: _Funded) -> None:
        for name in funded.accounts():
            left = funded.snapshot(name).get("left", {})
            max_loss = _number(left.get("max_loss"))
            if max_loss is not None:
                self.metrics.max_loss_left.labels(name).set(max_loss)
            daily = _number(left.get("daily_loss_limit"))
            limit = self.daily_loss_limits.get(name)
            if daily is not None and limit is not None:
                self.metrics.daily_loss_left.labels(name).set(daily)
                self.metrics.daily_loss_limit.labels(name).set(float(limit))
