"""Market data of a ccxt exchange: `fetch_ohlcv` candles as closed `Bar`s of the length the engine asks for.

`interval_for` picks the exchange's own candle interval (ccxt `exchange.timeframes`, Binance `/api/v3/klines`
`interval`): the one of exactly the asked length, else the longest that divides it, whose candles are then
summed into epoch-aligned bars (a bucket missing any of its candles is left out rather than shown short).
`fetch_bars` pages forward from `start` (`since`, `limit` candles a call, Binance's maximum 1000) until
`end`, and keeps only closed bars: one whose end is after the exchange clock `now` is still forming.
Prices and volumes arrive as JSON numbers through ccxt; they become Decimals through their shortest repr,
which is the exchange's decimal string for any price it quotes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.candles import window
from daemon.domain import Bar

PAGE_LIMIT = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Fetch = Callable[[str, int, int], Awaitable[list[list[Any]]]]  # (interval, since ms, limit) -> candles


def interval_for(timeframes: Mapping[str, Any], seconds: int, parse: Callable[[str], int]) -> tuple[str, int]:
    """(the exchange interval to ask for, its length in seconds); `NotImplementedError` when none tiles `seconds`."""
    lengths = {name: int(parse(name)) for name in timeframes}
    exact = [name for name, length in lengths.items() if length == seconds]
    if exact:
        return exact[0], seconds
    tiling = [(length, name) for name, length in lengths.items() if 0 < length < seconds and seconds % length == 0]
    if not tiling:
        offered = ", ".join(sorted(timeframes, key=lambda n: lengths[n])) or "none"
        raise NotImplementedError(f"no candle interval of this exchange builds {seconds} s bars (offered: {offered})")
    length, name = max(tiling)
    return name, length


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _bar(symbol: str, at: datetime, step: timedelta, candles: list[list[Any]]) -> Bar:
    return Bar(symbol=symbol, start=at, end=at + step, open=_dec(candles[0][1]),
               high=max(_dec(c[2]) for c in candles), low=min(_dec(c[3]) for c in candles),
               close=_dec(candles[-1][4]), volume=sum((_dec(c[5]) for c in candles), Decimal(0)))


async def fetch_bars(fetch: Fetch, interval: str, base_seconds: int, symbol: str, seconds: int,
                     start: datetime, end: datetime, now: datetime, *, page_limit: int = PAGE_LIMIT) -> list[Bar]:
    """Closed bars of `seconds` starting in [start, end), oldest first, built from `interval` candles."""
    base_ms, step = base_seconds * 1000, timedelta(seconds=seconds)
    stop_ms = int(window(start, end, now).timestamp() * 1000)
    since = int(start.timestamp() * 1000)
    candles: dict[int, list[Any]] = {}
    while since < stop_ms:
        page = await fetch(interval, since, page_limit)
        fresh = [c for c in page if isinstance(c, list | tuple) and len(c) >= 6 and int(c[0]) >= since]
        if not fresh:
            break
        for c in fresh:
            candles[int(c[0])] = list(c)
        since = max(int(c[0]) for c in fresh) + base_ms
    buckets: dict[datetime, list[list[Any]]] = {}
    for opened in sorted(candles):
        at = datetime.fromtimestamp(opened / 1000, UTC)
        key = EPOCH + ((at - EPOCH) // step) * step
        buckets.setdefault(key, []).append(candles[opened])
    per_bar = seconds // base_seconds
    return [_bar(symbol, key, step, group) for key, group in sorted(buckets.items())
            if start <= key < end and key + step <= now and len(group) == per_bar]
