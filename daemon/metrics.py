"""Prometheus metrics for `/metrics`: webhooks by outcome, acknowledgement latency, orders, fills, rejections.

Each daemon owns its own `CollectorRegistry` (no global state), so tests can run several in one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
