"""Parameter search: the same winner and the same numbers as backtesting.py's own optimizer, ranges,
constraints, random samples, and sets that breach a funded rule ranked after the others."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.risk.funded import AccountRules
from daemon.strategy.optimize import (
    OptimizeError,
    ReplaySetup,
    candidates,
    optimize,
    parse_range,
)
from daemon.strategy.replay import load_bars
from strategies.base import load_strategy
from tests.research.series import daily_walk
from tests.research.strategies import HoldLong


def _backtesting_heatmap(path: Path, fast: range, slow: range) -> object:
    """backtesting.py's exhaustive grid over the same SMA crossover: final equity per (fast, slow)."""
    pd = pytest.importorskip("pandas")
    backtesting = pytest.importorskip("backtesting")
    from tests.research.bt_sma import BtSmaCross

    bars = load_bars(path, "SEEDED", "1d", "nyse")
    frame = pd.DataFrame(
        {"Open": [float(b.open) for b in bars], "High": [float(b.high) for b in bars],
         "Low": [float(b.low) for b in bars], "Close": [float(b.close) for b in bars],
         "Volume": [float(b.volume) for b in bars]},
        index=pd.DatetimeIndex([b.start for b in bars]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = backtesting.Backtest(frame, BtSmaCross, cash=10_000_000, commission=0, trade_on_close=False,
                                  finalize_trades=False)
        stats, heat = bt.optimize(fast=fast, slow=slow, maximize="Equity Final [$]",
                                  constraint=lambda p: p.fast < p.slow, return_heatmap=True)
    return stats, heat


def test_grid_winner_and_every_cell_match_backtesting_optimize(tmp_path: Path) -> None:
    data = daily_walk(tmp_path / "seeded.csv", seed=11, sessions=400)
    stats, heat = _backtesting_heatmap(data, range(5, 30, 5), range(20, 70, 10))
    cls = load_strategy("sma_cross")
    ranges = [parse_range("fast=5:25:5"), parse_range("slow=20:60:10")]
    chosen = candidates(cls, ranges, ["fast < slow"], {"quantity": "10"}, max_runs=1000, seed=None)
    bars = load_bars(data, "SEEDED", "1d", "nyse")
    setup = ReplaySetup(strategy="sma_cross", fixed={"quantity": "10"})
    result = optimize(setup, bars, chosen, "net", jobs=2)
    assert result.runs == len(heat) == 23  # 5 x 5 less (20, 20) and (25, 20): fast must be below slow
    theirs = {(int(f), int(s)): float(v) - 10_000_000 for (f, s), v in heat.items()}
    ours = {(r.params["fast"], r.params["slow"]): float(r.net_pnl) for r in result.results}
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    ranked = sorted(theirs.values(), reverse=True)
    assert ranked[0] > ranked[1]  # the seeded series has one winner
    best = result.best
    assert best is not None
    assert (best.params["fast"], best.params["slow"]) == (stats._strategy.fast, stats._strategy.slow)
    assert [float(r.net_pnl) for r in result.results] == sorted(ours.values(), reverse=True)
    assert result.bars_per_second > 0 and result.bars == len(bars)


def test_ranges_lists_and_bad_specs() -> None:
    assert parse_range("fast=5:30:5") == ("fast", ["5", "10", "15", "20", "25", "30"])
    assert parse_range("stop_pct=0.5:1.5:0.25") == ("stop_pct", ["0.5", "0.75", "1", "1.25", "1.5"])
    assert parse_range("allow_short=true,false") == ("allow_short", ["true", "false"])
    assert parse_range("slow=30") == ("slow", ["30"])
    for bad in ("fast", "fast=", "fast=30:5", "fast=5:30:0", "fast=a:b", "fast=1:2:3:4", "x=1,,2"):
        with pytest.raises(OptimizeError):
            parse_range(bad)


def test_constraints_params_checks_and_random_sample() -> None:
    cls = load_strategy("sma_cross")
    ranges = [parse_range("fast=1:20"), parse_range("slow=2:40")]
    everything = candidates(cls, ranges, [], {}, max_runs=10_000, seed=1)
    assert everything.grid_size == 20 * 39
    assert all(int(s["fast"]) < int(s["slow"]) for s in everything.sets)  # SmaCross refuses fast >= slow
    assert everything.valid == len(everything.sets) and not everything.sampled
    wide = candidates(cls, ranges, ["slow - fast >= 10"], {}, max_runs=10_000, seed=1)
    assert all(int(s["slow"]) - int(s["fast"]) >= 10 for s in wide.sets) and wide.valid < everything.valid
    a = candidates(cls, ranges, [], {}, max_runs=50, seed=7)
    b = candidates(cls, ranges, [], {}, max_runs=50, seed=7)
    c = candidates(cls, ranges, [], {}, max_runs=50, seed=8)
    assert a.sampled and len(a.sets) == 50 and a.sets == b.sets != c.sets
    assert all(s in everything.sets for s in a.sets)
    with pytest.raises(OptimizeError, match="not a parameter"):
        candidates(cls, [parse_range("speed=1:3")], [], {}, 10, None)
    with pytest.raises(OptimizeError, match="constraint"):
        candidates(cls, ranges, ["fats < slow"], {}, 10, None)
    with pytest.raises(OptimizeError, match="constraint"):
        candidates(cls, ranges, ["fast <"], {}, 10, None)


def test_a_set_that_breaches_the_daily_loss_limit_is_marked_and_ranked_after_the_rest(tmp_path: Path) -> None:
    # A falling first day, then a rise: holding more earns more, but 3 MES contracts or more (4 points x $5
    # a contract on the first day) lose the $50 daily limit
    rows = ["date,open,high,low,close"]
    price = 100
    for i, day in enumerate(("2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07", "2024-03-08", "2024-03-11",
                             "2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15", "2024-03-18")):
        move = {0: 0, 1: -4}.get(i, 3)
        rows.append(f"{day},{price},{max(price, price + move)},{min(price, price + move)},{price + move}")
        price += move
    data = tmp_path / "MESM4.csv"
    data.write_text("\n".join(rows) + "\n")
    bars = load_bars(data, "MESM4", "1d", "cme")
    rules = AccountRules.model_validate({"preset": "topstep_50k_combine", "daily_loss_limit": "50",
                                         "max_contracts": 10, "scaling_plan": [], "flat_by": None})
    setup = ReplaySetup(strategy=HoldLong, calendar="cme", rules=rules)
    chosen = candidates(HoldLong, [parse_range("quantity=1:5")], [], {}, 100, None)
    result = optimize(setup, bars, chosen, "net")
    by_qty = {Decimal(r.params["quantity"]): r for r in result.results}
    assert sorted(q for q, r in by_qty.items() if r.breached) == [3, 4, 5]
    assert all(by_qty[Decimal(q)].breaches == ["daily_loss_limit"] for q in (3, 4, 5))
    assert by_qty[Decimal(5)].net_pnl > by_qty[Decimal(2)].net_pnl  # the best number, had it been allowed
    assert [Decimal(r.params["quantity"]) for r in result.results[:2]] == [2, 1]
    assert result.best is not None and Decimal(result.best.params["quantity"]) == 2
    assert all(r.breached for r in result.results[2:])
