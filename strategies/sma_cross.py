"""SMA crossover: go long when the fast moving average crosses above the slow one, exit (or go short) on the cross down.

A cross is strict on both bars, like `backtesting.lib.crossover`: fast < slow on the previous bar and
fast > slow on this one (and the reverse for a cross down). Orders are target positions (`quantity` long,
flat or `-quantity` short with `allow_short`), so a lost signal heals on the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from strategies.base import Bar, Position, Signal, Strategy, sma, target


class SmaCrossParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fast: int = Field(10, ge=1, description="Bars in the fast average")
    slow: int = Field(20, ge=2, description="Bars in the slow average")
    quantity: Decimal = Field(Decimal(1), gt=0, description="Position size when in the market")
    allow_short: bool = Field(False, description="Go short on a cross down instead of only exiting")

    @model_validator(mode="after")
    def _ordered(self) -> SmaCrossParams:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")
        return self


class SmaCross(Strategy):
    Params = SmaCrossParams
    description = "Long on a fast/slow SMA cross up, flat (or short) on the cross down"
    params: SmaCrossParams

    @property
    def warmup(self) -> int:
        return self.params.slow + 1

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        p = self.params
        closes = [b.close for b in history[-(p.slow + 1):]]
        fast_now, slow_now = sma(closes, p.fast), sma(closes, p.slow)
        fast_prev, slow_prev = sma(closes[:-1], p.fast), sma(closes[:-1], p.slow)
        if None in (fast_now, slow_now, fast_prev, slow_prev):
            return []
        assert fast_now is not None and slow_now is not None and fast_prev is not None and slow_prev is not None
        if fast_prev < slow_prev and fast_now > slow_now:
            return [target(p.quantity, comment=f"SMA{p.fast} crossed above SMA{p.slow}")]
        if fast_prev > slow_prev and fast_now < slow_now:
            size = -p.quantity if p.allow_short else Decimal(0)
            return [target(size, comment=f"SMA{p.fast} crossed below SMA{p.slow}")]
        return []
