"""GET /api/pnl over a week of several accounts' fills: partial closes, a flip, a futures multiplier, fees, a fill
the evening before a UTC midnight and one before the period; every figure worked out by hand, and the period's
fills are read once per account for both the totals and the days."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.calendar import NEW_YORK
from daemon.domain import Fill, Side
from tests.conftest import client_for, settings_for
from tests.store.history import capture

D = Decimal
WEDNESDAY = datetime(2026, 3, 11, 11, 0, tzinfo=NEW_YORK)  # the week began Monday 2026-03-09 00:00 ET
ES = {"market": "futures", "symbols": ["ES"], "paper": {"multipliers": {"ES": "50"}}}
# (account, symbol, side, quantity, price, fee, when (UTC), multiplier)
HISTORY = [
    ("a", "AAPL", Side.BUY, "10", "100", "1", datetime(2026, 3, 6, 15, 0, tzinfo=UTC), "1"),  # last week
    ("a", "AAPL", Side.SELL, "4", "105", "0.50", datetime(2026, 3, 9, 14, 0, tzinfo=UTC), "1"),  # +20 (partial)
    ("a", "AAPL", Side.SELL, "6", "98", "0.75", datetime(2026, 3, 10, 3, 30, tzinfo=UTC), "1"),  # -12, Mon 23:30 ET
    ("a", "AAPL", Side.BUY, "5", "50.10", "0.10", datetime(2026, 3, 11, 14, 0, tzinfo=UTC), "1"),
    ("a", "AAPL", Side.SELL, "2", "50.35", "0.10", datetime(2026, 3, 11, 14, 5, tzinfo=UTC), "1"),  # +0.50
    ("b", "MSFT", Side.SELL, "3", "400", "1.25", datetime(2026, 3, 10, 14, 0, tzinfo=UTC), "1"),
    ("b", "MSFT", Side.BUY, "1", "390", "0.25", datetime(2026, 3, 10, 15, 0, tzinfo=UTC), "1"),  # +10
    ("b", "MSFT", Side.BUY, "3", "410", "0.30", datetime(2026, 3, 10, 16, 0, tzinfo=UTC), "1"),  # -20, flips long 1
    ("fut", "ES", Side.BUY, "2", "6000", "2.50", datetime(2026, 3, 10, 14, 30, tzinfo=UTC), "50"),
    ("fut", "ES", Side.SELL, "1", "6010.25", "2.50", datetime(2026, 3, 10, 15, 0, tzinfo=UTC), "50"),  # +512.50
    ("fut", "ES", Side.SELL, "1", "5995", "2.50", datetime(2026, 3, 11, 14, 0, tzinfo=UTC), "50"),  # -250
]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = settings_for(tmp_path / "state", accounts={"a": {"paper": {}}, "b": {"paper": {}}, "fut": ES})
    running = Daemon(settings, clock=lambda: WEDNESDAY)
    await running.start()
    try:
        for n, (account, symbol, side, quantity, price, fee, at, multiplier) in enumerate(HISTORY):
            running.store.record_fill(Fill(fill_id=f"f{n}", broker_order_id=f"b{n}", client_order_id=f"c{n}",
                                           account=account, symbol=symbol, side=side, quantity=D(quantity),
                                           price=D(price), commission=D(fee), filled_at=at), D(multiplier))
        yield running
    finally:
        await running.stop()


def money(row: dict[str, Any]) -> tuple[Decimal, ...]:
    return tuple(D(row[k]) for k in ("realized", "fees", "unrealized", "net"))


async def test_week_of_several_accounts_is_read_once_per_account(daemon: Daemon) -> None:
    async with client_for(daemon) as client:
        with capture(daemon.store) as captured:
            response = await client.get("/api/pnl", params={"period": "week"})
    assert response.status_code == 200, response.text
    report = response.json()
    accounts = {row["account"]: row for row in report["accounts"]}
    assert set(accounts) == {"paper", "a", "b", "fut"}
    assert money(accounts["a"]) == (D("8.50"), D("1.45"), 0, D("7.05")) and accounts["a"]["fills"] == 4
    assert money(accounts["b"]) == (D("-10.00"), D("1.80"), 0, D("-11.80")) and accounts["b"]["fills"] == 3
    assert money(accounts["fut"]) == (D("262.50"), D("7.50"), 0, D("255.00")) and accounts["fut"]["fills"] == 3
    assert money(accounts["paper"]) == (0, 0, 0, 0) and accounts["paper"]["fills"] == 0
    assert money(report["total"]) == (D("261.00"), D("10.75"), 0, D("250.25"))
    days = sorted((row["account"], date.fromisoformat(row["day"]), D(row["realized"]), D(row["fees"]), row["fills"])
                  for row in report["by_day"])
    assert days == [("a", date(2026, 3, 9), D(8), D("1.25"), 2),  # 23:30 ET Monday is Tuesday in UTC
                    ("a", date(2026, 3, 11), D("0.50"), D("0.20"), 2),
                    ("b", date(2026, 3, 10), D(-10), D("1.80"), 3),
                    ("fut", date(2026, 3, 10), D("512.50"), D("5.00"), 2),
                    ("fut", date(2026, 3, 11), D(-250), D("2.50"), 1)]
    fill_reads = [sql for sql, _ in captured.reads if "FROM fills" in sql]
    assert len(fill_reads) == len(accounts), fill_reads
