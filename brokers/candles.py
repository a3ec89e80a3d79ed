"""Shared steps of reading a broker's price history as closed `Bar`s: the window, the wire numbers, the keeping.

For adapters whose market data answers OHLCV candles one page (or chunk) at a time: `window` checks the
asked range and cuts it at `now`; `wire_bar` turns one candle's JSON numbers into a `Bar` through their
shortest repr (the price the broker quotes), any malformed value a `BrokerUnavailable` naming the venue;
`ClosedBars` keeps the bars that start in [start, end) and have ended by `now` (a bar still forming is left
out), one per start time however many pages repeat it, oldest first. How the pages are walked is each
venue's own (a page token at Alpaca, fixed date chunks at Schwab).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.base import BrokerUnavailable
from daemon.domain import Bar

# The candle's fields for open, high, low, close and volume, as the venue names them.
Fields = tuple[str, str, str, str, str]


def window(start: datetime, end: datetime, now: datetime) -> datetime:
    """Where fetching [start, end) stops: at `end`, or at `now` when no later bar can have closed."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    return min(end, now)


def number(value: Any, what: str, venue: str) -> Decimal:
    """A JSON number (or numeric string) of the candle as a Decimal; `BrokerUnavailable` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BrokerUnavailable(f"{venue}: {what} is not a number")
    return Decimal(str(value))


def wire_bar(raw: Mapping[str, Any], fields: Fields, symbol: str, at: datetime, step: timedelta, venue: str) -> Bar:
    """One candle starting `at` as a `Bar` of length `step` (a missing volume is 0)."""
    o, h, low, c, v = fields
    try:
        return Bar(symbol=symbol, start=at, end=at + step, open=number(raw.get(o), "open", venue),
                   high=number(raw.get(h), "high", venue), low=number(raw.get(low), "low", venue),
                   close=number(raw.get(c), "close", venue), volume=number(raw.get(v, 0), "volume", venue))
    except ValueError as exc:
        raise BrokerUnavailable(f"{venue}: {exc}") from None


class ClosedBars:
    """The closed bars of [start, end) seen so far (by `now`), one per start time."""

    def __init__(self, start: datetime, end: datetime, now: datetime) -> None:
        self.start, self.end, self.now = start, end, now
        self._by_start: dict[datetime, Bar] = {}

    def add(self, bar: Bar) -> None:
        if self.start <= bar.start < self.end and bar.end <= self.now:
            self._by_start[bar.start] = bar

    def oldest_first(self) -> list[Bar]:
        return [self._by_start[at] for at in sorted(self._by_start)]
