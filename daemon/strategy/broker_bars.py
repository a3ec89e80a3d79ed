"""A `BarSource` backed by a broker's market-data endpoint (`Broker.bars`), aggregated to a strategy's timeframe.

The broker is asked for bars of a base length that tiles the strategy's bars on its calendar: the timeframe
itself up to 30 minutes (every such timeframe divides the half hour, so epoch-aligned broker bars line up
with the 9:30 NYSE and 17:00 CT CME opens), else 30-minute bars for `nyse` and hourly bars for `cme` and
`24x7`. `daemon.strategy.bars.aggregate` then builds the strategy's bars on the calendar's sessions (a `1d` bar is
one session). Only closed, complete bars are returned: a bar that started before the requested window or
ends after `until` is left out. The window grows (doubling, up to `max_lookback`) until `count` bars are
found, so weekends, holidays and the CME break cost no configuration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from brokers.base import Broker, BrokerError
from config.strategies import StrategySettings
from daemon.domain import Bar
from daemon.strategy.bars import BarDataError, CalendarName, CsvBarSource, aggregate, timeframe_delta

HALF_HOUR, HOUR = 1800, 3600


class BarsBroker(Protocol):
    """What this source needs of a broker: `Broker.bars` (`NotImplementedError` where it has no market data)."""

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]: ...


def base_seconds(timeframe: str, calendar: CalendarName) -> int:
    """The length of the broker bars that `timeframe` is built from on `calendar`."""
    seconds = int(timeframe_delta(timeframe).total_seconds())
    align = HALF_HOUR if calendar == "nyse" else HOUR
    return seconds if timeframe != "1d" and seconds <= HALF_HOUR else align


class BrokerBarSource:
    """Bars from a broker (`bars(symbol, timeframe_seconds, start, end)`), see the module docstring."""

    def __init__(self, broker: BarsBroker, *, max_lookback: timedelta = timedelta(days=400)) -> None:
        self.broker = broker
        self.max_lookback = max_lookback

    async def window(self, symbol: str, timeframe: str, calendar: CalendarName, start: datetime,
                     until: datetime) -> list[Bar]:
        """The complete bars of `timeframe` inside [start, until], oldest first."""
        if start.tzinfo is None or until.tzinfo is None:
            raise ValueError("start and until must be timezone-aware")
        try:
            raw = await self.broker.bars(symbol, base_seconds(timeframe, calendar), start, until)
        except NotImplementedError as exc:
            raise BarDataError(f"{symbol}: the broker has no market data ({exc})") from None
        except BrokerError as exc:
            raise BarDataError(f"{symbol}: bars from the broker failed: {exc.reason}") from None
        return [b for b in aggregate(raw, timeframe, calendar) if b.start >= start and b.end <= until]

    async def bars(self, symbol: str, timeframe: str, calendar: CalendarName, until: datetime,
                   count: int) -> list[Bar]:
        """Up to `count` closed bars of `timeframe` ending at or before `until`, oldest first."""
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware")
        step = timeframe_delta(timeframe)
        lookback = min(self.max_lookback, max(step * (max(count, 1) + 1) * 2, timedelta(days=4)))
        while True:
            complete = await self.window(symbol, timeframe, calendar, until - lookback, until)
            if count <= 0 or len(complete) >= count or lookback >= self.max_lookback:
                return complete[-count:] if count > 0 else complete
            lookback = min(self.max_lookback, lookback * 2)


class RoutedBarSource:
    """The runner's one bar source: a strategy's CSV file when it names one, else its account's broker."""

    def __init__(self, csv: CsvBarSource, brokers: Mapping[str, BrokerBarSource]) -> None:
        self.csv = csv
        self.brokers = {symbol.upper(): source for symbol, source in brokers.items()}

    @classmethod
    def for_strategies(cls, strategies: Mapping[str, StrategySettings], brokers: Mapping[str, Broker]
                       ) -> RoutedBarSource:
        by_symbol = {s.symbol: BrokerBarSource(brokers[s.account])
                     for s in strategies.values() if s.data is None and s.account in brokers}
        return cls(CsvBarSource.for_strategies(strategies), by_symbol)

    async def bars(self, symbol: str, timeframe: str, calendar: CalendarName, until: datetime,
                   count: int) -> Sequence[Bar]:
        if symbol.upper() in self.csv.files:
            return await self.csv.bars(symbol, timeframe, calendar, until, count)
        source = self.brokers.get(symbol.upper())
        if source is None:
            raise BarDataError(f"no bar data for {symbol}: give the strategy a `data` CSV file or trade it on a "
                               "broker with market data")
        return await source.bars(symbol, timeframe, calendar, until, count)
