"""Tradovate adapter: REST (broker.py), session, contracts, order journal, wire models, websocket (stream.py)."""
