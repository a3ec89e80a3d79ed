"""A stateful stand-in of Alpaca's market-data API (stock bars) on loopback, speaking alpaca-py's wire format.

No published contract covers the data API, so the format is the one alpaca-py's `StockHistoricalDataClient
.get_stock_bars` and its `BarSet`/`Bar` models use: `GET /v2/stocks/bars` with `symbols`, `timeframe`
(`<n>Min` 1-59, `<n>Hour` 1-23, `1Day`; also the short `T`/`H`/`D` spellings), `start`/`end` (RFC 3339,
inclusive; `start` defaults to the day's New York midnight, `end` to now), `limit` (1-10000, default 1000,
counted over all symbols), `page_token`, `adjustment`, `feed`, `sort` (asc|desc), `asof`, `currency`.
The answer is `{"bars": {symbol: [{t, o, h, l, c, v, n, vw}, ...]}, "next_page_token": str | null}`;
symbols without bars are left out. Bars are built from stored one-minute bars (`add_minutes`): minute and
hour bars aligned to the epoch, day bars to New York midnight. Any other query parameter is recorded as a
violation; a wrong or missing key pair answers 401, a bad parameter 400, `feed=sip` without `sip=True` 403
(the free plan's refusal). `max_page` caps a page below `limit` so that paging can be exercised.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

NEW_YORK = ZoneInfo("America/New_York")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARAMS = {"symbols", "timeframe", "start", "end", "limit", "page_token", "adjustment", "feed", "sort", "asof",
          "currency"}
UNITS = {"Min": ("Min", 60, 59), "T": ("Min", 60, 59), "Hour": ("Hour", 3600, 23), "H": ("Hour", 3600, 23),
         "Day": ("Day", 86400, 1), "D": ("Day", 86400, 1)}
FEEDS = {"iex", "sip", "delayed_sip", "otc", "boats", "overnight"}
ADJUSTMENTS = {"raw", "split", "dividend", "all"}


@dataclass(frozen=True)
class Minute:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _time(text: str, name: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(400, f"invalid {name}: {text}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _timeframe(text: str) -> tuple[str, timedelta]:
    digits = "".join(ch for ch in text if ch.isdigit())
    unit = text[len(digits):]
    if not digits or unit not in UNITS or text[:len(digits)] != digits:
        raise BadRequest(400, f"invalid timeframe: {text}")
    kind, seconds, most = UNITS[unit]
    if not 1 <= int(digits) <= most:
        raise BadRequest(400, f"invalid timeframe: {text}")
    return kind, timedelta(seconds=seconds * int(digits))


def _token(symbol: str, at: datetime) -> str:
    return base64.b64encode(f"{symbol}|{at.isoformat()}".encode()).decode()


def _untoken(token: str) -> tuple[str, datetime]:
    try:
        symbol, _, at = base64.b64decode(token.encode(), validate=True).decode().partition("|")
        return symbol, datetime.fromisoformat(at)
    except ValueError:
        raise BadRequest(400, "invalid page token") from None


def _num(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


class AlpacaDataStandIn:
    def __init__(self, key_id: str = "test-key-id", secret_key: str = "test-secret-key", *, sip: bool = False,
                 max_page: int = 10_000) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.sip, self.max_page = sip, max_page
        self.minutes: dict[str, list[Minute]] = {}
        self.requests: list[dict[str, str]] = []  # the query of every bars request seen
        self.violations: list[str] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def add_minutes(self, symbol: str, minutes: list[Minute]) -> None:
        merged = {m.start: m for m in self.minutes.get(symbol, [])} | {m.start: m for m in minutes}
        self.minutes[symbol] = [merged[t] for t in sorted(merged)]

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v2/stocks/bars", self._bars)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> AlpacaDataStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the endpoint ------------------------------------------------------------------------------------

    async def _bars(self, request: web.Request) -> web.Response:
        if (request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")) != (
                self.key_id, self.secret_key):
            return web.json_response({"message": "unauthorized."}, status=401)
        query = dict(request.query)
        self.requests.append(query)
        self.violations.extend(f"GET /v2/stocks/bars: unknown parameter {k!r}" for k in query if k not in PARAMS)
        try:
            return web.json_response(self.answer(query))
        except BadRequest as exc:
            return web.json_response({"message": exc.message}, status=exc.status)

    def _aggregate(self, symbol: str, kind: str, size: timedelta) -> dict[datetime, list[Minute]]:
        buckets: dict[datetime, list[Minute]] = {}
        for m in self.minutes.get(symbol, []):
            if kind == "Day":
                day = m.start.astimezone(NEW_YORK).date()
                key = datetime.combine(day, datetime.min.time(), NEW_YORK).astimezone(UTC)
            else:
                key = EPOCH + ((m.start - EPOCH) // size) * size
            buckets.setdefault(key, []).append(m)
        return buckets

    @staticmethod
    def _wire(key: datetime, group: list[Minute]) -> dict[str, Any]:
        volume = sum(m.volume for m in group)
        vwap = sum((m.close * m.volume for m in group), Decimal(0)) / volume if volume else group[-1].close
        return {"t": key.isoformat().replace("+00:00", "Z"), "o": _num(group[0].open),
                "h": _num(max(m.high for m in group)), "l": _num(min(m.low for m in group)),
                "c": _num(group[-1].close), "v": volume, "n": len(group) * 3, "vw": round(float(vwap), 4)}

    def answer(self, query: dict[str, str]) -> dict[str, Any]:
        symbols = [s for s in query.get("symbols", "").split(",") if s]
        if not symbols:
            raise BadRequest(400, "missing symbols")
        kind, size = _timeframe(query.get("timeframe", ""))
        now = datetime.now(UTC)
        midnight = datetime.combine(now.astimezone(NEW_YORK).date(), datetime.min.time(), NEW_YORK)
        start = _time(query["start"], "start") if "start" in query else midnight.astimezone(UTC)
        end = _time(query["end"], "end") if "end" in query else now
        if end < start:
            raise BadRequest(422, "end should not be before start")
        try:
            limit = int(query.get("limit", "1000"))
        except ValueError:
            raise BadRequest(400, "invalid limit") from None
        if not 1 <= limit <= 10_000:
            raise BadRequest(400, "invalid limit: must be between 1 and 10000")
        feed, adjustment = query.get("feed", "sip" if self.sip else "iex"), query.get("adjustment", "raw")
        if feed not in FEEDS:
            raise BadRequest(400, f"invalid feed: {feed}")
        if feed == "sip" and not self.sip:
            raise BadRequest(403, "subscription does not permit querying recent SIP data")
        if adjustment not in ADJUSTMENTS:
            raise BadRequest(400, f"invalid adjustment: {adjustment}")
        descending = query.get("sort", "asc") == "desc"
        rows = [(symbol, key, group) for symbol in sorted(set(symbols))
                for key, group in sorted(self._aggregate(symbol, kind, size).items(), reverse=descending)
                if start <= key <= end]
        if "page_token" in query:
            after = _untoken(query["page_token"])
            rows = rows[next((i for i, (s, k, _) in enumerate(rows) if (s, k) == after), len(rows)):]
        page, rest = rows[:min(limit, self.max_page)], rows[min(limit, self.max_page):]
        bars: dict[str, list[dict[str, Any]]] = {}
        for symbol, key, group in page:
            bars.setdefault(symbol, []).append(self._wire(key, group))
        return {"bars": bars, "next_page_token": _token(rest[0][0], rest[0][1]) if rest else None}
