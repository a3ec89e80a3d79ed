"""ProjectX (TopstepX) adapter: REST gateway (broker.py), session, wire models (models.py), SignalR hub (stream.py)."""
