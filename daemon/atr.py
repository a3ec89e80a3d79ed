"""Average True Range of a bar series: the mean of the last `period` true ranges (pure, Decimal).

The true range of a bar is the largest of its high - low, |high - previous close| and |low - previous close|;
the ATR here is the simple mean of the last `period` of them (pandas' `tr.rolling(period).mean()`), so it
needs `period + 1` bars: the first one only lends its close.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import pairwise

from daemon.domain import Bar


class NoBars(ValueError):
    """Not enough bars to compute an ATR from; the message says which and how many."""


def true_ranges(bars: Sequence[Bar]) -> list[Decimal]:
    """One true range per bar after the first, oldest first."""
    return [max(bar.high - bar.low, abs(bar.high - before.close), abs(bar.low - before.close))
            for before, bar in pairwise(bars)]


def average_true_range(bars: Sequence[Bar], period: int) -> Decimal:
    """The ATR of the last `period` bars of `bars` (oldest first); `NoBars` when there are fewer than
    `period + 1`."""
    if period < 1:
        raise ValueError("the ATR period must be at least 1")
    if len(bars) < period + 1:
        raise NoBars(f"an ATR of {period} bars needs {period + 1} closed bars, {len(bars)} available")
    ranges = true_ranges(bars[-(period + 1):])
    return sum(ranges, Decimal(0)) / Decimal(period)
