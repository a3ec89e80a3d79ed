"""Replay: SMA crossover checked trade by trade against backtesting.py, costs, funded rules, and the CLI."""

from __future__ import annotations

import json
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

from config.brokers import PaperSettings
from daemon.cli.main import main as traderd
from daemon.risk.funded import AccountRules
from daemon.strategy.replay import load_bars, replay
from strategies.base import load_strategy, parse_params

DATA = Path(__file__).resolve().parent.parent / "strategies" / "data"
DAILY = DATA / "sample_daily.csv"
FIVE_MIN = DATA / "sample_5m.csv"


def _backtesting_trades(path: Path, fast: int, slow: int, qty: int) -> list[dict[str, object]]:
    """The same SMA crossover written for backtesting.py (next-open fills, no commission)."""
    pd = pytest.importorskip("pandas")
    backtesting = pytest.importorskip("backtesting")
    from backtesting.lib import crossover

    bars = load_bars(path, "SAMPLE", "1d", "nyse")
    frame = pd.DataFrame(
        {"Open": [float(b.open) for b in bars], "High": [float(b.high) for b in bars],
         "Low": [float(b.low) for b in bars], "Close": [float(b.close) for b in bars],
         "Volume": [float(b.volume) for b in bars]},
        index=pd.DatetimeIndex([b.start for b in bars]),
    )

    def sma(values: object, n: int) -> object:
        return pd.Series(values).rolling(n).mean()

    class SmaCross(backtesting.Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, fast)
            self.slow = self.I(sma, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy(size=qty)
            elif crossover(self.slow, self.fast):
                self.position.close()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = backtesting.Backtest(frame, SmaCross, cash=10_000_000, commission=0, trade_on_close=False,
                                     finalize_trades=False).run()
    return stats._trades.to_dict("records")


@pytest.mark.parametrize(("fast", "slow"), [(5, 20), (10, 30)])
async def test_sma_cross_matches_backtesting_trade_by_trade(fast: int, slow: int) -> None:
    expected = _backtesting_trades(DAILY, fast, slow, 10)
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    report = await replay(cls, parse_params(cls, {"fast": fast, "slow": slow, "quantity": 10}), bars)
    assert len(expected) >= 5
    assert len(report.trades) == len(expected)
    for ours, theirs in zip(report.trades, expected, strict=True):
        assert ours.entry_time == theirs["EntryTime"].to_pydatetime()
        assert ours.exit_time == theirs["ExitTime"].to_pydatetime()
        assert ours.quantity == Decimal(int(theirs["Size"]))
        assert float(ours.entry_price) == pytest.approx(theirs["EntryPrice"], abs=1e-9)
        assert float(ours.exit_price) == pytest.approx(theirs["ExitPrice"], abs=1e-9)
        assert float(ours.net_pnl) == pytest.approx(theirs["PnL"], abs=1e-6)
    # fills are at the next bar's open: the entry is the open of a bar, one bar after the cross
    opens = {b.start: b.open for b in bars}
    assert all(opens[t.entry_time] == t.entry_price for t in report.trades)
    closed = sum((t.net_pnl for t in report.trades), Decimal(0))
    assert float(closed) == pytest.approx(sum(t["PnL"] for t in expected), abs=1e-6)


async def test_commission_and_slippage_of_the_paper_broker_apply() -> None:
    cls = load_strategy("sma_cross")
    bars = load_bars(DAILY, "SAMPLE", "1d", "nyse")
    params = parse_params(cls, {"fast": 5, "slow": 20, "quantity": 10})
    free = await replay(cls, params, bars)
    paper = PaperSettings(commission_per_unit=Decimal("0.05"), commission_minimum=Decimal(1),
                          slippage_bps=Decimal(10))
    costly = await replay(cls, params, bars, paper=paper)
    assert len(costly.trades) == len(free.trades)
    for a, b in zip(free.trades, costly.trades, strict=True):
        assert b.entry_price == a.entry_price * Decimal("1.001")  # buy slips up 10 bps
        assert b.exit_price == a.exit_price * Decimal("0.999")
        assert b.commission == Decimal(2)  # max(0.05 x 10, 1) on entry and on exit
        assert b.net_pnl == b.gross_pnl - b.commission
    assert costly.commission >= Decimal(2) * len(costly.trades)
    assert costly.net_pnl < free.net_pnl


async def test_funded_preset_reports_contract_limit_violations() -> None:
    cls = load_strategy("opening_range")
    bars = load_bars(FIVE_MIN, "MESZ4", "5m", "nyse")
    # Topstep counts 10 micros as 1 mini (TopstepX: a 50K account trades up to 50 MES): 51 MES exceed 5.
    params = parse_params(cls, {"quantity": 51, "allow_short": True})
    report = await replay(cls, params, bars, timeframe="5m", rules=AccountRules(preset="topstep_50k_combine"))
    rules = {v.rule for v in report.violations}
    assert "max_contracts" in rules
    assert report.trades == []
    assert all(s.status == "rejected" for s in report.signals)
    allowed = await replay(cls, parse_params(cls, {"quantity": 2, "allow_short": True}), bars, timeframe="5m",
                           rules=AccountRules(preset="topstep_50k_combine"))
    assert allowed.trades and not [v for v in allowed.violations if v.rule == "max_contracts"]
    # P&L in dollars: MES is $5 a point
    t = allowed.trades[0]
    sign = 1 if t.side.value == "buy" else -1
    assert t.gross_pnl == (t.exit_price - t.entry_price) * sign * t.quantity * 5


async def test_opening_range_trades_once_a_session_after_the_range_and_is_flat_at_the_close() -> None:
    cls = load_strategy("opening_range")
    bars = load_bars(FIVE_MIN, "XYZ", "5m", "nyse")
    report = await replay(cls, parse_params(cls, {"quantity": 100, "allow_short": True}), bars, timeframe="5m")
    days = [t.entry_time.date() for t in report.trades]
    assert len(days) == len(set(days)) > 3
    for t in report.trades:
        assert (t.entry_time.hour, t.entry_time.minute) >= (15, 0)  # after 9:30 + 30 min ET (14:30 UTC)
        assert t.exit_time.date() == t.entry_time.date()
    assert report.open_position == 0


def test_cli_json_plot_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "equity.png"
    args = ["--strategy", "sma_cross", "--data", str(DAILY), "--param", "fast=5", "--param", "slow=20",
            "--json"]
    pytest.importorskip("matplotlib")
    assert traderd(["replay", *args, "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "sma_cross" and len(out["trades"]) >= 5
    for key in ("net_pnl", "win_rate", "profit_factor", "max_drawdown", "sharpe", "violations"):
        assert key in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert traderd(["replay", "--strategy", "sma_cross", "--data", str(DAILY)]) == 0
    assert "profit factor" in capsys.readouterr().out
    assert traderd(["replay", "--strategy", "sma_cross", "--data", str(DAILY), "--param", "fast=50"]) == 2
    assert "fast (50) must be shorter than slow" in capsys.readouterr().err
    assert traderd(["replay", "--strategy", "nope", "--data", str(DAILY)]) == 2
    assert traderd(["replay", "--strategy", "sma_cross", "--data", str(tmp_path / "missing.csv")]) == 2
    assert traderd(["replay", "--strategy", "sma_cross", "--data", str(DAILY), "--account-rules", "bogus"]) == 2
