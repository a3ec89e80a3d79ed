"""Summary figures of a replay: total and buy-and-hold return, average trade, expectancy, bars held, exposure.

The figures that backtesting.py also computes follow its definitions, so the two can be compared:

- `total_return_pct`: final equity over starting equity, minus one (backtesting.py's "Return [%]").
- `buy_and_hold_return_pct`: last bar's close over the first bar's close, minus one ("Buy & Hold Return [%]").
- `exposure_pct`: share of the bars on which a position was held at some moment, the bar of the entry and of
  the exit included and a position still open at the end counted to the last bar ("Exposure Time [%]").
- `avg_trade_pct`: geometric mean of the trades' returns ("Avg. Trade [%]"), a trade's return being its net
  P&L over its entry notional; `expectancy_pct`: their arithmetic mean ("Expectancy [%]").
- `avg_trade`: mean net P&L per trade in money, which is also the expectancy in money
  (win rate x average win - loss rate x average loss); `avg_win` / `avg_loss` are its two halves.
- `avg_bars_held`: mean of exit bar minus entry bar over the closed trades.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel

from daemon.domain import ZERO
from daemon.strategy.trades import Trade
from strategies.base import Bar


class ReplayStats(BaseModel):
    total_return_pct: float
    buy_and_hold_return_pct: float | None
    exposure_pct: float
    avg_trade: Decimal | None
    avg_win: Decimal | None
    avg_loss: Decimal | None  # negative: the mean of the losing trades
    best_trade: Decimal | None
    worst_trade: Decimal | None
    avg_trade_pct: float | None
    expectancy_pct: float | None
    avg_bars_held: float | None


def _mean(values: Sequence[Decimal]) -> Decimal | None:
    return sum(values, ZERO) / len(values) if values else None


def geometric_mean_pct(returns_pct: Sequence[float]) -> float | None:
    """Geometric mean of returns in %, 0 when any return loses everything (backtesting.py's convention)."""
    if not returns_pct:
        return None
    growth = [1 + r / 100 for r in returns_pct]
    if any(g <= 0 for g in growth):
        return 0.0
    return (math.exp(sum(math.log(g) for g in growth) / len(growth)) - 1) * 100


def compute(trades: Sequence[Trade], bars: Sequence[Bar], starting_equity: Decimal, final_equity: Decimal,
            exposed_bars: int) -> ReplayStats:
    """The figures of the module docstring; `exposed_bars` is how many bars held a position at some moment."""
    nets = [t.net_pnl for t in trades]
    returns = [t.return_pct for t in trades if t.return_pct is not None]
    held = [t.bars_held for t in trades if t.bars_held is not None]
    first, last = (bars[0].close, bars[-1].close) if bars else (ZERO, ZERO)
    return ReplayStats(
        total_return_pct=float((final_equity - starting_equity) / starting_equity * 100),
        buy_and_hold_return_pct=float((last - first) / first * 100) if first > 0 else None,
        exposure_pct=exposed_bars / len(bars) * 100 if bars else 0.0,
        avg_trade=_mean(nets), avg_win=_mean([n for n in nets if n > 0]), avg_loss=_mean([n for n in nets if n < 0]),
        best_trade=max(nets, default=None), worst_trade=min(nets, default=None),
        avg_trade_pct=geometric_mean_pct(returns), expectancy_pct=statistics.fmean(returns) if returns else None,
        avg_bars_held=statistics.fmean(held) if held else None,
    )
