"""Alpaca market data: historical stock bars (`GET /v2/stocks/bars` on the data host) as closed `Bar`s.

The wire format follows alpaca-py's `StockHistoricalDataClient.get_stock_bars` (the reference, since no
published contract covers the data API): query `symbols`, `timeframe` (`<n>Min` 1-59, `<n>Hour` 1-23),
`start`/`end` (RFC 3339, both inclusive), `limit` (at most 10000 a page), `page_token`, `adjustment`,
`feed` and `sort=asc`; the answer is `{"bars": {symbol: [{t, o, h, l, c, v, n, vw}]}, "next_page_token"}`,
and `next_page_token` is followed until it is null. Only lengths that divide the hour (minutes) or the day
(hours) are asked for, because those bars line up with the epoch and the 9:30 New York open; a day bar
(one session, stamped at New York midnight) is built by the daemon from 30-minute bars instead. A bar whose
end is after `now` is still forming and left out. Prices arrive as JSON numbers and become Decimals through
their shortest repr, which is the price Alpaca quotes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from brokers.alpaca.models import iso, parse_time
from brokers.base import BrokerUnavailable
from brokers.candles import ClosedBars, window, wire_bar
from daemon.domain import Bar

PAGE_LIMIT = 10_000  # Alpaca's maximum `limit`
MAX_PAGES = 1_000

Get = Callable[[Mapping[str, Any]], Awaitable[Any]]  # query parameters -> decoded JSON answer


def timeframe_of(seconds: int) -> str:
    """Alpaca's `timeframe` for bars of `seconds`; `NotImplementedError` for a length it cannot serve aligned."""
    if seconds > 0 and seconds % 60 == 0 and 3600 % seconds == 0:
        return f"{seconds // 60}Min"
    if seconds > 3600 and seconds % 3600 == 0 and 86400 % seconds == 0:
        return f"{seconds // 3600}Hour"
    raise NotImplementedError(f"Alpaca serves aligned bars of whole minutes dividing the hour or whole hours "
                              f"dividing the day, not {seconds} s")


def to_bar(raw: Mapping[str, Any], symbol: str, step: timedelta) -> Bar:
    """One wire bar (`t` its start) as a `Bar` of length `step`."""
    at = parse_time(raw.get("t"))
    if at is None:
        raise BrokerUnavailable("alpaca bars: a bar has no time")
    return wire_bar(raw, ("o", "h", "l", "c", "v"), symbol, at.astimezone(UTC), step, "alpaca bars")


async def fetch_bars(get: Get, wire_symbol: str, symbol: str, seconds: int, start: datetime, end: datetime,
                     now: datetime, *, feed: str, adjustment: str, page_limit: int = PAGE_LIMIT) -> list[Bar]:
    """Closed bars of `seconds` starting in [start, end), oldest first, named `symbol`."""
    step, stop = timedelta(seconds=seconds), window(start, end, now)
    if start >= stop:
        return []
    params: dict[str, Any] = {"symbols": wire_symbol, "timeframe": timeframe_of(seconds), "start": iso(start),
                              "end": iso(stop), "limit": page_limit, "adjustment": adjustment, "feed": feed,
                              "sort": "asc"}
    out = ClosedBars(start, end, now)
    for _ in range(MAX_PAGES):
        answer = await get(params)
        if not isinstance(answer, Mapping) or not isinstance(answer.get("bars") or {}, Mapping):
            raise BrokerUnavailable("alpaca bars: the answer has no `bars` object")
        for raw in (answer.get("bars") or {}).get(wire_symbol) or []:
            out.add(to_bar(raw, symbol, step))
        token = answer.get("next_page_token")
        if not token:
            break
        params["page_token"] = token
    else:
        raise BrokerUnavailable(f"alpaca bars: more than {MAX_PAGES} pages for {wire_symbol}")
    return out.oldest_first()
