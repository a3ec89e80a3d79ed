"""Schwab market data: price history (`GET /marketdata/v1/pricehistory`) as closed `Bar`s.

The wire format follows schwab-py's `Client.get_price_history` (the reference, since the contract in
`shared/contracts` covers only the Trader API): query `symbol`, `periodType=day`, `frequencyType=minute`,
`frequency` (1, 5, 10, 15 or 30: the only intraday lengths Schwab serves, so other lengths are refused),
`startDate`/`endDate` (epoch milliseconds) and `needExtendedHoursData=false` (regular session only, the
bars the NYSE calendar keeps). The answer is `{"candles": [{open, high, low, close, volume, datetime}],
"symbol", "empty"}` with `datetime` the candle's start in epoch milliseconds. Schwab does not page, so a
long window is asked for in `CHUNK`s. A candle whose end is after `now` is still forming and left out;
an unknown symbol answers `empty` and gives no bars. Prices arrive as JSON numbers and become Decimals
through their shortest repr.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from brokers.base import BrokerUnavailable
from brokers.candles import ClosedBars, window, wire_bar
from daemon.domain import Bar

MINUTES = (1, 5, 10, 15, 30)
CHUNK = timedelta(days=10)

Get = Callable[[Mapping[str, Any]], Awaitable[Any]]  # query parameters -> decoded JSON answer


def frequency_of(seconds: int) -> int:
    """Schwab's minute `frequency` for bars of `seconds`; `NotImplementedError` for a length it does not serve."""
    if seconds % 60 == 0 and seconds // 60 in MINUTES:
        return seconds // 60
    raise NotImplementedError(f"Schwab price history has 1, 5, 10, 15 and 30 minute candles, not {seconds} s")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def to_bar(raw: Mapping[str, Any], symbol: str, step: timedelta) -> Bar:
    """One candle (`datetime` its start, epoch ms) as a `Bar` of length `step`."""
    stamp = raw.get("datetime")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise BrokerUnavailable("schwab price history: a candle has no datetime")
    return wire_bar(raw, ("open", "high", "low", "close", "volume"), symbol, datetime.fromtimestamp(stamp / 1000, UTC),
                    step, "schwab price history")


async def fetch_bars(get: Get, wire_symbol: str, symbol: str, seconds: int, start: datetime, end: datetime,
                     now: datetime) -> list[Bar]:
    """Closed bars of `seconds` starting in [start, end), oldest first, named `symbol`."""
    stop = window(start, end, now)
    frequency, step = frequency_of(seconds), timedelta(seconds=seconds)
    out = ClosedBars(start, end, now)
    at = start
    while at < stop:
        until = min(stop, at + CHUNK)
        answer = await get({"symbol": wire_symbol, "periodType": "day", "frequencyType": "minute",
                            "frequency": frequency, "startDate": _ms(at), "endDate": _ms(until),
                            "needExtendedHoursData": "false"})
        if not isinstance(answer, Mapping) or not isinstance(answer.get("candles") or [], list):
            raise BrokerUnavailable("schwab price history: the answer has no `candles` list")
        for raw in answer.get("candles") or []:
            out.add(to_bar(raw, symbol, step))
        at = until
    return out.oldest_first()
