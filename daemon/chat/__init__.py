"""Chat-ops: the transport-neutral command core, replies, rendering, alerts, the durable outbox, the runtime."""
