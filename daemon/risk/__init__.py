"""Risk wing: pre-trade rules (limits, PDT, cash, funded), the RiskEngine that runs them, and the risk monitor."""
