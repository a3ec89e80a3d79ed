"""Value types of order shapes: exits relative to the entry (ticks ... ATR), trails, ladders, time exits, quantities.

Ground floor beside `daemon.domain` (whose `Intent` carries them); imports nothing from the project.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Timeframe = Literal["1m", "2m", "3m", "5m", "10m", "15m", "30m", "1h", "2h", "4h", "1d"]  # bar lengths


_DURATION = re.compile(r"^(\d+)\s*(s|m|h)$")
_BARS = re.compile(r"^(\d+)\s*bars?(?:\s+(?:of\s+)?(\w+))?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


class OffsetUnit(StrEnum):
    """An exit's distance from the entry price; `dollars` of P&L per contract or share, or for the position."""

    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"
    POSITION_DOLLARS = "position_dollars"
    R = "r"  # multiples of the stop-loss's distance from the entry (take-profit levels only)


class QuantityType(StrEnum):
    """What an entry's `quantity` counts (TradersPost's `quantityType` names)."""

    FIXED_QUANTITY = "fixed_quantity"  # shares or contracts
    DOLLAR_AMOUNT = "dollar_amount"  # notional in the account's currency
    PERCENT_OF_EQUITY = "percent_of_equity"  # notional as a percent of equity
    RISK_DOLLAR_AMOUNT = "risk_dollar_amount"  # what is lost if the stop-loss fills
    RISK_PERCENT = "risk_percent"  # that loss as a percent of equity


class PriceOffset(BaseModel):
    """An exit price relative to the entry price: `{"unit": "ticks", "value": 8}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: OffsetUnit
    value: Decimal = Field(gt=0)


class Trail(BaseModel):
    """How far a trailing stop follows the best price since it was placed: a price `distance`, or a `percent`
    of that best price (exactly one). The stop only ever moves in the position's favour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    distance: Decimal | None = Field(None, gt=0)
    percent: Decimal | None = Field(None, gt=0, lt=100)

    @model_validator(mode="after")
    def _one(self) -> Trail:
        if (self.distance is None) == (self.percent is None):
            raise ValueError("a trail is a distance or a percent (exactly one)")
        return self


class AtrOffset(BaseModel):
    """An exit `atr` times the Average True Range of the last `period` bars of `timeframe` from the entry:
    `{"atr": 2, "period": 14, "timeframe": "5m"}`; the executor turns it into points before planning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atr: Decimal = Field(gt=0)
    period: int = Field(14, ge=1, le=500)
    timeframe: Timeframe = "5m"


class TimeExit(BaseModel):
    """When an entry's position is closed at market: `after` a duration, after `bars` closed bars of
    `timeframe`, or `at` a time of day in the exchange's time zone (the next one after the entry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after: timedelta | None = Field(None, gt=timedelta(0))
    bars: int | None = Field(None, ge=1, le=10_000)
    timeframe: Timeframe | None = None
    at: time | None = None

    def describe(self) -> str:
        if self.after is not None:
            return f"after {int(self.after.total_seconds() // 60)}m"
        if self.bars is not None:
            return f"after {self.bars} bars of {self.timeframe}"
        return f"at {self.at:%H:%M}" if self.at is not None else "never"


def parse_time_exit(after: Any, at: Any, atr_timeframe: str | None = None) -> TimeExit | None:
    """`exit_after` (`"45m"`, `"2h"`, `"90s"`, `"3 bars"`, `"3 bars of 15m"`; bars of `atr_timeframe` unless
    named) or `exit_at` (`"15:55"`) as a `TimeExit`, one of them at most; ValueError says what is wrong."""
    if after in (None, "") and at in (None, ""):
        return None
    if after not in (None, "") and at not in (None, ""):
        raise ValueError("send exit_after or exit_at, not both")
    if at not in (None, ""):
        try:
            return TimeExit(at=time.fromisoformat(str(at).strip()))
        except ValueError:
            raise ValueError(f"exit_at must be a time of day like 15:55 (exchange time); got {at!r}") from None
    text = str(after).strip().lower()
    duration, bars = _DURATION.match(text), _BARS.match(text)
    if duration is not None and int(duration[1]) > 0:
        return TimeExit(after=timedelta(seconds=int(duration[1]) * _SECONDS[duration[2]]))
    if bars is None or not 1 <= int(bars[1]) <= 10_000:
        raise ValueError(f"exit_after must be a duration (45m, 2h, 90s) or a bar count (3 bars, 3 bars of 15m); "
                         f"got {after!r}")
    timeframe = bars[2] or atr_timeframe
    if timeframe is None:
        raise ValueError(f"exit_after {after!r} counts bars of which timeframe? write e.g. \"{bars[1]} bars of 5m\"")
    if timeframe not in get_args(Timeframe):
        raise ValueError(f"exit_after's timeframe must be one of {', '.join(get_args(Timeframe))}; got {timeframe!r}")
    return TimeExit(bars=int(bars[1]), timeframe=timeframe)


class TakeProfitLevel(BaseModel):
    """One level of a take-profit ladder: its price (or distance), and how much of the entry it closes:
    `quantity` units, or `percent` of the entry; neither means what the other levels leave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: Decimal | PriceOffset
    quantity: Decimal | None = Field(default=None, gt=0)
    percent: Decimal | None = Field(default=None, gt=0, le=100)


class BreakEven(BaseModel):
    """Move the stop of what is left to the entry's fill price (plus `offset` in the trade's favour) once
    take-profit level `after` (1 = the first) has filled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after: int = Field(default=1, ge=1)
    offset: PriceOffset | None = None


class Ladder(BaseModel):
    """Several take-profit levels sharing one stop-loss, and an optional move of that stop to break-even."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: tuple[TakeProfitLevel, ...] = Field(min_length=1)
    break_even: BreakEven | None = None
