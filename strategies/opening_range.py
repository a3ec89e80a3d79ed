"""Opening-range breakout: trade the first break of the session's opening range, flat before the close.

The range is the high and low of the bars that start within `range_minutes` of the session's first bar.
After it, the first close above the range high buys `quantity` with a bracket (stop at the range low,
take profit `target_multiple` range widths above the entry close); with `allow_short`, the first close
below the range low sells short the mirror image. One entry per session. Any position is closed by the
first bar that ends within `exit_minutes_before_close` of the session close (the calendar's, so early
closes count). Needs intraday bars; the range is kept in `self.state`, so it survives a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from strategies.base import Bar, Position, Signal, Strategy, exit_position, target


class OpeningRangeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    range_minutes: int = Field(30, ge=1, le=240)
    quantity: Decimal = Field(Decimal(1), gt=0)
    allow_short: bool = False
    target_multiple: Decimal = Field(Decimal(2), gt=0, description="Take profit, in range widths")
    exit_minutes_before_close: int = Field(5, ge=0)


class OpeningRange(Strategy):
    Params = OpeningRangeParams
    description = "Break of the first N minutes' range, bracketed, flat before the session close"
    params: OpeningRangeParams

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        p, st = self.params, self.state
        close_at = self.context.session_close(bar.start)
        session = (close_at or bar.start).date().isoformat()
        if st.get("session") != session:
            st.clear()
            st.update(session=session, first_start=bar.start.isoformat(), traded=False)
        first_start = bar.start.fromisoformat(st["first_start"])
        if bar.start < first_start + timedelta(minutes=p.range_minutes):
            st["high"] = str(max(Decimal(st.get("high", bar.high)), bar.high))
            st["low"] = str(min(Decimal(st.get("low", bar.low)), bar.low))
            return []
        if close_at is not None and bar.end >= close_at - timedelta(minutes=p.exit_minutes_before_close):
            return [] if position.is_flat else [exit_position(comment="flat before the session close")]
        if st.get("traded") or "high" not in st or not position.is_flat:
            return []
        high, low = Decimal(st["high"]), Decimal(st["low"])
        width = high - low
        if bar.close > high:
            st["traded"] = True
            return [target(p.quantity, stop_loss=low, take_profit=bar.close + p.target_multiple * width,
                           comment=f"close {bar.close} above the opening range high {high}")]
        if p.allow_short and bar.close < low:
            st["traded"] = True
            return [target(-p.quantity, stop_loss=high, take_profit=bar.close - p.target_multiple * width,
                           comment=f"close {bar.close} below the opening range low {low}")]
        return []
