"""`traderd replay`'s summary: figures checked against backtesting.py, exchange-local times, --trades, the costs
named and taken from --config, and the progress bar on a terminal (and silence on a pipe)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.cli.main import main as traderd
from daemon.strategy.replay import load_bars, replay
from strategies.base import load_strategy, parse_params
from tests.ptyrun import stderr_on_a_terminal

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "strategies" / "data"
DAILY = DATA / "sample_daily.csv"
FIVE_MIN = DATA / "sample_5m.csv"
SMA = ["--strategy", "sma_cross", "--data", str(DAILY), "--param", "fast=5", "--param", "slow=20",
       "--param", "quantity=10"]


def _backtesting_stats(fast: int, slow: int, qty: int, *, finalize: bool, indicators: bool = True) -> object:
    pd = pytest.importorskip("pandas")
    backtesting = pytest.importorskip("backtesting")
    from backtesting.lib import crossover

    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    frame = pd.DataFrame(
        {"Open": [float(b.open) for b in bars], "High": [float(b.high) for b in bars],
         "Low": [float(b.low) for b in bars], "Close": [float(b.close) for b in bars],
         "Volume": [float(b.volume) for b in bars]}, index=pd.DatetimeIndex([b.start for b in bars]))

    def sma(values: object, n: int) -> object:
        return pd.Series(values).rolling(n).mean()

    class SmaCross(backtesting.Strategy):
        def init(self) -> None:
            if indicators:
                self.fast = self.I(sma, self.data.Close, fast)
                self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            if not indicators:
                return
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy(size=qty)
            elif crossover(self.slow, self.fast):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backtesting.Backtest(frame, SmaCross, cash=100_000, commission=0, trade_on_close=False,
                                    finalize_trades=finalize).run()


@pytest.mark.parametrize(("fast", "slow"), [(5, 20), (10, 30)])
async def test_summary_figures_agree_with_backtesting(fast: int, slow: int) -> None:
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    report = await replay(cls, parse_params(cls, {"fast": fast, "slow": slow, "quantity": 10}), bars)
    s = report.stats
    assert s is not None
    closed = _backtesting_stats(fast, slow, 10, finalize=False)  # closed trades, as ours
    assert len(report.trades) == closed["# Trades"] >= 5
    assert s.total_return_pct == pytest.approx(closed["Return [%]"], abs=1e-9)
    assert s.avg_trade_pct == pytest.approx(closed["Avg. Trade [%]"], rel=1e-9)
    assert s.expectancy_pct == pytest.approx(closed["Expectancy [%]"], rel=1e-9)
    assert report.win_rate * 100 == pytest.approx(closed["Win Rate [%]"], rel=1e-9)
    # (backtesting.py's profit factor sums trade returns in %; ours sums money, so they are not compared)
    assert report.max_drawdown_pct == pytest.approx(-closed["Max. Drawdown [%]"], rel=1e-9)
    held = closed["_trades"]
    assert s.avg_bars_held == pytest.approx((held["ExitBar"] - held["EntryBar"]).mean(), rel=1e-12)
    assert [t.entry_bar for t in report.trades] == list(held["EntryBar"])
    assert s.best_trade == max(t.net_pnl for t in report.trades)
    assert float(s.avg_trade) == pytest.approx(held["PnL"].mean(), abs=1e-9)
    # a position still open at the end is exposure too: backtesting.py counts it once it closes the trade
    assert report.open_position != 0 or fast == 10
    finalized = _backtesting_stats(fast, slow, 10, finalize=True)
    assert s.exposure_pct == pytest.approx(finalized["Exposure Time [%]"], rel=1e-12)
    # buy and hold over every replayed bar: backtesting.py's figure for a strategy without indicator warm-up
    assert s.buy_and_hold_return_pct == pytest.approx(
        _backtesting_stats(fast, slow, 10, finalize=False, indicators=False)["Buy & Hold Return [%]"], rel=1e-12)


def test_text_summary_in_local_time_with_trades_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert traderd(["replay", *SMA]) == 0
    short = capsys.readouterr().out
    for figure in ("total return -0.03%", "buy and hold -14.12%", "average trade -0.61", "expectancy -0.01% a trade",
                   "average bars held 13.2", "exposure 46.2% of the bars", "2023-01-03 .. 2024-12-31",
                   "(--trades lists the 16 trades)", "times America/New_York"):
        assert figure in short, figure
    assert "+00:00" not in short and "entry" not in short
    assert traderd(["replay", *SMA, "--trades"]) == 0
    listed = capsys.readouterr().out
    rows = [line for line in listed.splitlines() if line.strip().startswith(("1 buy", "16 buy"))]
    assert len(rows) == 2
    assert "2023-03-02" in rows[0] and "13:30" not in listed and "14:30" not in listed  # a daily bar is a date
    assert "--trades lists" not in listed
    intraday = ["replay", "--strategy", "opening_range", "--data", str(FIVE_MIN), "--timeframe", "5m",
                "--calendar", "cme", "--symbol", "ES", "--multiplier", "50", "--param", "quantity=2", "--trades"]
    assert traderd(intraday) == 0
    out = capsys.readouterr().out
    assert "times America/Chicago" in out
    first = next(line for line in out.splitlines() if line.strip().startswith("1 buy"))
    assert "2024-11-25 09:15" in first  # 15:15 UTC is 09:15 in Chicago: the 45th minute of the session


def test_config_costs_apply_and_the_summary_names_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "traderd.toml"
    config.write_text('[accounts.paper]\nbroker = "paper"\n[accounts.paper.paper]\nslippage_bps = "10"\n'
                      'commission_per_unit = "0.05"\ncommission_minimum = "1"\n')
    assert traderd(["replay", *SMA, "--config", str(config), "--trades"]) == 0
    costly = capsys.readouterr().out
    assert (f"costs: commission 0.05 per share/contract, minimum 1 per fill, slippage 10 bps per fill "
            f"(from [accounts.paper.paper] of --config {config})") in costly
    assert "commission 33.00" in costly  # 16 round trips and the open entry, 1.00 a fill (0.05 x 10 < 1)
    assert traderd(["replay", *SMA]) == 0
    free = capsys.readouterr().out
    assert "costs: no commission, no slippage (defaults: nothing configured or given)" in free
    assert "commission 0.00" in free
    assert traderd(["replay", *SMA, "--config", str(config), "--commission", "0.2"]) == 0
    assert (f"commission 0.2 per share/contract, minimum 1 per fill, slippage 10 bps per fill "
            f"(from [accounts.paper.paper] of --config {config}; --commission)") in capsys.readouterr().out
    live = tmp_path / "live.toml"
    live.write_text('[accounts.live]\nbroker = "alpaca"\n[accounts.live.alpaca]\nkey_id = "k"\nsecret_key = "s"\n')
    assert traderd(["replay", *SMA, "--config", str(live)]) == 0
    assert f"--config {live} has no [accounts.live.paper] section: none" in capsys.readouterr().out
    with live.open("a") as f:
        f.write('[accounts.live.paper]\ncommission_per_unit = "0.01"\ncommission_minimum = "0.5"\n')
    assert traderd(["replay", *SMA, "--config", str(live), "--json"]) == 0
    assert '"commission_per_unit": "0.01"' in capsys.readouterr().out


@pytest.mark.slow
def test_progress_on_a_terminal_and_none_on_a_pipe() -> None:
    command = [sys.executable, "-m", "daemon.cli", "replay", "--strategy", "opening_range", "--data", str(FIVE_MIN),
               "--timeframe", "5m", "--param", "quantity=2"]
    returncode, seen = stderr_on_a_terminal(command, ROOT)
    assert returncode == 0
    assert b"replay" in seen and b"744/744" in seen and b"bar" in seen
    piped = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert piped.returncode == 0 and piped.stderr == ""
    assert "opening_range on" in piped.stdout


async def test_costs_and_bar_indices_travel_in_the_report() -> None:
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    report = await replay(cls, parse_params(cls, {"fast": 5, "slow": 20, "quantity": 10}), bars)
    assert report.costs is not None and report.costs.commission_per_unit == Decimal(0)
    opens = {b.start: i for i, b in enumerate(bars)}
    assert all(t.entry_bar == opens[t.entry_time] and t.exit_bar == opens[t.exit_time] for t in report.trades)
