"""An entry's extra shapes, carried out: ATR exits measured from the account's bars, time exits armed.

Bars come from the account's broker where it serves market data (`Broker.bars`), else from the CSV file the
account configures for the symbol or its futures root (`[accounts.<name>] bar_files = { ES = "es_5m.csv" }`).
An ATR exit is `atr` x the ATR (`daemon.atr`) of the last `period` closed bars of its timeframe, rounded to
the tick (at least one tick); without enough bars the entry is refused, never sent without its stop. A time exit's due
time is computed once, when it is armed: `after` a duration, at the `bars`-th bar close after the entry on
the account's session calendar, or at the next `at` time of day in the exchange's zone on a trading day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from brokers.base import Broker
from config.settings import Settings
from daemon.atr import NoBars, average_true_range
from daemon.domain import Bar, Intent, OrderRequest
from daemon.planner import Instrument, PlanError, round_to_tick
from daemon.shapes import AtrOffset, OffsetUnit, PriceOffset, TimeExit
from daemon.store.time_exits import TimeExitRecords
from daemon.strategy.bars import (
    BarDataError,
    CalendarName,
    CsvBarSource,
    calendar_zone,
    next_bar_close,
    session_for_day,
)
from daemon.strategy.broker_bars import BrokerBarSource

_CONTINUOUS = re.compile(r"\d+!$")  # ES1! -> ES: a bar file may be named by the futures root


class AccountBars:
    """Closed bars for an account's symbol: its broker's market data, else its configured CSV file."""

    def __init__(self, brokers: Mapping[str, Broker], files: Mapping[str, Mapping[str, Path]]) -> None:
        self.brokers = {name: BrokerBarSource(broker) for name, broker in brokers.items()}
        self.files = {name: CsvBarSource(dict(paths)) for name, paths in files.items() if paths}

    async def bars(self, account: str, symbol: str, timeframe: str, calendar: CalendarName, until: datetime,
                   count: int) -> Sequence[Bar]:
        """Up to `count` closed bars ending at or before `until`; `NoBars` says why there are none."""
        problem = f"account {account} has no broker"
        source = self.brokers.get(account)
        if source is not None:
            try:
                found = await source.bars(symbol, timeframe, calendar, until, count)
                if len(found) >= count:
                    return found
                problem = f"the broker has {len(found)} closed {timeframe} bars of {symbol}"
            except BarDataError as exc:
                problem = str(exc)
        csv = self.files.get(account)
        named = next((key for key in (symbol.upper(), _CONTINUOUS.sub("", symbol.upper()))
                      if csv is not None and key in csv.files), None)
        if csv is None or named is None:
            raise NoBars(f"{problem}, and no bar_files CSV is configured for {symbol} on {account}")
        try:
            return await csv.bars(named, timeframe, calendar, until, count)
        except BarDataError as exc:
            raise NoBars(f"{problem}; the bar file failed: {exc}") from None


class EntryExits:
    """`EntryShapes` for the executor: `calendars` names each account's session calendar."""

    def __init__(self, *, bars: AccountBars, store: TimeExitRecords, calendars: Mapping[str, CalendarName]) -> None:
        self.source = bars
        self.store = store
        self.calendars = calendars

    def calendar(self, account: str) -> CalendarName:
        return self.calendars.get(account, "nyse")

    async def atr(self, account: str, symbol: str, offset: AtrOffset, now: datetime) -> Decimal:
        """The ATR of `offset`'s bars of `symbol` on `account`, at `now`."""
        try:
            bars = await self.source.bars(account, symbol, offset.timeframe, self.calendar(account), now,
                                          offset.period + 1)
            return average_true_range(bars, offset.period)
        except NoBars as exc:
            raise PlanError(f"no ATR for the {symbol} exit ({offset.period} x {offset.timeframe}): {exc}; "
                            "nothing was sent") from None

    async def distance(self, account: str, symbol: str, offset: AtrOffset, tick: Decimal, now: datetime) -> Decimal:
        """`offset.atr` x the ATR, rounded to the tick, at least one tick."""
        atr = await self.atr(account, symbol, offset, now)
        return max(round_to_tick(offset.atr * atr, tick), tick)

    async def measure(self, intent: Intent, instrument: Instrument, now: datetime) -> Intent:
        measured: dict[str, PriceOffset] = {}
        for name in ("take_profit", "stop_loss"):
            level = getattr(intent, name)
            if isinstance(level, AtrOffset):
                distance = await self.distance(intent.account, intent.symbol, level, instrument.tick_size, now)
                measured[name] = PriceOffset(unit=OffsetUnit.POINTS, value=distance)
        return intent.model_copy(update=measured) if measured else intent

    def arm(self, intent: Intent, entry: OrderRequest, now: datetime) -> None:
        spec = intent.time_exit
        if spec is None:
            return
        self.store.arm_time_exit(entry_signal_id=intent.signal_id, account=intent.account, symbol=intent.symbol,
                                 side=entry.side, quantity=entry.quantity, spec=spec.describe(),
                                 due_at=due_at(spec, self.calendar(intent.account), now), now=now)


def due_at(spec: TimeExit, calendar: CalendarName, now: datetime) -> datetime:
    """When a time exit armed at `now` is due."""
    if spec.after is not None:
        return now + spec.after
    if spec.bars is not None:
        assert spec.timeframe is not None
        due = now
        for _ in range(spec.bars):
            due = next_bar_close(calendar, spec.timeframe, due)
        return due
    assert spec.at is not None
    zone = calendar_zone(calendar)
    day = now.astimezone(zone).date()
    for _ in range(30):
        candidate = datetime.combine(day, spec.at, tzinfo=zone)
        if candidate > now and (calendar == "24x7" or session_for_day(calendar, day) is not None):
            return candidate
        day += timedelta(days=1)
    raise PlanError(f"no {calendar} trading day within 30 days for an exit at {spec.at:%H:%M}")


def entry_exits(settings: Settings, store: TimeExitRecords, brokers: Mapping[str, Broker]) -> EntryExits:
    """The daemon's `EntryShapes`: each account's bars and session calendar from its settings."""
    accounts = settings.enabled_accounts()
    calendars: dict[str, CalendarName] = {
        name: "cme" if account.is_futures else "24x7" if account.broker == "ccxt" else "nyse"
        for name, account in accounts.items()}
    files = {name: {s.upper(): path for s, path in account.bar_files.items()} for name, account in accounts.items()}
    return EntryExits(bars=AccountBars(brokers, files), store=store, calendars=calendars)
