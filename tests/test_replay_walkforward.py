"""Walk-forward: windows that never overlap, optimization that sees only the past, and a strategy fitted in
hindsight that looks brilliant in sample and has nothing out of sample."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from daemon.strategy.optimize import OptimizeError, ReplaySetup, candidates, optimize, parse_range
from daemon.strategy.replay import load_bars
from daemon.strategy.walkforward import Length, folds, parse_spec, walk_forward
from tests.research.series import daily_walk
from tests.research.strategies import Hindsight, week_of


@pytest.fixture
def bars(tmp_path: Path) -> list:
    return load_bars(daily_walk(tmp_path / "walk.csv", seed=5, sessions=260), "WALK", "1d", "nyse")


@pytest.mark.parametrize(("train", "test"), [("120d", "30d"), ("60d", "45d"), ("100b", "20b"), ("30b", "7b")])
def test_test_windows_meet_without_overlap_and_follow_their_training_window(bars: list, train: str,
                                                                             test: str) -> None:
    plan = folds(bars, *parse_spec([f"train={train}", f"test={test}"]))
    assert len(plan) >= 3
    tests = [set(range(f.train_end, f.test_end)) for f in plan]
    for a, b in itertools.pairwise(tests):
        assert not a & b
        assert max(a) + 1 == min(b)  # consecutive test windows meet: no bar is skipped between them
    for f in plan:
        assert f.train_start < f.train_end < f.test_end <= len(bars)
        assert bars[f.train_end - 1].end <= bars[f.train_end].start  # training ends before its test starts
    if train.endswith("d"):  # on a grid of days from midnight UTC of the first bar's day
        length, step = timedelta(days=int(train[:-1])), timedelta(days=int(test[:-1]))
        origin = datetime.combine(bars[0].start.date(), time(0), tzinfo=UTC)
        for k, f in enumerate(plan):
            train_from, test_from = origin + k * step, origin + k * step + length
            assert all(train_from <= b.start < test_from for b in bars[f.train_start:f.train_end])
            assert all(test_from <= b.start < test_from + step for b in bars[f.train_end:f.test_end])


def test_bad_window_specs() -> None:
    for bad in (["train=120d"], ["train=120d", "test=0d"], ["train=120x", "test=30d"], ["learn=1d", "test=1d"]):
        with pytest.raises(OptimizeError):
            parse_spec(bad)
    with pytest.raises(OptimizeError, match="both in days or both in bars"):
        parse_spec(["train=5d", "test=2b"])


def test_a_hindsight_strategy_shines_in_sample_never_trades_out_of_sample_and_saw_only_the_past(
        bars: list) -> None:
    bars = bars[:200]
    setup = ReplaySetup(strategy=Hindsight, fixed={})
    chosen = candidates(Hindsight, [parse_range("week=0:41")], [], {}, 1000, None)
    train, test = Length(120, "d"), Length(30, "d")
    Hindsight.seen.clear()
    report = walk_forward(setup, bars, chosen, "net", train, test)
    plan = folds(bars, train, test)
    assert len(report.folds) == len(plan) >= 4
    # In sample the week picked in hindsight is a winner; out of sample that week is past: no trade at all
    for f, fold in zip(plan, report.folds, strict=True):
        assert fold.in_sample is not None and fold.in_sample.net_pnl > 0 and fold.params is not None
        weeks = {week_of(b) for b in bars[f.train_start:f.train_end]}
        assert fold.params["week"] in weeks
        assert fold.out_of_sample is not None and fold.out_of_sample.trades == 0
        assert fold.out_of_sample.net_pnl == 0
    assert report.in_sample_net > 0 and report.out_of_sample_net == 0 and report.efficiency == 0
    # Had the test windows leaked into the search, the winner would have traded out of sample
    leaked = [optimize(setup, bars[f.train_end:f.test_end], chosen, "net").results[0] for f in plan]
    assert all(r.net_pnl > 0 for r in leaked)
    assert all(week_of(bars[f.train_end]) <= r.params["week"] for f, r in zip(plan, leaked, strict=True))
    # Every replay saw only its own window's past: the search replays end before the test window starts
    by_run: dict[int, list] = {}
    for serial, first, at in Hindsight.seen:
        by_run.setdefault(serial, []).append((first, at))
    runs = [by_run[k] for k in sorted(by_run)]
    per_fold = len(chosen.sets) + 1  # the search, then the winner's test run
    assert len(runs) == per_fold * len(plan) + len(plan) * len(chosen.sets)  # + the leaked searches above
    for i, f in enumerate(plan):
        window = runs[i * per_fold:(i + 1) * per_fold]
        test_start, test_end = bars[f.train_end].start, bars[f.test_end - 1].start
        for seen in window[:-1]:
            assert [at for _, at in seen] == [b.start for b in bars[f.train_start:f.train_end]]
            assert all(first >= bars[f.train_start].start for first, _ in seen)
        traded = window[-1]
        assert [at for _, at in traded] == [b.start for b in bars[f.train_end:f.test_end]]
        assert all(at <= test_end for _, at in traded)
        out = report.folds[i].out_of_sample
        assert out is not None and out.start == test_start
    stitched = [at for at, _ in report.equity_curve]
    assert stitched == sorted(stitched) and len(stitched) == sum(f.test_end - f.train_end for f in plan)
    assert report.equity_curve[-1][1] - setup.paper.starting_cash == report.out_of_sample_net


def test_walk_forward_in_parallel_processes_gives_the_same_folds(bars: list) -> None:
    setup = ReplaySetup(strategy="sma_cross", fixed={"quantity": "10"})
    chosen = candidates(setup.load(), [parse_range("fast=5:15:5"), parse_range("slow=20:40:10")], [],
                        {"quantity": "10"}, 1000, None)
    one = walk_forward(setup, bars, chosen, "net", Length(120, "d"), Length(60, "d"))
    two = walk_forward(setup, bars, chosen, "net", Length(120, "d"), Length(60, "d"), jobs=2)
    assert [f.params for f in one.folds] == [f.params for f in two.folds]
    assert one.out_of_sample_net == two.out_of_sample_net
    assert one.out_of_sample_net == sum((f.out_of_sample.net_pnl for f in one.folds if f.out_of_sample),
                                        start=one.out_of_sample_net * 0)
