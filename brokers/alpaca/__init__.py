"""Alpaca adapter: REST orders/positions/activities (broker.py), wire mapping (models.py), trade_updates (stream.py)."""
