"""Walk-forward analysis: optimize on each training window, trade the next test window, stitch out-of-sample.

Windows are laid on a fixed grid: in days from midnight UTC of the first bar's day (`120d`; a bar belongs to
the window its start falls in), or in bars (`500b`). Fold k trains on [k * test, k * test + train) and
tests on the `test` that follows. So test windows meet and never overlap, each training window
ends where its test window begins, and the optimizer of a fold never sees a bar of its test window or
after it. A last test window shorter than `test` is kept when it has at least one bar.

In a test window the fold's winner (the best set that breached no funded rule; a fold where every set
breached sits out) starts flat with fresh starting equity; the bars before the window are its history only
(indicator warm-up), never traded. The stitched out-of-sample result chains the test windows' P&L in
order; it is reported beside the in-sample results of the same folds, both also per day, because the gap
between them is what the analysis is for (`efficiency` = out-of-sample P&L per day / in-sample P&L per day).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from daemon.domain import ZERO
from daemon.strategy.optimize import Candidates, Metric, OptimizeError, ReplaySetup, RunResult, optimize, summarize
from daemon.strategy.replay import Trade, performance
from strategies.base import Bar

_LENGTH = re.compile(r"^(?P<n>[1-9]\d*)(?P<unit>[db])$")


@dataclass(frozen=True)
class Length:
    """A window length: calendar days (`120d`) or a number of bars (`500b`)."""

    count: int
    unit: str  # "d" or "b"

    @classmethod
    def parse(cls, text: str, what: str) -> Length:
        match = _LENGTH.match(text.strip())
        if not match:
            raise OptimizeError(f"--walk-forward {what}={text!r}: use a number of days (120d) or bars (500b)")
        return cls(int(match["n"]), match["unit"])

    def boundaries(self, bars: Sequence[Bar], k: int, train: Length) -> tuple[int, int, int]:
        """(train start, test start, test end) bar indexes of fold `k` when this is the test length.

        The boundaries lie on a fixed grid (times from the first bar's start, or bar counts), so consecutive
        test windows meet exactly and never overlap, whatever the gaps in the data."""
        if self.unit == "b" and train.unit == "b":
            first = k * self.count
            return first, first + train.count, first + train.count + self.count
        origin = datetime.combine(bars[0].start.astimezone(UTC).date(), time(0), tzinfo=UTC)
        starts = [b.start for b in bars]

        def at(offset: timedelta) -> int:
            return bisect.bisect_left(starts, origin + offset)

        return (at(self.delta * k), at(self.delta * k + train.delta), at(self.delta * (k + 1) + train.delta))

    @property
    def delta(self) -> timedelta:
        if self.unit != "d":
            raise OptimizeError("--walk-forward: give train and test both in days or both in bars")
        return timedelta(days=self.count)


def parse_spec(parts: Sequence[str]) -> tuple[Length, Length]:
    """`["train=120d", "test=30d"]` -> (train, test)."""
    found: dict[str, Length] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("train", "test"):
            raise OptimizeError(f"--walk-forward {part!r}: use train=LENGTH test=LENGTH")
        found[key.strip()] = Length.parse(value, key.strip())
    if set(found) != {"train", "test"}:
        raise OptimizeError("--walk-forward needs both train=LENGTH and test=LENGTH")
    if found["train"].unit != found["test"].unit:
        raise OptimizeError("--walk-forward: give train and test both in days or both in bars")
    return found["train"], found["test"]


@dataclass(frozen=True)
class Fold:
    """Bar index ranges [train_start, train_end) and [train_end, test_end) of one fold."""

    train_start: int
    train_end: int
    test_end: int


def folds(bars: Sequence[Bar], train: Length, test: Length) -> list[Fold]:
    """The folds over `bars` (see the module docstring); empty when the data cannot hold one train + test."""
    out: list[Fold] = []
    for k in itertools.count():
        train_start, test_start, test_end = test.boundaries(bars, k, train)
        if test_start >= len(bars):
            return out
        if test_start > train_start and test_end > test_start:  # windows without bars (gaps) are skipped
            out.append(Fold(train_start, test_start, min(test_end, len(bars))))
    return out


class FoldReport(BaseModel):
    train_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime
    train_bars: int
    test_bars: int
    params: dict[str, Any] | None  # the winner of the training window, None when every set breached
    in_sample: RunResult | None
    out_of_sample: RunResult | None
    runs: int


class WalkForwardReport(BaseModel):
    strategy: str
    maximize: Metric
    train: str
    test: str
    folds: list[FoldReport]
    in_sample_net: Decimal  # sum of the winners' training-window P&L
    in_sample_days: float
    out_of_sample_net: Decimal  # the stitched test windows
    out_of_sample_days: float
    out_of_sample_trades: list[Trade]
    out_of_sample_max_drawdown: Decimal
    out_of_sample_sharpe: float | None
    out_of_sample_breaches: list[str]
    efficiency: float | None  # out-of-sample P&L per day / in-sample P&L per day
    equity_curve: list[tuple[datetime, Decimal]]  # stitched out-of-sample equity

    @property
    def in_sample_per_day(self) -> float:
        return float(self.in_sample_net) / self.in_sample_days if self.in_sample_days else 0.0

    @property
    def out_of_sample_per_day(self) -> float:
        return float(self.out_of_sample_net) / self.out_of_sample_days if self.out_of_sample_days else 0.0


def _days(bars: Sequence[Bar]) -> float:
    return (bars[-1].end - bars[0].start).total_seconds() / 86400 if bars else 0.0


def walk_forward(setup: ReplaySetup, bars: Sequence[Bar], chosen: Candidates, maximize: Metric,
                 train: Length, test: Length, *, jobs: int = 1, seed: int | None = None,
                 progress: Callable[[int], None] | None = None) -> WalkForwardReport:
    """Run the analysis of the module docstring; `chosen` are the parameter sets tried in every fold."""
    plan = folds(bars, train, test)
    if not plan:
        raise OptimizeError(f"the data ({len(bars)} bars) is too short for one training window of "
                            f"{train.count}{train.unit} and a test window after it")
    cls = setup.load()
    reports: list[FoldReport] = []
    trades: list[Trade] = []
    curve: list[tuple[datetime, Decimal]] = []
    carried = ZERO
    start_equity = setup.rules.starting_balance if setup.rules is not None else setup.paper.starting_cash
    pool = ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        for fold in plan:
            train_bars = bars[fold.train_start:fold.train_end]
            test_bars = bars[fold.train_end:fold.test_end]
            found = optimize(setup, train_bars, chosen, maximize, jobs=jobs, seed=seed, executor=pool,
                             progress=progress)
            best = found.best
            oos: RunResult | None = None
            if best is not None:
                params = {k: str(v) for k, v in best.params.items()}
                report = asyncio.run(setup.run(cls, params, test_bars, history=bars[:fold.train_end]))
                oos = summarize(report, best.params)
                trades.extend(report.trades)
                curve.extend((at, equity + carried) for at, equity in report.equity_curve)
                carried += report.net_pnl
            else:
                curve.extend((b.end, start_equity + carried) for b in test_bars)
            reports.append(FoldReport(
                train_start=train_bars[0].start, train_end=train_bars[-1].end, test_start=test_bars[0].start,
                test_end=test_bars[-1].end, train_bars=len(train_bars), test_bars=len(test_bars),
                params=best.params if best else None, in_sample=best, out_of_sample=oos, runs=found.runs))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    _, _, max_dd, _, sharpe = performance(trades, curve, setup.calendar)
    in_net = sum((f.in_sample.net_pnl for f in reports if f.in_sample), ZERO)
    in_days = sum(_days(bars[f.train_start:f.train_end]) for f in plan)
    out_days = sum(_days(bars[f.train_end:f.test_end]) for f in plan)
    in_rate = float(in_net) / in_days if in_days else 0.0
    out_rate = float(carried) / out_days if out_days else 0.0
    return WalkForwardReport(
        strategy=setup.name or str(setup.strategy), maximize=maximize, train=f"{train.count}{train.unit}",
        test=f"{test.count}{test.unit}", folds=reports, in_sample_net=in_net, in_sample_days=in_days,
        out_of_sample_net=carried, out_of_sample_days=out_days, out_of_sample_trades=trades,
        out_of_sample_max_drawdown=max_dd, out_of_sample_sharpe=sharpe,
        out_of_sample_breaches=sorted({b for f in reports if f.out_of_sample for b in f.out_of_sample.breaches}),
        efficiency=out_rate / in_rate if in_rate > 0 else None, equity_curve=curve)
