"""`traderd bars fetch` as a subprocess against the ProjectX stand-in: the CSV holds the broker's bars,
aggregated as a live strategy sees them, and `traderd replay` reads it back."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from daemon import calendar as cal
from tests.cli_run import traderd
from tests.standins.projectx_api import ProjectXStandin
from tests.test_broker_bars import expected, minute_series
from tests.test_projectx_adapter import contract_id, projectx_running

pytestmark = pytest.mark.slow


def _three_sessions() -> tuple[datetime, datetime]:
    """Open and close of the latest three consecutive weekday CME sessions that closed before now."""
    last = datetime.now(UTC).astimezone(cal.CHICAGO).date() - timedelta(days=1)
    while any((last - timedelta(days=k)).weekday() >= 5 for k in range(3)):
        last -= timedelta(days=1)
    close = datetime.combine(last, datetime.min.time().replace(hour=16), tzinfo=cal.CHICAGO)
    return cal.futures_session_start(last - timedelta(days=2)).astimezone(UTC), close.astimezone(UTC)


FIRST_OPEN, LAST_CLOSE = _three_sessions()
MINUTES = 3 * 24 * 60


@pytest.fixture
async def standin() -> AsyncIterator[ProjectXStandin]:
    def history(stand: ProjectXStandin) -> None:
        stand.history.add_minutes(contract_id(stand, "MES1!"), minute_series(FIRST_OPEN, MINUTES))

    async with projectx_running(history) as stand:
        yield stand


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "traderd.toml"
    path.write_text(f"""
[daemon]
state_dir = "{tmp_path / 'state'}"

[accounts.paper]
broker = "paper"

[accounts.topstep]
broker = "projectx"
[accounts.topstep.projectx]
username = "trader"
api_key = "px-api-key"
base_url = "{url}"
stream = false
""")
    return path


async def test_fetch_writes_the_brokers_bars_and_replay_reads_them(standin: ProjectXStandin,
                                                                   tmp_path: Path) -> None:
    config = _config(tmp_path, standin.url)
    end = LAST_CLOSE
    code, out, err = await traderd("bars", "fetch", "--config", str(config), "--account", "topstep",
                                    "--symbol", "MES1!", "--timeframe", "15m", "--days", "3",
                                    "--end", end.isoformat())
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    series = standin.history.minutes[contract_id(standin, "MES1!")]
    assert len(rows) == 3 * 23 * 4  # three 23-hour Globex sessions of 15-minute bars
    for row in rows:
        start = datetime.fromisoformat(row["time"])
        assert start.tzinfo is not None and start >= FIRST_OPEN
        o, h, lo, c, v = expected(series, start, start + timedelta(minutes=15))
        assert (Decimal(row["open"]), Decimal(row["high"]), Decimal(row["low"]), Decimal(row["close"]),
                int(Decimal(row["volume"]))) == (o, h, lo, c, v)
    assert f"{len(rows)} bars of MES1! 15m (cme) from topstep" in err
    calls = [b for _, p, b in standin.calls if p == "/api/History/retrieveBars"]
    assert calls and all((b["unit"], b["unitNumber"]) == (2, 15) for b in calls)

    data = tmp_path / "mes.csv"
    data.write_text(out)
    code, out, err = await traderd("replay", "--strategy", "sma_cross", "--data", str(data), "--symbol", "MES1!",
                                    "--timeframe", "15m", "--calendar", "cme", "--param", "fast=4",
                                    "--param", "slow=12", "--json")
    assert code == 0, err
    assert json.loads(out)["bars"] == len(rows)

    code, out, err = await traderd("bars", "fetch", "--config", str(config), "--account", "topstep",
                                    "--symbol", "MES1!", "--timeframe", "1d", "--days", "3", "--end", end.isoformat())
    assert code == 0, err
    days = list(csv.DictReader(io.StringIO(out)))
    assert len(days) == 3 and all(len(d["time"]) == 10 for d in days)  # one session a row, by its date


async def test_fetch_refuses_clearly(standin: ProjectXStandin, tmp_path: Path) -> None:
    config = _config(tmp_path, standin.url)
    code, _, err = await traderd("bars", "fetch", "--config", str(config), "--account", "paper", "--symbol", "AAPL")
    assert code == 1 and "no market data" in err
    code, _, err = await traderd("bars", "fetch", "--config", str(config), "--account", "nope", "--symbol", "AAPL")
    assert code == 2 and "not in the configuration" in err
    code, _, err = await traderd("bars", "fetch", "--config", str(config), "--account", "topstep",
                                  "--symbol", "ZZ1!", "--days", "1")
    assert code == 1 and "ZZ" in err
    code, _, err = await traderd("bars", "fetch", "--config", str(config), "--account", "topstep",
                                  "--symbol", "MES1!", "--end", "2026-11-30T21:00:00")
    assert code == 2 and "offset" in err
    assert "px-api-key" not in err
