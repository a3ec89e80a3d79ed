"""Alpaca stock bars from the market-data stand-in: alpaca-py's own client proves the stand-in speaks its format,
then `AlpacaBroker.bars` (paging, closed bars, refusals), a live strategy in the daemon and `traderd bars fetch`."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models import BarSet
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from pydantic import SecretStr

from brokers.alpaca.broker import AlpacaBroker
from brokers.base import UnknownSymbol
from config.brokers import AlpacaSettings
from daemon import calendar as cal
from daemon.domain import Bar
from daemon.strategy.bars import last_bar_close
from daemon.strategy.broker_bars import BrokerBarSource
from tests.bar_timing import clear_of_a_bar_close
from tests.cli_run import traderd
from tests.conftest import settings_for, wait_until
from tests.standin_fixtures import Collected
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.alpaca_data import AlpacaDataStandIn, Minute
from tests.standins.contract import assert_no_violations
from tests.test_alpaca_adapter import FAST
from tests.test_alpaca_e2e import alpaca_account

MONDAY, TUESDAY = datetime(2026, 11, 9).date(), datetime(2026, 11, 10).date()
Connect = Callable[..., Awaitable[AlpacaBroker]]


def session_minutes(days: list, price: Decimal = Decimal("187.00")) -> list[Minute]:  # type: ignore[type-arg]
    """A deterministic walk in cent steps over the NYSE regular sessions of `days`, one bar a minute."""
    out, i = [], 0
    for day in days:
        at = cal.session_open(day).astimezone(UTC)
        while at < cal.session_close(day):
            move = Decimal("0.01") * ((i * 7) % 5 - 2)
            o, c = price, price + move
            out.append(Minute(at, o, max(o, c) + Decimal("0.02"), min(o, c) - Decimal("0.01"), c, 100 + i % 9))
            price, at, i = c, at + timedelta(minutes=1), i + 1
    return out


def expected(minutes: list[Minute], start: datetime, end: datetime) -> tuple[Decimal, ...]:
    inside = [m for m in minutes if start <= m.start < end]
    return (inside[0].open, max(m.high for m in inside), min(m.low for m in inside), inside[-1].close,
            Decimal(sum(m.volume for m in inside)))


def ohlcv(bar: Bar) -> tuple[Decimal, ...]:
    return bar.open, bar.high, bar.low, bar.close, bar.volume


@pytest.fixture
async def data() -> AsyncIterator[AlpacaDataStandIn]:
    async with AlpacaDataStandIn() as stand:
        stand.add_minutes("AAPL", session_minutes([MONDAY, TUESDAY]))
        yield stand
    assert stand.violations == []


@pytest.fixture
async def trading() -> AsyncIterator[AlpacaStandIn]:
    stand = AlpacaStandIn()
    await stand.start()
    try:
        yield stand
    finally:
        await stand.stop()
    assert_no_violations(stand.violations)


def alpaca_settings(trading: AlpacaStandIn, data: AlpacaDataStandIn, **extra: object) -> AlpacaSettings:
    return AlpacaSettings(key_id=SecretStr(trading.key_id), secret_key=SecretStr(trading.secret_key),
                          base_url=trading.base_url, data_url=data.base_url, timeout_seconds=2,
                          rate_limit_per_minute=6000, stream=False, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def connect(trading: AlpacaStandIn, data: AlpacaDataStandIn) -> AsyncIterator[Connect]:
    made: Collected[AlpacaBroker] = Collected()

    async def make(now: datetime | None = None, **extra: object) -> AlpacaBroker:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        broker = AlpacaBroker("a1", alpaca_settings(trading, data, **extra), clock=clock, retry=FAST,
                              poll_interval=3600)
        return await made.attach(broker)

    yield make
    await made.close()


async def sdk(fn, *args):  # type: ignore[no-untyped-def]
    """alpaca-py is synchronous: run it off the loop that serves the stand-in, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout=15)


async def test_alpaca_py_reads_the_standins_bars_across_pages(data: AlpacaDataStandIn) -> None:
    data.max_page = 50
    client = StockHistoricalDataClient(data.key_id, data.secret_key, url_override=data.base_url)
    start = cal.session_open(MONDAY)
    request = StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame(5, TimeFrameUnit.Minute),
                               start=start, end=cal.session_close(TUESDAY), feed=DataFeed.IEX,
                               adjustment=Adjustment.RAW)
    barset = await sdk(client.get_stock_bars, request)
    assert isinstance(barset, BarSet)
    bars = barset.data["AAPL"]
    assert len(bars) == 2 * 78 and len(data.requests) == 4  # 156 bars at 50 a page
    series = data.minutes["AAPL"]
    for bar in bars:
        begin = bar.timestamp.astimezone(UTC)
        o, h, lo, c, v = expected(series, begin, begin + timedelta(minutes=5))
        assert (Decimal(str(bar.open)), Decimal(str(bar.high)), Decimal(str(bar.low)), Decimal(str(bar.close)),
                Decimal(str(bar.volume))) == (o, h, lo, c, v)
        assert bar.trade_count and bar.vwap and lo <= Decimal(str(bar.vwap)) <= h
    days = await sdk(client.get_stock_bars, StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT"],
                                                              timeframe=TimeFrame.Day,
                                                              start=datetime(2026, 11, 9, tzinfo=cal.NEW_YORK)))
    assert [b.timestamp.astimezone(cal.NEW_YORK).date() for b in days.data["AAPL"]] == [MONDAY, TUESDAY]
    assert "MSFT" not in days.data
    wrong = StockHistoricalDataClient(data.key_id, "not-the-secret", url_override=data.base_url)
    with pytest.raises(APIError):
        await sdk(wrong.get_stock_bars, request)


async def test_five_minute_bars_of_one_session(connect: Connect, data: AlpacaDataStandIn) -> None:
    broker = await connect()
    series = data.minutes["AAPL"]
    start = cal.session_open(MONDAY).astimezone(UTC) + timedelta(minutes=32)  # mid-bar: that bar is left out
    bars = await broker.bars("NASDAQ:AAPL", 300, start, start + timedelta(minutes=30))
    first = cal.session_open(MONDAY).astimezone(UTC) + timedelta(minutes=35)
    assert [b.start for b in bars] == [first + timedelta(minutes=5 * i) for i in range(6)]
    for bar in bars:
        assert bar.symbol == "NASDAQ:AAPL" and bar.start.tzinfo is UTC and bar.end - bar.start == timedelta(minutes=5)
        assert isinstance(bar.close, Decimal) and ohlcv(bar) == expected(series, bar.start, bar.end)
    [query] = data.requests
    assert (query["symbols"], query["timeframe"], query["feed"], query["adjustment"]) == ("AAPL", "5Min", "iex", "raw")


async def test_long_windows_are_paged(connect: Connect, data: AlpacaDataStandIn) -> None:
    data.max_page = 200
    broker = await connect(data_feed="sip")
    data.sip = True
    series = data.minutes["AAPL"]
    minutes = await broker.bars("AAPL", 60, cal.session_open(MONDAY), cal.session_close(TUESDAY))
    assert len(minutes) == 2 * 390 and len(data.requests) == 4  # 780 minutes at 200 a page
    assert [ohlcv(b) for b in minutes] == [(m.open, m.high, m.low, m.close, Decimal(m.volume)) for m in series]
    assert all(q["feed"] == "sip" for q in data.requests)
    assert [q.get("page_token") is None for q in data.requests] == [True, False, False, False]
    halves = await broker.bars("AAPL", 1800, cal.session_open(MONDAY), cal.session_close(MONDAY))
    assert len(halves) == 13 and all(ohlcv(b) == expected(series, b.start, b.end) for b in halves)


async def test_the_forming_bar_is_not_returned(connect: Connect, data: AlpacaDataStandIn) -> None:
    now = cal.session_open(TUESDAY).astimezone(UTC) + timedelta(hours=1, minutes=7)
    broker = await connect(now)
    bars = await broker.bars("AAPL", 900, cal.session_open(TUESDAY), cal.session_close(TUESDAY))
    assert [b.end for b in bars] == [cal.session_open(TUESDAY) + timedelta(minutes=15 * i) for i in range(1, 5)]


async def test_refusals(connect: Connect, data: AlpacaDataStandIn) -> None:
    broker = await connect()
    with pytest.raises(UnknownSymbol):
        await broker.bars("ZZZZ", 300, cal.session_open(MONDAY), cal.session_close(MONDAY))
    with pytest.raises(NotImplementedError, match="420 s"):
        await broker.bars("AAPL", 420, cal.session_open(MONDAY), cal.session_close(MONDAY))
    with pytest.raises(ValueError, match="timezone-aware"):
        await broker.bars("AAPL", 300, datetime(2026, 11, 9, 15), datetime(2026, 11, 9, 16))
    assert data.requests == []  # nothing was asked of the data host


async def test_bar_source_builds_sessions_from_alpaca_bars(connect: Connect, data: AlpacaDataStandIn) -> None:
    broker = await connect()
    series = data.minutes["AAPL"]
    days = await BrokerBarSource(broker).bars("AAPL", "1d", "nyse", cal.session_close(TUESDAY), 2)
    assert [d.start for d in days] == [cal.session_open(MONDAY), cal.session_open(TUESDAY)]
    for day in days:
        assert ohlcv(day) == expected(series, day.start, day.end)


def _crossing_series(bar_end: datetime) -> list[Minute]:
    """Minutes of the sessions up to `bar_end`: a slow decline, then the last 5m bar jumps (an SMA cross up)."""
    out, price, at = [], Decimal("190"), bar_end - timedelta(days=4)
    while at < bar_end:
        if cal.is_market_open(at):
            step = Decimal("2") if at >= bar_end - timedelta(minutes=5) else Decimal("-0.01")
            o, c = price, price + step
            out.append(Minute(at, o, max(o, c), min(o, c), c, 100))
            price = c
        at += timedelta(minutes=1)
    return out


async def test_a_live_strategy_trades_on_alpaca_bars(start_daemon, trading: AlpacaStandIn,  # type: ignore[no-untyped-def]
                                                      data: AlpacaDataStandIn, tmp_path: Path) -> None:
    now = await clear_of_a_bar_close("nyse", cal.is_market_open)
    bar_end = last_bar_close("nyse", "5m", now)
    data.add_minutes("AAPL", _crossing_series(bar_end))
    trading.set_price("AAPL", Decimal("190"))
    account = alpaca_account(trading)
    account["alpaca"] |= {"data_url": data.base_url}
    strategy = {"strategy": "sma_cross", "account": "stocks", "symbol": "AAPL", "timeframe": "5m",
                "calendar": "nyse", "max_lag_seconds": 5 * 86400, "params": {"fast": 2, "slow": 4, "quantity": "3"}}
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"stocks": account},
                                             strategies={"aapl_sma": strategy}))
    # the runner acts on the latest closed bar when it starts: the cross up on Alpaca's bars buys
    [status] = await wait_until(lambda: [s for s in daemon.strategies.status() if s.last_signal], within=15)
    assert status.last_signal == "target 3" and status.last_bar_end == bar_end
    assert data.requests and all(q["timeframe"] == "5Min" for q in data.requests)
    assert await wait_until(lambda: [o for o in trading.orders.values()
                                     if o["side"] == "buy" and o["status"] == "filled" and o["qty"] == "3"],
                            within=15)


@pytest.mark.slow
async def test_bars_fetch_from_an_alpaca_account(trading: AlpacaStandIn, data: AlpacaDataStandIn,
                                                 tmp_path: Path) -> None:
    data.max_page = 100
    config = tmp_path / "traderd.toml"
    config.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"

[accounts.stocks]
broker = "alpaca"
[accounts.stocks.alpaca]
key_id = "{trading.key_id}"
secret_key = "{trading.secret_key}"
base_url = "{trading.base_url}"
data_url = "{data.base_url}"
stream = false
""")
    end = cal.session_close(TUESDAY).astimezone(UTC) + timedelta(hours=1)
    code, out, err = await traderd("bars", "fetch", "--config", str(config), "--account", "stocks",
                                    "--symbol", "AAPL", "--timeframe", "5m", "--days", "2", "--end", end.isoformat())
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    series = data.minutes["AAPL"]
    assert len(rows) == 2 * 78 and len(data.requests) >= 2  # two NYSE sessions of 5-minute bars, paged
    for row in rows:
        start = datetime.fromisoformat(row["time"])
        assert start.tzinfo is not None
        assert tuple(Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")) == \
            expected(series, start, start + timedelta(minutes=5))
    assert f"{len(rows)} bars of AAPL 5m (nyse) from stocks" in err
    assert trading.secret_key not in err and trading.key_id not in err
