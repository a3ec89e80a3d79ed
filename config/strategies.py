"""Settings of the scheduled strategies: one `[strategies.NAME]` table per running strategy instance.

    [strategies.aapl_sma]
    strategy = "sma_cross"            # a module of strategies/, or a path to a .py file
    account = "paper"
    symbol = "AAPL"
    timeframe = "1d"                  # 1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d
    calendar = "nyse"                 # nyse | cme | 24x7
    data = "/var/lib/traderd/aapl_1m.csv"
    params = { fast = 10, slow = 30, quantity = 5 }

The Settings field is `strategies: dict[str, StrategySettings]`. This module is ground floor: it imports
nothing of the project.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

TIMEFRAME_NAMES = ("1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d")
STRATEGY_NAME = re.compile(r"^[A-Za-z0-9_-]{1,60}$")


class StrategySettings(BaseModel):
    """One scheduled strategy instance."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    strategy: str = Field(description="Module name in strategies/ (e.g. sma_cross) or a path to a .py file")
    account: str = Field(description="Account whose risk rules and broker the strategy's orders go through")
    symbol: str
    timeframe: Literal["1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d"] = "1d"
    calendar: Literal["nyse", "cme", "24x7"] = "nyse"
    data: Path | None = Field(None, description="CSV file of bars (any finer timeframe); else broker market data")
    params: dict[str, Any] = Field(default_factory=dict, description="The strategy's typed parameters")
    enabled: bool = True
    delay_seconds: float = Field(2.0, ge=0, le=300, description="Run this long after each bar close")
    max_lag_seconds: float = Field(
        300.0, gt=0, description="A bar that closed longer ago than this is not acted on (restart, wake-up)"
    )
    history_bars: int = Field(0, ge=0, description="Bars of history to load; 0 = the strategy's warm-up")

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.strip().upper()
