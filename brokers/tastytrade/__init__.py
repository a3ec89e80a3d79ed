"""tastytrade adapter: stocks and futures through the tastytrade Open API (see broker.py)."""
