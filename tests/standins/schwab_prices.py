"""Price history of the Schwab stand-in: one-minute bars per symbol, served as `GET /marketdata/v1/pricehistory`.

No published contract covers Schwab's Market Data API, so the request is the one schwab-py's
`Client.get_price_history` sends: `symbol`, `periodType` (day|month|year|ytd), `period`, `frequencyType`
(minute with `periodType=day`; daily/weekly/monthly otherwise), `frequency` (1, 5, 10, 15, 30 minutes),
`startDate`/`endDate` (epoch milliseconds, inclusive), `needExtendedHoursData`, `needPreviousClose`. The
answer is `{"candles": [{open, high, low, close, volume, datetime}], "symbol", "empty"}`, oldest first,
`datetime` the candle's start in epoch ms; minute candles are built from the stored minutes, aligned to
the epoch, regular-session minutes only unless `needExtendedHoursData=true`. A symbol without data answers
`empty: true`. A bad parameter answers 400 with Schwab's `errors` list; any other parameter is recorded
as a violation. Only minute frequencies are served.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from daemon import calendar as cal
from tests.standins.alpaca_data import Minute

PARAMS = {"symbol", "periodType", "period", "frequencyType", "frequency", "startDate", "endDate",
          "needExtendedHoursData", "needPreviousClose"}
FREQUENCY_TYPES = {"day": {"minute"}, "month": {"daily", "weekly"}, "year": {"daily", "weekly", "monthly"},
                   "ytd": {"daily", "weekly"}}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadRequest(Exception):
    pass


def _ms(value: str, name: str) -> datetime:
    try:
        return EPOCH + timedelta(milliseconds=int(value))
    except ValueError:
        raise BadRequest(f"{name} must be epoch milliseconds") from None


def _num(value: Any) -> float | int:
    return int(value) if value == value.to_integral_value() else float(value)


class PriceHistory:
    def __init__(self, violations: list[str]) -> None:
        self.minutes: dict[str, list[Minute]] = {}
        self.requests: list[dict[str, str]] = []
        self.violations = violations  # the stand-in's own list, asserted empty by its tests

    def add_minutes(self, symbol: str, minutes: list[Minute]) -> None:
        merged = {m.start: m for m in self.minutes.get(symbol, [])} | {m.start: m for m in minutes}
        self.minutes[symbol] = [merged[t] for t in sorted(merged)]

    def answer(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(query)
        self.violations.extend(f"GET /marketdata/v1/pricehistory: unknown parameter {k!r}"
                               for k in query if k not in PARAMS)
        try:
            return 200, self._candles(query)
        except BadRequest as exc:
            return 400, {"errors": [{"status": "400", "title": "Bad Request", "detail": str(exc)}]}

    def _candles(self, query: dict[str, str]) -> dict[str, Any]:
        symbol = query.get("symbol", "")
        if not symbol:
            raise BadRequest("symbol is required")
        period_type = query.get("periodType", "day")
        if period_type not in FREQUENCY_TYPES:
            raise BadRequest(f"periodType {period_type} is not valid")
        frequency_type = query.get("frequencyType", "minute" if period_type == "day" else "daily")
        if frequency_type not in FREQUENCY_TYPES[period_type]:
            raise BadRequest(f"frequencyType {frequency_type} is not valid with periodType {period_type}")
        if frequency_type != "minute":
            raise BadRequest("the stand-in serves minute candles only")
        frequency = query.get("frequency", "1")
        if frequency not in {"1", "5", "10", "15", "30"}:
            raise BadRequest(f"frequency {frequency} is not valid for minute candles")
        for flag in ("needExtendedHoursData", "needPreviousClose"):
            if query.get(flag, "true") not in {"true", "false"}:
                raise BadRequest(f"{flag} must be true or false")
        end = _ms(query["endDate"], "endDate") if "endDate" in query else datetime.now(UTC)
        start = _ms(query["startDate"], "startDate") if "startDate" in query else end - timedelta(days=10)
        extended = query.get("needExtendedHoursData", "true") == "true"
        size = timedelta(minutes=int(frequency))
        buckets: dict[datetime, list[Minute]] = {}
        for m in self.minutes.get(symbol, []):
            if extended or cal.is_market_open(m.start):
                buckets.setdefault(EPOCH + ((m.start - EPOCH) // size) * size, []).append(m)
        candles = [{"open": _num(g[0].open), "high": _num(max(m.high for m in g)), "low": _num(min(m.low for m in g)),
                    "close": _num(g[-1].close), "volume": sum(m.volume for m in g),
                    "datetime": int((key - EPOCH).total_seconds() * 1000)}
                   for key, g in sorted(buckets.items()) if start <= key <= end]
        return {"candles": candles, "symbol": symbol, "empty": not candles}
