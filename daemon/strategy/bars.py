"""Bars for strategies: CSV loading, trading-session windows, aggregation to a timeframe, and bar-close times.

Timeframes are `1m 2m 3m 5m 10m 15m 30m 1h 2h 4h 1d`. Intraday bars are anchored to the session open of
the strategy's calendar and the last bar of a session ends at its close (so an NYSE 1h bar series is
9:30, 10:30, ..., 15:30-16:00, and 15:30-13:00 is cut at 13:00 on an early close); a `1d` bar is one
whole session. Calendars:

- `nyse`: regular session 9:30-16:00 America/New_York on NYSE business days (holidays skipped, early
  closes honoured, `daemon.calendar`); bars outside the regular session are dropped.
- `cme`: the Globex trading day from 17:00 CT the evening before to 16:00 CT (the 16:00-17:00 CT break and
  the weekend have no bars). CME holidays are not known, a holiday session is simply empty.
- `24x7`: UTC days.

A CSV file has a header with a time column (`time`, `timestamp`, `datetime` or `date`) and `open`, `high`,
`low`, `close`, optional `volume` (case-insensitive). Times are ISO 8601 or Unix seconds; times without an
offset are in the calendar's zone (America/New_York, America/Chicago, UTC). The time of a row is the start
of its bar, except for a date-only row (daily data), which is that session. Bars are returned sorted.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from config.strategies import StrategySettings
from daemon import calendar as cal
from strategies.base import Bar

CalendarName = Literal["nyse", "cme", "24x7"]
TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1), "2m": timedelta(minutes=2), "3m": timedelta(minutes=3),
    "5m": timedelta(minutes=5), "10m": timedelta(minutes=10), "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30), "1h": timedelta(hours=1), "2h": timedelta(hours=2), "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}
CME_DAILY_CLOSE = time(16, 0)
_TIME_COLUMNS = ("time", "timestamp", "datetime", "date")


class BarDataError(Exception):
    """A bar file or bar series that cannot be used; the message names the file and line."""


def timeframe_delta(timeframe: str) -> timedelta:
    try:
        return TIMEFRAMES[timeframe]
    except KeyError:
        raise ValueError(f"unknown timeframe {timeframe!r}; use one of {', '.join(TIMEFRAMES)}") from None


def calendar_zone(calendar: CalendarName) -> ZoneInfo:
    return {"nyse": cal.NEW_YORK, "cme": cal.CHICAGO}.get(calendar, ZoneInfo("UTC"))


@dataclass(frozen=True)
class Session:
    day: date
    open: datetime
    close: datetime


def session_for_day(calendar: CalendarName, day: date) -> Session | None:
    """The trading session labelled `day`, or None when there is none (weekend, NYSE holiday)."""
    if calendar == "nyse":
        if not cal.is_business_day(day):
            return None
        return Session(day, cal.session_open(day), cal.session_close(day))
    if calendar == "cme":
        if day.weekday() >= 5:
            return None
        close = datetime.combine(day, CME_DAILY_CLOSE, tzinfo=cal.CHICAGO)
        return Session(day, cal.futures_session_start(day), close)
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return Session(day, start, start + timedelta(days=1))


def session_of(calendar: CalendarName, ts: datetime) -> Session | None:
    """The session containing `ts` (open inclusive, close exclusive), or None outside every session."""
    if ts.tzinfo is None:
        raise ValueError("session_of needs a timezone-aware time")
    if calendar == "cme":
        day = cal.futures_session_date(ts)
    else:
        day = ts.astimezone(calendar_zone(calendar)).date()
    session = session_for_day(calendar, day)
    if session is None or not session.open <= ts < session.close:
        return None
    return session


def session_close_at(calendar: CalendarName, ts: datetime) -> datetime | None:
    """When the session containing `ts` closes (for `strategies.base.Context.session_close`)."""
    session = session_of(calendar, ts)
    return None if session is None else session.close


def bar_window(calendar: CalendarName, timeframe: str, ts: datetime) -> tuple[datetime, datetime] | None:
    """(start, end) of the bar of `timeframe` containing `ts`, or None outside the sessions."""
    session = session_of(calendar, ts)
    if session is None:
        return None
    step = timeframe_delta(timeframe)
    if timeframe == "1d":
        return session.open, session.close
    index = (ts - session.open) // step
    start = session.open + index * step
    return start, min(start + step, session.close)


def bar_closes(calendar: CalendarName, timeframe: str, day: date) -> list[datetime]:
    """Every bar close of the session labelled `day`, in order (empty when there is no session)."""
    session = session_for_day(calendar, day)
    if session is None:
        return []
    if timeframe == "1d":
        return [session.close]
    step = timeframe_delta(timeframe)
    closes, at = [], session.open + step
    while at < session.close:
        closes.append(at)
        at += step
    closes.append(session.close)
    return closes


def _days_around(calendar: CalendarName, ts: datetime) -> date:
    return ts.astimezone(calendar_zone(calendar)).date()


def next_bar_close(calendar: CalendarName, timeframe: str, after: datetime) -> datetime:
    """The first bar close strictly after `after`, skipping weekends and holidays."""
    day = _days_around(calendar, after) - timedelta(days=1)
    for _ in range(30):
        for close in bar_closes(calendar, timeframe, day):
            if close > after:
                return close.astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError(f"no {calendar} session within 30 days after {after.isoformat()}")


def last_bar_close(calendar: CalendarName, timeframe: str, at: datetime) -> datetime:
    """The latest bar close at or before `at`."""
    day = _days_around(calendar, at) + timedelta(days=1)
    for _ in range(30):
        for close in reversed(bar_closes(calendar, timeframe, day)):
            if close <= at:
                return close.astimezone(UTC)
        day -= timedelta(days=1)
    raise ValueError(f"no {calendar} session within 30 days before {at.isoformat()}")


def aggregate(bars: Iterable[Bar], timeframe: str, calendar: CalendarName) -> list[Bar]:
    """Combine sorted bars into bars of `timeframe` on `calendar`; bars outside every session are dropped."""
    out: list[Bar] = []
    current: list[Bar] = []
    window: tuple[datetime, datetime] | None = None

    def flush() -> None:
        if current and window is not None:
            out.append(Bar(
                symbol=current[0].symbol, start=window[0].astimezone(UTC), end=window[1].astimezone(UTC),
                open=current[0].open, high=max(b.high for b in current), low=min(b.low for b in current),
                close=current[-1].close, volume=sum((b.volume for b in current), Decimal(0)),
            ))

    for bar in bars:
        found = bar_window(calendar, timeframe, bar.start)
        if found is None:
            continue
        if found != window:
            flush()
            current, window = [], found
        current.append(bar)
    flush()
    return out


def _parse_time(text: str, zone: ZoneInfo, where: str) -> tuple[datetime, bool]:
    """(time, is_date_only)."""
    text = text.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC), False
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone), True
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BarDataError(f"{where}: bad time {text!r}") from exc
    return (ts.replace(tzinfo=zone) if ts.tzinfo is None else ts), False


def _number(row: dict[str, str], name: str, where: str, default: str | None = None) -> Decimal:
    text = row.get(name)
    if text is None or text.strip() == "":
        if default is None:
            raise BarDataError(f"{where}: missing {name}")
        text = default
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise BarDataError(f"{where}: bad {name} {text!r}") from exc
    if not value.is_finite():
        raise BarDataError(f"{where}: bad {name} {text!r}")
    return value


def load_csv(path: str | os.PathLike[str], symbol: str = "", calendar: CalendarName = "nyse") -> list[Bar]:
    """Read OHLCV bars from a CSV file (see the module docstring); `symbol` defaults to the file's stem."""
    path = Path(path)
    symbol = (symbol or path.stem).upper()
    zone = calendar_zone(calendar)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = {name.strip().lower(): name for name in reader.fieldnames or []}
            time_col = next((columns[c] for c in _TIME_COLUMNS if c in columns), None)
            missing = [c for c in ("open", "high", "low", "close") if c not in columns]
            if time_col is None or missing:
                raise BarDataError(f"{path}: needs a time column ({'/'.join(_TIME_COLUMNS)}) and open, high, "
                                   f"low, close; missing {', '.join(missing) or 'time'}")
            rows = [(f"{path} line {reader.line_num}", {k.strip().lower(): v for k, v in row.items() if k})
                    for row in reader]
            time_key = time_col.strip().lower()
    except OSError as exc:
        raise BarDataError(f"{path}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BarDataError(f"{path}: not a readable CSV file ({exc})") from exc
    bars: list[Bar] = []
    for where, row in rows:
        start, date_only = _parse_time(row.get(time_key) or "", zone, where)
        if date_only:
            session = session_for_day(calendar, start.date())
            if session is None:
                raise BarDataError(f"{where}: {start.date()} has no {calendar} session")
            start, end = session.open, session.close
        else:
            end = start + timedelta(minutes=1)  # refined below from the spacing of the rows
        try:
            bars.append(Bar(symbol=symbol, start=start.astimezone(UTC), end=end.astimezone(UTC),
                            open=_number(row, "open", where), high=_number(row, "high", where),
                            low=_number(row, "low", where), close=_number(row, "close", where),
                            volume=_number(row, "volume", where, default="0")))
        except ValueError as exc:
            raise BarDataError(f"{where}: {exc}") from exc
    bars.sort(key=lambda b: b.start)
    return _with_spacing(bars)


def _with_spacing(bars: list[Bar]) -> list[Bar]:
    """Give intraday rows an end: the most common gap between consecutive starts (the file's timeframe)."""
    gaps: dict[timedelta, int] = {}
    for a, b in itertools.pairwise(bars):
        gap = b.start - a.start
        if timedelta(0) < gap < timedelta(hours=12):
            gaps[gap] = gaps.get(gap, 0) + 1
    if not gaps:
        return bars
    step = max(gaps, key=lambda g: gaps[g])
    return [b if b.end - b.start != timedelta(minutes=1) else
            Bar(b.symbol, b.start, b.start + step, b.open, b.high, b.low, b.close, b.volume) for b in bars]


class BarSource(Protocol):
    """Where the runner gets bars: a CSV file today, a broker's market-data endpoint later."""

    async def bars(self, symbol: str, timeframe: str, calendar: CalendarName, until: datetime,
                   count: int) -> Sequence[Bar]:
        """Up to `count` closed bars of `timeframe` ending at or before `until`, oldest first."""
        ...


class CsvBarSource:
    """Bars from CSV files, one per symbol (`{symbol: path}`), re-read when the file changes."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = {symbol.upper(): Path(path) for symbol, path in files.items()}
        self._cache: dict[tuple[str, CalendarName], tuple[float, list[Bar]]] = {}

    @classmethod
    def for_strategies(cls, strategies: Mapping[str, StrategySettings]) -> CsvBarSource:
        """The files named by the strategies' `data` settings, by symbol."""
        return cls({s.symbol: s.data for s in strategies.values() if s.data is not None})

    def add(self, symbol: str, path: Path) -> None:
        self.files[symbol.upper()] = Path(path)

    def _load(self, symbol: str, calendar: CalendarName) -> list[Bar]:
        path = self.files.get(symbol.upper())
        if path is None:
            raise BarDataError(f"no bar file configured for {symbol}")
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            raise BarDataError(f"{path}: {exc.strerror or exc}") from exc
        cached = self._cache.get((symbol, calendar))
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_csv(path, symbol, calendar))
            self._cache[(symbol, calendar)] = cached
        return cached[1]

    async def bars(self, symbol: str, timeframe: str, calendar: CalendarName, until: datetime,
                   count: int) -> list[Bar]:
        raw = [b for b in self._load(symbol, calendar) if b.end <= until]
        closed = [b for b in aggregate(raw, timeframe, calendar) if b.end <= until]
        return closed[-count:] if count > 0 else closed
