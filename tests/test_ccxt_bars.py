"""Exchange candles through ccxt (`fetch_ohlcv`, Binance `/api/v3/klines`) against the contract-checked stand-in:
`CcxtBroker.bars`, the strategy bar source on the 24x7 calendar, a live strategy run and `traderd bars fetch`."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.base import UnknownSymbol
from brokers.ccxt.broker import CcxtBroker
from brokers.ccxt.history import interval_for
from daemon.domain import Bar
from daemon.strategy.bars import last_bar_close
from daemon.strategy.broker_bars import BrokerBarSource
from tests.bar_timing import clear_of_a_bar_close
from tests.cli_run import traderd
from tests.conftest import settings_for, wait_until
from tests.standin_fixtures import Collected
from tests.standins.binance_api import BinanceStandIn
from tests.standins.binance_klines import Candle
from tests.test_ccxt_broker import FAST
from tests.test_ccxt_broker import settings_for as ccxt_settings
from tests.test_ccxt_e2e import crypto_account

FIRST = datetime(2026, 11, 9, tzinfo=UTC)  # a Monday, midnight UTC
MINUTES = 2 * 24 * 60
Connect = Callable[..., Awaitable[CcxtBroker]]


def minute_series(start: datetime, n: int, price: Decimal = Decimal("60000")) -> list[Candle]:
    """A deterministic walk in 0.5 USDT steps, one candle a minute."""
    out = []
    for i in range(n):
        move = Decimal("0.5") * ((i * 7) % 5 - 2)
        o, c = price, price + move
        out.append(Candle(start + timedelta(minutes=i), o, max(o, c) + 1, min(o, c) - Decimal("0.5"), c,
                          Decimal(i % 9 + 1) / 100))
        price = c
    return out


def expected(candles: list[Candle], start: datetime, end: datetime) -> tuple[Decimal, ...]:
    """OHLCV of the minutes in [start, end), straight from the series."""
    inside = [c for c in candles if start <= c.start < end]
    return (inside[0].open, max(c.high for c in inside), min(c.low for c in inside), inside[-1].close,
            sum((c.volume for c in inside), Decimal(0)))


def ohlcv(bar: Bar) -> tuple[Decimal, ...]:
    return bar.open, bar.high, bar.low, bar.close, bar.volume


def kline_calls(standin: BinanceStandIn) -> int:
    return standin.count("GET", "/api/v3/klines")


@pytest.fixture
async def standin() -> AsyncIterator[BinanceStandIn]:
    async with BinanceStandIn() as stand:
        stand.klines.add_minutes("BTCUSDT", minute_series(FIRST, MINUTES))
        yield stand
    stand.assert_no_violations()


@pytest.fixture
async def connect(standin: BinanceStandIn, tmp_path: Path) -> AsyncIterator[Connect]:
    made: Collected[CcxtBroker] = Collected()

    async def make(now: datetime | None = None) -> CcxtBroker:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
        broker = CcxtBroker("c1", ccxt_settings(standin), tmp_path, clock, retry=FAST, poll_interval=3600)
        return await made.attach(broker)

    yield make
    await made.close()


def test_interval_choice() -> None:
    binance = {name: name for name in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "1d")}
    seconds = {"m": 60, "h": 3600, "d": 86400}

    def parse(name: str) -> int:
        return int(name[:-1]) * seconds[name[-1]]

    assert interval_for(binance, 300, parse) == ("5m", 300)
    assert interval_for(binance, 600, parse) == ("5m", 300)  # no 10m candles: two 5m candles a bar
    assert interval_for(binance, 7200, parse) == ("2h", 7200)
    with pytest.raises(NotImplementedError, match="45 s"):
        interval_for(binance, 45, parse)


async def test_bars_of_an_interval_the_exchange_has(connect: Connect, standin: BinanceStandIn) -> None:
    broker = await connect()
    series = standin.klines.minutes["BTCUSDT"]
    start = FIRST + timedelta(hours=3, minutes=2)  # mid-bar: the bar open before `start` is left out
    bars = await broker.bars("BINANCE:BTCUSDT", 300, start, start + timedelta(minutes=30))
    assert [b.start for b in bars] == [FIRST + timedelta(hours=3, minutes=5 * i) for i in range(1, 7)]
    for bar in bars:
        assert bar.symbol == "BINANCE:BTCUSDT" and bar.end - bar.start == timedelta(minutes=5)
        assert ohlcv(bar) == expected(series, bar.start, bar.end)


async def test_long_windows_are_paged_and_short_intervals_built(connect: Connect, standin: BinanceStandIn) -> None:
    broker = await connect()
    series = standin.klines.minutes["BTCUSDT"]
    minutes = await broker.bars("BTCUSDT", 60, FIRST, FIRST + timedelta(days=2))
    assert len(minutes) == MINUTES and kline_calls(standin) >= 3  # 2880 candles, 1000 a call
    assert [ohlcv(b) for b in minutes] == [(c.open, c.high, c.low, c.close, c.volume) for c in series]
    tens = await broker.bars("BTCUSDT", 600, FIRST, FIRST + timedelta(hours=2))
    assert len(tens) == 12
    for bar in tens:
        assert ohlcv(bar) == expected(series, bar.start, bar.end)


async def test_the_forming_bar_is_not_returned(connect: Connect, standin: BinanceStandIn) -> None:
    now = FIRST + timedelta(hours=5, minutes=7)
    broker = await connect(now)
    bars = await broker.bars("BTCUSDT", 900, FIRST + timedelta(hours=4), FIRST + timedelta(hours=6))
    assert [b.end for b in bars] == [FIRST + timedelta(hours=4, minutes=15 * i) for i in range(1, 5)]


async def test_unknown_pair_is_refused_before_asking(connect: Connect, standin: BinanceStandIn) -> None:
    broker = await connect()
    with pytest.raises(UnknownSymbol):
        await broker.bars("DOGEUSDT", 60, FIRST, FIRST + timedelta(hours=1))
    assert kline_calls(standin) == 0


async def test_bar_source_on_the_24x7_calendar(connect: Connect, standin: BinanceStandIn) -> None:
    broker = await connect()
    series = standin.klines.minutes["BTCUSDT"]
    source = BrokerBarSource(broker)
    until = FIRST + timedelta(days=1, hours=10, minutes=30)
    four = await source.bars("BTCUSDT", "4h", "24x7", until, 3)
    assert [b.end for b in four] == [FIRST + timedelta(days=1, hours=h) for h in (0, 4, 8)]  # 12:00 not yet
    for bar in four:
        assert ohlcv(bar) == expected(series, bar.start, bar.end)
    days = await source.bars("BTCUSDT", "1d", "24x7", FIRST + timedelta(days=2, hours=1), 2)
    assert [d.start for d in days] == [FIRST, FIRST + timedelta(days=1)]
    for day in days:
        assert ohlcv(day) == expected(series, day.start, day.end)


def _crossing_series(now: datetime) -> list[Candle]:
    """Two days of minutes up to `now`: a slow decline, then the last closed 5m bar jumps (an SMA cross up)."""
    last_close = last_bar_close("24x7", "5m", now)
    start = last_close - timedelta(days=2)
    out, price = [], Decimal("60000")
    at = start
    while at <= now:
        step = Decimal(200) if last_close - timedelta(minutes=5) <= at < last_close else Decimal(-1)
        o, c = price, price + step
        out.append(Candle(at, o, max(o, c), min(o, c), c, Decimal("0.1")))
        price, at = c, at + timedelta(minutes=1)
    return out


async def test_a_live_strategy_trades_on_the_exchanges_bars(start_daemon, standin: BinanceStandIn,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    now = await clear_of_a_bar_close("24x7")
    standin.klines.add_minutes("BTCUSDT", _crossing_series(now))
    strategy = {"strategy": "sma_cross", "account": "crypto", "symbol": "BTCUSDT", "timeframe": "5m",
                "calendar": "24x7", "max_lag_seconds": 600,
                "params": {"fast": 2, "slow": 4, "quantity": "0.01"}}
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"crypto": crypto_account(standin)},
                                             strategies={"btc_sma": strategy}))
    # the runner acts on the latest closed bar when it starts: the cross up on the exchange's candles buys
    [status] = await wait_until(lambda: [s for s in daemon.strategies.status() if s.last_signal], within=15)
    assert status.last_signal == "target 0.01" and status.last_bar_end == last_bar_close("24x7", "5m", now)
    assert kline_calls(standin) >= 1
    assert await wait_until(lambda: [o for o in standin.book.orders.values()
                                     if o["side"] == "BUY" and o["status"] == "FILLED"], within=15)


@pytest.mark.slow
async def test_bars_fetch_from_a_ccxt_account(standin: BinanceStandIn, tmp_path: Path) -> None:
    api = f"{standin.url}/api/v3"
    config = tmp_path / "traderd.toml"
    config.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"

[accounts.crypto]
broker = "ccxt"
[accounts.crypto.ccxt]
exchange = "binance"
api_key = "{standin.api_key}"
secret = "{standin.secret}"
sandbox = true
api_urls = {{ public = "{api}", private = "{api}", v1 = "{standin.url}/api/v1" }}
weight_throttle = false
""")
    end = FIRST + timedelta(days=2)
    code, out, err = await traderd("bars", "fetch", "--config", str(config), "--account", "crypto",
                                    "--symbol", "BTCUSDT", "--timeframe", "15m", "--days", "2",
                                    "--calendar", "24x7", "--end", end.isoformat())
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    series = standin.klines.minutes["BTCUSDT"]
    assert len(rows) == 2 * 24 * 4
    for row in rows:
        start = datetime.fromisoformat(row["time"])
        assert tuple(Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")) == \
            expected(series, start, start + timedelta(minutes=15))
    assert f"{len(rows)} bars of BTCUSDT 15m (24x7) from crypto" in err
    assert standin.secret not in err and standin.api_key not in err
