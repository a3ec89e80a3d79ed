"""Managed exits: durable per-position exit rules the daemon carries out at the broker, driven by price marks."""
