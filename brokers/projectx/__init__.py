"""ProjectX (TopstepX) adapter: REST gateway (broker.py), its models (models.py), SignalR user hub (stream.py)."""
