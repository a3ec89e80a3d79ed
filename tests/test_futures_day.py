"""Futures accounts: "today" is the CME trading day (17:00 CT roll), their summary follows the CME close,
and CME holidays and early halts come from the `holidays` package's CME calendar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.calendar import CHICAGO, NEW_YORK, futures_session_close, futures_summary_due, is_cme_holiday
from daemon.domain import SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled
from tests.standins.telegram_api import TelegramStandin
from tests.test_chat_e2e import alerts_text, tg, tg_settings  # noqa: F401 (tg is a fixture)

URL = f"/webhook/tradingview/{SECRET}"
MONDAY_EVENING = datetime(2026, 3, 9, 17, 30, tzinfo=CHICAGO)  # after the roll: Tuesday's futures day


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_cme_calendar_from_the_holidays_package() -> None:
    assert is_cme_holiday(date(2026, 4, 3))  # Good Friday
    assert is_cme_holiday(date(2026, 11, 26)) and not is_cme_holiday(date(2026, 3, 6))
    assert futures_session_close(date(2026, 3, 6)) == datetime(2026, 3, 6, 16, 0, tzinfo=CHICAGO)
    assert futures_session_close(date(2026, 11, 27)) == datetime(2026, 11, 27, 12, 0, tzinfo=CHICAGO)  # early halt
    assert futures_session_close(date(2026, 4, 3)) is None
    assert futures_summary_due(datetime(2026, 3, 6, 16, 6, tzinfo=CHICAGO)) == date(2026, 3, 6)
    assert futures_summary_due(datetime(2026, 3, 6, 12, 6, tzinfo=CHICAGO)) is None  # not an early-halt day
    assert futures_summary_due(datetime(2026, 11, 27, 12, 6, tzinfo=CHICAGO)) == date(2026, 11, 27)
    assert futures_summary_due(datetime(2026, 11, 27, 16, 6, tzinfo=CHICAGO)) is None  # sent at 12:05 already
    assert futures_summary_due(datetime(2026, 4, 3, 16, 6, tzinfo=CHICAGO)) is None  # no session on Good Friday
    # 16:05 ET is 15:05 CT: the CME has not closed yet, so a futures summary is not due.
    assert futures_summary_due(datetime(2026, 3, 6, 16, 5, tzinfo=NEW_YORK)) is None


@pytest.fixture
async def daemon(tmp_path: Path, tg: TelegramStandin) -> AsyncIterator[tuple[Daemon, Clock]]:  # noqa: F811
    clock = Clock(MONDAY_EVENING)
    settings = settings_for(tmp_path / "state", accounts={
        "fut": {"market": "futures", "symbols": ["ES"], "paper": {"multipliers": {"ES": "50"}}},
        "stk": {"symbols": ["AAPL"]},
    }, **tg_settings(tg))
    running = Daemon(settings, clock=clock)
    await running.start()
    try:
        yield running, clock
    finally:
        await running.stop()


async def trade(daemon: Daemon, ticker: str, action: str, price: str, n: str, quantity: str | None = "1") -> None:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(ticker=ticker, action=action, price=price, id=n,
                                                     quantity=quantity))
    assert response.status_code == 202, response.text
    assert (await settled(daemon, response.json()["signal_id"])).status is SignalStatus.EXECUTED


async def pnl_today(daemon: Daemon) -> dict[str, Any]:
    async with client_for(daemon) as client:
        return {row["account"]: row for row in (await client.get("/api/pnl")).json()["accounts"]}


async def test_futures_today_starts_at_the_roll_and_summary_follows_the_cme_close(
        daemon: tuple[Daemon, Clock], tg: TelegramStandin) -> None:  # noqa: F811
    running, clock = daemon
    await trade(running, "ES", "buy", "6000", "f1")
    await trade(running, "ES", "exit", "6010", "f2", quantity=None)
    await trade(running, "AAPL", "buy", "100", "s1", quantity="10")
    await trade(running, "AAPL", "exit", "101", "s2", quantity=None)

    clock.now = datetime(2026, 3, 10, 9, 0, tzinfo=CHICAGO)  # Tuesday morning
    today = await pnl_today(running)
    assert Decimal(today["fut"]["realized"]) == Decimal("500.00")  # Monday 17:30 CT is Tuesday's futures day
    assert Decimal(today["stk"]["realized"]) == Decimal("0.00")  # Monday 18:30 ET was Monday for stocks

    stocks = running.scheduler.get_job("daily-summary")
    futures = running.scheduler.get_job("daily-summary-futures")
    assert stocks is not None and futures is not None
    assert str(futures.trigger.timezone) == "America/Chicago"
    friday_after = datetime(2026, 3, 13, 16, 6, tzinfo=CHICAGO)
    assert futures.trigger.get_next_fire_time(None, friday_after) == datetime(2026, 3, 16, 16, 5, tzinfo=CHICAGO)

    clock.now = datetime(2026, 3, 10, 16, 5, tzinfo=CHICAGO)  # what the scheduler does at 16:05 CT
    await futures.func()
    await tg.wait_for(lambda: "(futures)" in alerts_text(tg), within=10)
    text = alerts_text(tg)  # alerts waiting together go out in one message
    summary = text[text.index("Daily summary"):]
    assert summary.startswith("Daily summary Tue 2026-03-10 (futures)\nfut: net +500.00")
    assert "stk:" not in summary  # the stock account's summary goes out after the NYSE close, on its own

    before = len(running.outbox.rows())
    clock.now = datetime(2026, 4, 3, 16, 5, tzinfo=CHICAGO)  # Good Friday: the CME is closed, no summary
    await futures.func()
    clock.now = datetime(2026, 3, 11, 12, 5, tzinfo=CHICAGO)  # the early-halt check on an ordinary day
    early = running.scheduler.get_job("daily-summary-futures-early")
    assert early is not None
    await early.func()
    assert len(running.outbox.rows()) == before
