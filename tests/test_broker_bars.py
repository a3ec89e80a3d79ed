"""Broker market data for strategies: ProjectX retrieveBars (contract-checked stand-in) and `BrokerBarSource`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.base import BrokerBase, UnknownSymbol
from brokers.projectx.broker import ProjectXBroker
from brokers.projectx.models import PxBarUnit, bar_unit
from daemon import calendar as cal
from daemon.strategy.bars import BarDataError
from daemon.strategy.broker_bars import BrokerBarSource, base_seconds
from tests.standin_fixtures import connected
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.projectx_history import MinuteBar
from tests.test_projectx_adapter import contract_id, make_broker, projectx_running

# Two CME sessions: Monday 2026-11-09 (17:00 CT Sunday .. 16:00 CT Monday) and Tuesday 2026-11-10.
FIRST_OPEN = datetime(2026, 11, 8, 17, 0, tzinfo=cal.CHICAGO).astimezone(UTC)
MINUTES = 2 * 24 * 60
SAMPLE_5M = Path(__file__).resolve().parent.parent / "strategies" / "data" / "sample_5m.csv"


def minute_series(start: datetime, n: int) -> list[MinuteBar]:
    """A deterministic walk in quarter points; only minutes inside the CME sessions (no 16:00-17:00 CT)."""
    out, price = [], Decimal("6000")
    for i in range(n):
        at = start + timedelta(minutes=i)
        if at.astimezone(cal.CHICAGO).hour == 16:
            continue
        move = Decimal("0.25") * ((i * 7) % 5 - 2)
        o, c = price, price + move
        out.append(MinuteBar(at, o, max(o, c) + Decimal("0.5"), min(o, c) - Decimal("0.25"), c, 1 + i % 9))
        price = c
    return out


def expected(bars: list[MinuteBar], start: datetime, end: datetime) -> tuple[Decimal, Decimal, Decimal, Decimal, int]:
    """OHLCV of the minutes in [start, end), computed straight from the series."""
    inside = [b for b in bars if start <= b.start < end]
    return (inside[0].open, max(b.high for b in inside), min(b.low for b in inside), inside[-1].close,
            sum(b.volume for b in inside))


@pytest.fixture
async def standin() -> AsyncIterator[ProjectXStandin]:
    def history(stand: ProjectXStandin) -> None:
        stand.history.add_minutes(contract_id(stand, "MES1!"), minute_series(FIRST_OPEN, MINUTES))

    async with projectx_running(history) as stand:
        yield stand


@pytest.fixture
async def broker(standin: ProjectXStandin) -> AsyncIterator[ProjectXBroker]:
    async with connected(make_broker(standin)) as b:
        yield b


def test_bar_units() -> None:
    assert bar_unit(60) == (PxBarUnit.MINUTE, 1)
    assert bar_unit(300) == (PxBarUnit.MINUTE, 5)
    assert bar_unit(3600) == (PxBarUnit.HOUR, 1)
    assert bar_unit(86400) == (PxBarUnit.DAY, 1)
    assert bar_unit(90) == (PxBarUnit.SECOND, 90)
    assert base_seconds("5m", "cme") == 300 and base_seconds("1h", "nyse") == 1800
    assert base_seconds("1d", "cme") == 3600 and base_seconds("4h", "24x7") == 3600


async def test_retrieve_bars_for_a_continuous_ticker(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    series = standin.history.minutes[contract_id(standin, "MES1!")]
    start = FIRST_OPEN + timedelta(hours=2)
    bars = await broker.bars("MES1!", 300, start, start + timedelta(minutes=30))
    [body] = [b for _, p, b in standin.calls if p == "/api/History/retrieveBars"]
    assert (body["contractId"], body["unit"], body["unitNumber"], body["includePartialBar"]) == (
        contract_id(standin, "MES1!"), 2, 5, False)
    assert [b.start for b in bars] == [start + timedelta(minutes=5 * i) for i in range(6)]  # oldest first
    for bar in bars:
        assert bar.symbol == "MES1!" and bar.end - bar.start == timedelta(minutes=5)
        assert (bar.open, bar.high, bar.low, bar.close, int(bar.volume)) == expected(series, bar.start, bar.end)


async def test_unknown_symbol_is_refused_before_asking(broker: ProjectXBroker, standin: ProjectXStandin) -> None:
    with pytest.raises(UnknownSymbol):
        await broker.bars("ZZ1!", 60, FIRST_OPEN, FIRST_OPEN + timedelta(hours=1))
    assert standin.count("/api/History/retrieveBars") == 0


async def test_bar_source_aggregates_to_the_strategy_timeframe(
    broker: ProjectXBroker, standin: ProjectXStandin
) -> None:
    series = standin.history.minutes[contract_id(standin, "MES1!")]
    source = BrokerBarSource(broker)
    until = FIRST_OPEN + timedelta(hours=5, minutes=7)  # mid-bar: the running 15m bar is not closed yet
    bars = await source.bars("MES1!", "15m", "cme", until, 4)
    assert [b.end for b in bars] == [FIRST_OPEN + timedelta(hours=4, minutes=15 * i) for i in range(1, 5)]
    for bar in bars:
        assert (bar.open, bar.high, bar.low, bar.close, int(bar.volume)) == expected(series, bar.start, bar.end)

    second_close = datetime(2026, 11, 10, 16, 0, tzinfo=cal.CHICAGO).astimezone(UTC)
    days = await source.bars("MES1!", "1d", "cme", second_close + timedelta(hours=3), 2)
    assert [d.end for d in days] == [second_close - timedelta(days=1), second_close]
    for day in days:  # a 1d bar is one whole Globex session, built from hourly broker bars
        assert (day.open, day.high, day.low, day.close, int(day.volume)) == expected(series, day.start, day.end)
    units = {(b["unit"], b["unitNumber"]) for _, p, b in standin.calls if p == "/api/History/retrieveBars"}
    assert units == {(2, 15), (3, 1)}


async def test_a_broker_without_market_data_is_a_bar_data_error() -> None:
    with pytest.raises(BarDataError, match="no market data"):
        await BrokerBarSource(BrokerBase("paper")).bars("ES1!", "5m", "cme", FIRST_OPEN, 3)


async def test_routed_source_uses_the_csv_when_named_else_the_accounts_broker(broker: ProjectXBroker) -> None:
    from config.strategies import StrategySettings
    from daemon.strategy.broker_bars import RoutedBarSource

    sample = SAMPLE_5M
    strategies = {
        "from_file": StrategySettings(strategy="sma_cross", account="paper", symbol="AAPL", timeframe="5m",
                                      data=sample),
        "from_broker": StrategySettings(strategy="sma_cross", account="topstep", symbol="MES1!", timeframe="15m",
                                        calendar="cme"),
        "nowhere": StrategySettings(strategy="sma_cross", account="paper", symbol="MSFT", timeframe="5m"),
    }
    paper = BrokerBase("paper")
    source = RoutedBarSource.for_strategies(strategies, {"paper": paper, "topstep": broker})  # type: ignore[dict-item]
    from_file = await source.bars("AAPL", "5m", "nyse", datetime(2024, 11, 23, tzinfo=UTC), 5)
    assert len(from_file) == 5 and all(b.symbol == "AAPL" for b in from_file)
    until = FIRST_OPEN + timedelta(minutes=MINUTES)
    from_broker = await source.bars("MES1!", "15m", "cme", until, 4)
    assert len(from_broker) == 4 and all(b.end - b.start == timedelta(minutes=15) for b in from_broker)
    with pytest.raises(BarDataError, match="no bar data for TSLA"):
        await source.bars("TSLA", "5m", "nyse", until, 5)
    with pytest.raises(BarDataError):  # the paper broker serves no market data: a clear error, not a crash
        await source.bars("MSFT", "5m", "nyse", until, 5)
