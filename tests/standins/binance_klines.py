"""Candles of the Binance spot stand-in: one-minute klines per symbol, served as `/api/v3/klines` answers them.

`Klines.add_minutes` stores one-minute OHLCV candles; `answer` builds the candles of the asked `interval`
from them (epoch-aligned, `1d` at UTC midnight), whose open time lies in [startTime, endTime], oldest first,
at most `limit` (default 500, at most 1000, else -1130). Without `startTime` the latest `limit` come back,
as on Binance. The last candle may still be forming (Binance includes it). Each row is the spec's twelve
fields: open time, OHLC and volume as 8-decimal strings, close time (open + interval - 1 ms), quote volume,
trade count, taker buy base and quote volume, and "0". `1s`, `1w` and `1M` are not served (-1120).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.standins.binance_book import BinanceError, s8

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d")


@dataclass(frozen=True)
class Candle:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


def _ms(at: datetime) -> int:
    return int((at - EPOCH).total_seconds() * 1000)


class Klines:
    def __init__(self) -> None:
        self.minutes: dict[str, list[Candle]] = {}

    def add_minutes(self, symbol: str, candles: list[Candle]) -> None:
        merged = {c.start: c for c in self.minutes.get(symbol, [])} | {c.start: c for c in candles}
        self.minutes[symbol] = [merged[t] for t in sorted(merged)]

    def answer(self, params: dict[str, str]) -> list[list[Any]]:
        interval = params.get("interval", "")
        if interval not in INTERVALS:
            raise BinanceError(-1120, "Invalid interval.")
        limit = int(params.get("limit", "500"))
        if not 0 < limit <= 1000:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        size = timedelta(seconds=int(interval[:-1]) * UNIT[interval[-1]])
        buckets: dict[datetime, list[Candle]] = {}
        for c in self.minutes.get(params["symbol"], []):
            buckets.setdefault(EPOCH + ((c.start - EPOCH) // size) * size, []).append(c)
        start, end = int(params.get("startTime", "0")), int(params.get("endTime", str(2**62)))
        keys = [k for k in sorted(buckets) if start <= _ms(k) <= end]
        keys = keys[:limit] if "startTime" in params else keys[-limit:]
        out = []
        for key in keys:
            group = buckets[key]
            volume = sum((c.volume for c in group), Decimal(0))
            quote = sum((c.volume * c.close for c in group), Decimal(0))
            out.append([_ms(key), s8(group[0].open), s8(max(c.high for c in group)), s8(min(c.low for c in group)),
                        s8(group[-1].close), s8(volume), _ms(key + size) - 1, s8(quote), len(group),
                        s8(volume / 2), s8(quote / 2), "0"])
        return out
