"""HTTP in: the TradingView webhook, payload parsing into Intents, the control API, error answers."""
