"""RSI mean reversion: buy when Wilder's RSI falls below `oversold`, exit when it rises above `exit_above`.

With `allow_short`, also sell short above `overbought` and cover below `exit_below`. An optional protective
stop (`stop_pct` percent from the entry bar's close) rides along as a bracket stop-loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from strategies.base import ZERO, Bar, Position, Signal, Strategy, exit_position, target


def wilder_rsi(closes: Sequence[Decimal], period: int) -> Decimal | None:
    """Wilder's RSI of the last close: seeded with a simple average of the first `period` changes."""
    if len(closes) < period + 1:
        return None
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gain = sum((c for c in changes[:period] if c > 0), ZERO) / period
    loss = sum((-c for c in changes[:period] if c < 0), ZERO) / period
    for change in changes[period:]:
        gain = (gain * (period - 1) + max(change, ZERO)) / period
        loss = (loss * (period - 1) + max(-change, ZERO)) / period
    if loss == 0:
        return Decimal(100) if gain > 0 else Decimal(50)
    return Decimal(100) - Decimal(100) / (1 + gain / loss)


class RsiReversionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: int = Field(14, ge=2)
    oversold: Decimal = Field(Decimal(30), gt=0, lt=100)
    exit_above: Decimal = Field(Decimal(50), gt=0, lt=100)
    allow_short: bool = False
    overbought: Decimal = Field(Decimal(70), gt=0, lt=100)
    exit_below: Decimal = Field(Decimal(50), gt=0, lt=100)
    quantity: Decimal = Field(Decimal(1), gt=0)
    stop_pct: Decimal | None = Field(None, gt=0, lt=100, description="Protective stop, percent from entry")
    lookback: int = Field(250, ge=20, description="Bars of history the RSI is computed over")


class RsiReversion(Strategy):
    Params = RsiReversionParams
    description = "Buy oversold RSI, exit on recovery (optionally the mirror image short)"
    params: RsiReversionParams

    @property
    def warmup(self) -> int:
        return max(self.params.lookback, self.params.period + 1)

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        p = self.params
        rsi = wilder_rsi([b.close for b in history[-p.lookback:]], p.period)
        if rsi is None:
            return []
        note = f"RSI{p.period} {rsi:.1f}"
        stop = None
        if position.is_flat and rsi < p.oversold:
            if p.stop_pct is not None:
                stop = bar.close * (1 - p.stop_pct / 100)
            return [target(p.quantity, stop_loss=stop, comment=f"{note} < {p.oversold}")]
        if position.is_flat and p.allow_short and rsi > p.overbought:
            if p.stop_pct is not None:
                stop = bar.close * (1 + p.stop_pct / 100)
            return [target(-p.quantity, stop_loss=stop, comment=f"{note} > {p.overbought}")]
        if position.is_long and rsi > p.exit_above:
            return [exit_position(comment=f"{note} > {p.exit_above}")]
        if position.is_short and rsi < p.exit_below:
            return [exit_position(comment=f"{note} < {p.exit_below}")]
        return []
