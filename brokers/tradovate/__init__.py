"""Tradovate adapter: REST (broker.py), its models (models.py), websocket streaming (stream.py)."""
