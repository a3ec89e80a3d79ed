"""Market-data history of the ProjectX stand-in: one-minute bars per contract, served by retrieveBars.

`BarHistory.add_minutes` stores one-minute OHLCV bars; `retrieve_bars` answers `/api/History/retrieveBars`
like the gateway: bars of `unitNumber` x unit (second, minute, hour, day; aggregated from the minutes,
aligned to the Unix epoch, days to UTC midnight), whose start lies in [startTime, endTime], newest first,
at most `limit` (the latest ones). A bar that extends past `endTime` is partial and only sent with
`includePartialBar`. Error codes are the spec's `RetrieveBarErrorCode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.standins.projectx_engine import fail, ok, parse_time

UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400}  # 5 week and 6 month are not served by the stand-in
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MinuteBar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


class BarHistory:
    def __init__(self, contracts: dict[str, Any]) -> None:
        self.contracts = contracts
        self.minutes: dict[str, list[MinuteBar]] = {}

    def add_minutes(self, contract_id: str, bars: list[MinuteBar]) -> None:
        merged = {b.start: b for b in self.minutes.get(contract_id, [])} | {b.start: b for b in bars}
        self.minutes[contract_id] = [merged[t] for t in sorted(merged)]

    def retrieve_bars(self, body: dict[str, Any]) -> dict[str, Any]:
        contract_id = str(body["contractId"])
        bool(body["live"])
        unit, number, limit = int(body["unit"]), int(body["unitNumber"]), int(body["limit"])
        start, end = parse_time(body["startTime"]), parse_time(body["endTime"])
        partial = bool(body["includePartialBar"])
        if contract_id not in self.contracts:
            return fail(1, "Contract not found.")
        if unit not in UNIT_SECONDS:
            return fail(2, f"Unit {unit} is not supported.")
        if number <= 0:
            return fail(3, "Unit number must be positive.")
        if not 0 < limit <= 20_000:
            return fail(4, "Limit must be between 1 and 20000.")
        size = timedelta(seconds=UNIT_SECONDS[unit] * number)
        buckets: dict[datetime, list[MinuteBar]] = {}
        for bar in self.minutes.get(contract_id, []):
            key = EPOCH + ((bar.start - EPOCH) // size) * size
            buckets.setdefault(key, []).append(bar)
        out = []
        for key in sorted(buckets, reverse=True):
            if not start <= key <= end or (key + size > end and not partial):
                continue
            group = buckets[key]
            out.append({"t": key.isoformat(), "o": group[0].open, "h": max(b.high for b in group),
                        "l": min(b.low for b in group), "c": group[-1].close, "v": sum(b.volume for b in group)})
            if len(out) == limit:
                break
        return ok(bars=out)
