"""Prometheus metrics for `/metrics`: traffic counters, the process, and the gauges an operator alerts on.

Counters and histograms: webhooks by outcome, acknowledgement latency, orders, fills, rejections, signals.
Gauges (set by `daemon.readings` at scrape time, or after each periodic account read): broker and stream
connected per account, equity, day P&L, daily loss left and distance to the max-loss floor of funded
accounts, outbox backlog and the age of its oldest alert, signals queued, last successful reconciliation.
The process collector adds `process_*` (CPU, memory, open files, start time). Each daemon owns its own
`CollectorRegistry` (no global state), so tests can run several in one process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self._before_render: list[Callable[[], None]] = []
        self.webhooks = Counter("traderd_webhooks", "Webhook requests by outcome", ["outcome"],
                                registry=self.registry)
        self.webhook_latency = Histogram(
            "traderd_webhook_ack_seconds", "Time from request to acknowledgement",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.signal_to_order = Histogram(
            "traderd_signal_to_order_seconds", "Time from acceptance to the broker's answer",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=self.registry,
        )
        self.orders = Counter("traderd_orders", "Orders placed, by account and status",
                              ["account", "status"], registry=self.registry)
        self.fills = Counter("traderd_fills", "Fills recorded, by account", ["account"], registry=self.registry)
        self.rejections = Counter("traderd_rejections", "Signals refused by a risk rule",
                                  ["account", "rule"], registry=self.registry)
        self.signals = Counter("traderd_signals", "Signals by final status", ["account", "status"],
                               registry=self.registry)
        self.queue_depth = Gauge("traderd_queue_depth", "Signals waiting per account", ["account"],
                                 registry=self.registry)
        account = ["account"]
        self.broker_connected = Gauge("traderd_broker_connected", "1 while the account's broker answers",
                                      account, registry=self.registry)
        self.stream_connected = Gauge("traderd_stream_connected", "1 while the broker's live stream is up "
                                      "(accounts whose broker has a stream)", account, registry=self.registry)
        self.equity = Gauge("traderd_equity", "Account equity, last read from the broker", account,
                            registry=self.registry)
        self.day_pnl = Gauge("traderd_day_pnl", "Net P&L of the account's trading day (realized - fees + open)",
                             account, registry=self.registry)
        self.daily_loss_left = Gauge("traderd_daily_loss_left", "Funded accounts: equity above the daily loss "
                                     "limit's floor", account, registry=self.registry)
        self.daily_loss_limit = Gauge("traderd_daily_loss_limit", "Funded accounts: the daily loss limit",
                                      account, registry=self.registry)
        self.max_loss_left = Gauge("traderd_max_loss_left", "Funded accounts: equity above the max-loss floor",
                                   account, registry=self.registry)
        self.outbox_backlog = Gauge("traderd_outbox_backlog", "Alerts waiting to be delivered",
                                    registry=self.registry)
        self.outbox_oldest_age = Gauge("traderd_outbox_oldest_age_seconds", "Age of the oldest undelivered "
                                       "alert (0 when none waits)", registry=self.registry)
        self.last_reconcile = Gauge("traderd_last_reconcile_timestamp_seconds", "Unix time of the account's "
                                    "last successful reconciliation with its broker", account,
                                    registry=self.registry)

    def before_render(self, refresh: Callable[[], None]) -> None:
        """Run `refresh` (which sets gauges from live state) before every scrape."""
        self._before_render.append(refresh)

    def render(self) -> bytes:
        for refresh in self._before_render:
            refresh()
        return generate_latest(self.registry)
