"""Schwab price history from the stand-in: schwab-py's own client proves the stand-in takes its requests, then
`SchwabBroker.bars` (chunked windows, closed bars, refusals), a live strategy in the daemon and `traderd bars fetch`."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from schwab.auth import client_from_access_functions

from brokers.base import UnknownSymbol
from brokers.schwab.broker import SchwabBroker
from daemon import calendar as cal
from daemon.strategy.bars import last_bar_close
from daemon.strategy.broker_bars import BrokerBarSource
from tests.bar_timing import clear_of_a_bar_close
from tests.cli_run import traderd
from tests.conftest import settings_for, wait_until
from tests.standin_fixtures import connected, schwab_running
from tests.standins.schwab_api import ACCOUNT_NUMBER, MARKETDATA, SchwabStandin
from tests.test_alpaca_bars import MONDAY, TUESDAY, _crossing_series, expected, ohlcv, session_minutes
from tests.test_schwab_adapter import login, make_broker
from tests.test_schwab_e2e import schwab_account


@pytest.fixture
async def stand() -> AsyncIterator[SchwabStandin]:
    async with schwab_running() as standin:
        standin.history.add_minutes("AAPL", session_minutes([MONDAY, TUESDAY]))
        yield standin


@pytest.fixture
async def broker(stand: SchwabStandin, tmp_path: Path) -> AsyncIterator[SchwabBroker]:
    login(stand, tmp_path)
    async with connected(make_broker(stand, tmp_path, config={"marketdata_url": stand.url + MARKETDATA})) as b:
        yield b


def schwab_py_client(stand: SchwabStandin):  # type: ignore[no-untyped-def]
    """schwab-py's synchronous client on a login the stand-in honours; its fixed host is pointed at the stand-in."""
    access, refresh = "sdk-access", "sdk-refresh"
    stand.access[access] = time.monotonic() + 1800
    stand.refresh.add(refresh)
    token = {"creation_timestamp": int(time.time()),
             "token": {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
                       "expires_in": 1800, "expires_at": int(time.time()) + 1800}}
    client = client_from_access_functions(stand.app_key, stand.app_secret, lambda: token, lambda *a, **k: None)
    local = httpx.URL(stand.url)

    def to_standin(request: httpx.Request) -> None:
        request.url = request.url.copy_with(scheme=local.scheme, host=local.host, port=local.port)

    client.session.event_hooks["request"].append(to_standin)
    return client


async def sdk(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """schwab-py here is synchronous: run it off the loop that serves the stand-in, bounded."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), timeout=15)


async def test_schwab_py_reads_the_standins_price_history(stand: SchwabStandin) -> None:
    client = schwab_py_client(stand)
    response = await sdk(client.get_price_history_every_five_minutes, "AAPL",
                         start_datetime=cal.session_open(MONDAY), end_datetime=cal.session_close(TUESDAY),
                         need_extended_hours_data=False)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["symbol"] == "AAPL" and answer["empty"] is False and len(answer["candles"]) == 2 * 78
    series = stand.history.minutes["AAPL"]
    for candle in answer["candles"]:
        start = datetime.fromtimestamp(candle["datetime"] / 1000, UTC)
        assert tuple(Decimal(str(candle[k])) for k in ("open", "high", "low", "close", "volume")) == \
            expected(series, start, start + timedelta(minutes=5))
    [query] = stand.history.requests
    assert (query["periodType"], query["frequencyType"], query["frequency"]) == ("day", "minute", "5")
    unknown = await sdk(client.get_price_history_every_thirty_minutes, "ZZZZ",
                        start_datetime=cal.session_open(MONDAY), end_datetime=cal.session_close(TUESDAY))
    assert unknown.json() == {"candles": [], "symbol": "ZZZZ", "empty": True}


async def test_five_minute_bars_of_one_session(broker: SchwabBroker, stand: SchwabStandin) -> None:
    series = stand.history.minutes["AAPL"]
    start = cal.session_open(MONDAY).astimezone(UTC) + timedelta(minutes=32)  # mid-bar: that bar is left out
    bars = await broker.bars("NASDAQ:AAPL", 300, start, start + timedelta(minutes=30))
    first = cal.session_open(MONDAY).astimezone(UTC) + timedelta(minutes=35)
    assert [b.start for b in bars] == [first + timedelta(minutes=5 * i) for i in range(6)]
    for bar in bars:
        assert bar.symbol == "NASDAQ:AAPL" and bar.start.tzinfo is UTC and bar.end - bar.start == timedelta(minutes=5)
        assert isinstance(bar.close, Decimal) and ohlcv(bar) == expected(series, bar.start, bar.end)
    [query] = stand.history.requests
    assert (query["symbol"], query["frequency"], query["needExtendedHoursData"]) == ("AAPL", "5", "false")


async def test_long_windows_are_asked_in_chunks(broker: SchwabBroker, stand: SchwabStandin) -> None:
    series = stand.history.minutes["AAPL"]
    minutes = await broker.bars("AAPL", 60, cal.session_close(MONDAY) - timedelta(days=25), cal.session_close(TUESDAY))
    assert len(minutes) == 2 * 390 and len(stand.history.requests) == 3  # 26 days, 10 a request
    assert [ohlcv(b) for b in minutes] == [(m.open, m.high, m.low, m.close, Decimal(m.volume)) for m in series]
    days = await BrokerBarSource(broker).bars("AAPL", "1d", "nyse", cal.session_close(TUESDAY), 2)
    assert [d.start for d in days] == [cal.session_open(MONDAY), cal.session_open(TUESDAY)]
    assert all(ohlcv(d) == expected(series, d.start, d.end) for d in days)


async def test_the_forming_bar_is_not_returned(stand: SchwabStandin, tmp_path: Path) -> None:
    now = cal.session_open(TUESDAY).astimezone(UTC) + timedelta(hours=1, minutes=7)
    login(stand, tmp_path)
    broker = make_broker(stand, tmp_path, config={"marketdata_url": stand.url + MARKETDATA}, clock=lambda: now)
    await broker.connect()
    try:
        bars = await broker.bars("AAPL", 900, cal.session_open(TUESDAY), cal.session_close(TUESDAY))
    finally:
        await broker.close()
    assert [b.end for b in bars] == [cal.session_open(TUESDAY) + timedelta(minutes=15 * i) for i in range(1, 5)]


async def test_refusals(broker: SchwabBroker, stand: SchwabStandin) -> None:
    with pytest.raises(NotImplementedError, match="120 s"):
        await broker.bars("AAPL", 120, cal.session_open(MONDAY), cal.session_close(MONDAY))
    with pytest.raises(UnknownSymbol):
        await broker.bars("ES1!", 300, cal.session_open(MONDAY), cal.session_close(MONDAY))
    assert stand.history.requests == []  # nothing was asked
    assert await broker.bars("ZZZZ", 300, cal.session_open(MONDAY), cal.session_close(MONDAY)) == []


async def test_a_live_strategy_trades_on_schwab_price_history(start_daemon, stand: SchwabStandin,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    now = await clear_of_a_bar_close("nyse", cal.is_market_open)
    bar_end = last_bar_close("nyse", "5m", now)
    stand.history.add_minutes("AAPL", _crossing_series(bar_end))
    stand.set_price("AAPL", "190")
    state = tmp_path / "state"
    login(stand, state, account="schwab1")
    account = schwab_account(stand)
    account["schwab"] |= {"marketdata_url": stand.url + MARKETDATA}
    strategy = {"strategy": "sma_cross", "account": "schwab1", "symbol": "AAPL", "timeframe": "5m",
                "calendar": "nyse", "max_lag_seconds": 5 * 86400, "params": {"fast": 2, "slow": 4, "quantity": "3"}}
    daemon = await start_daemon(settings_for(state, accounts={"schwab1": account}, strategies={"aapl_sma": strategy}))
    # the runner acts on the latest closed bar when it starts: the cross up on Schwab's candles buys
    [status] = await wait_until(lambda: [s for s in daemon.strategies.status() if s.last_signal], within=15)
    assert status.last_signal == "target 3" and status.last_bar_end == bar_end
    assert stand.history.requests and all(q["frequency"] == "5" for q in stand.history.requests)
    assert await wait_until(lambda: [o for o in stand.orders_for("AAPL") if o["status"] == "FILLED"
                                     and o["orderLegCollection"][0]["instruction"] == "BUY"], within=15)


@pytest.mark.slow
async def test_bars_fetch_from_a_schwab_account(stand: SchwabStandin, tmp_path: Path) -> None:
    state = tmp_path / "state"
    login(stand, state, account="schwab1")
    config = tmp_path / "traderd.toml"
    config.write_text(f"""
[daemon]
state_dir = "{state}"

[accounts.schwab1]
broker = "schwab"
[accounts.schwab1.schwab]
app_key = "{stand.app_key}"
app_secret = "{stand.app_secret}"
base_url = "{stand.url}/trader/v1"
oauth_url = "{stand.url}/v1/oauth"
marketdata_url = "{stand.url}{MARKETDATA}"
account_number = "{ACCOUNT_NUMBER}"
""")
    end = cal.session_close(TUESDAY).astimezone(UTC) + timedelta(hours=1)
    code, out, err = await traderd("bars", "fetch", "--config", str(config), "--account", "schwab1",
                                    "--symbol", "AAPL", "--timeframe", "15m", "--days", "2", "--end", end.isoformat())
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    series = stand.history.minutes["AAPL"]
    assert len(rows) == 2 * 26  # two NYSE sessions of 15-minute bars
    for row in rows:
        start = datetime.fromisoformat(row["time"])
        assert tuple(Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")) == \
            expected(series, start, start + timedelta(minutes=15))
    assert f"{len(rows)} bars of AAPL 15m (nyse) from schwab1" in err
    assert stand.app_secret not in err and stand.app_key not in err
