"""Alpaca adapter: REST orders/positions/activities (broker.py) and trade_updates streaming."""
