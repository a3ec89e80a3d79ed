"""Parameter search: every replay of a grid (or a seeded random sample of it) in parallel processes, ranked.

Ranges are `NAME=START:STOP:STEP` (inclusive, e.g. `fast=5:30:5`), `NAME=A,B,C` or `NAME=VALUE`; the grid
is their product, less the sets a `--constraint` expression (`fast < slow`, evaluated by `simpleeval` over
the validated parameters) rejects or the strategy's own `Params` refuses. A grid larger than `max_runs` is
replaced by a random sample of `max_runs` of its sets, drawn with `seed`.

Every set runs through `daemon.strategy.replay.replay`, so through the same engine, paper broker, costs and
risk rules as a single replay: a set whose run breached a funded account's `max_loss` or `daily_loss_limit`
is marked `breached` and ranked after every set that did not, whatever its metric. Ranking is by
`maximize` (sharpe, net, profit_factor) descending; a run without a value of that metric (no trades, no
returns) comes after those with one, and ties keep the grid order.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel
from simpleeval import InvalidExpression, SimpleEval

from config.brokers import PaperSettings
from config.settings import RiskLimits
from daemon.risk.funded import AccountRules
from daemon.strategy.bars import CalendarName
from daemon.strategy.costs import Costs
from daemon.strategy.replay import ReplayReport, replay
from strategies.base import Bar, Strategy, StrategyLoadError, load_strategy, parse_params

Metric = Literal["sharpe", "net", "profit_factor"]
METRICS: tuple[Metric, ...] = ("sharpe", "net", "profit_factor")
BREACH_RULES = frozenset({"max_loss", "daily_loss_limit"})
MAX_GRID = 1_000_000


class OptimizeError(ValueError):
    """A range, constraint or grid that cannot be searched; the message says which."""


@dataclass(frozen=True)
class ReplaySetup:
    """Everything a replay needs besides the bars and parameters; picklable, so it travels to the workers."""

    strategy: str | type[Strategy]  # a name or .py path (loaded again in each worker), or an importable class
    name: str = ""
    timeframe: str = "1d"
    calendar: CalendarName = "nyse"
    paper: PaperSettings = field(default_factory=PaperSettings)
    limits: RiskLimits = field(default_factory=RiskLimits)
    rules: AccountRules | None = None
    costs: Costs | None = None
    fixed: Mapping[str, str] = field(default_factory=dict)  # parameters given with --param, not searched

    def load(self) -> type[Strategy]:
        return self.strategy if isinstance(self.strategy, type) else load_strategy(self.strategy)

    async def run(self, cls: type[Strategy], params: Mapping[str, Any], bars: Sequence[Bar],
                  history: Sequence[Bar] = (), progress: Callable[[int], None] | None = None) -> ReplayReport:
        return await replay(cls, parse_params(cls, {**self.fixed, **params}), bars, name=self.name,
                            timeframe=self.timeframe, calendar=self.calendar, paper=self.paper, limits=self.limits,
                            rules=self.rules, costs=self.costs, history=history, progress=progress)


class RunResult(BaseModel):
    """One parameter set's replay, reduced to what ranking and reporting need."""

    params: dict[str, Any]
    net_pnl: Decimal
    final_equity: Decimal
    trades: int
    win_rate: float | None
    profit_factor: float | None
    sharpe: float | None
    max_drawdown: Decimal
    max_drawdown_pct: float
    commission: Decimal
    breaches: list[str]  # funded rules breached (max_loss, daily_loss_limit), in order, once each
    violations: int  # every rule violation, refusals included
    start: datetime | None = None
    end: datetime | None = None

    @property
    def breached(self) -> bool:
        return bool(self.breaches)

    def metric(self, name: Metric) -> float | None:
        if name == "net":
            return float(self.net_pnl)
        return self.profit_factor if name == "profit_factor" else self.sharpe


def summarize(report: ReplayReport, params: Mapping[str, Any]) -> RunResult:
    breaches = list(dict.fromkeys(v.rule for v in report.violations if v.rule in BREACH_RULES))
    return RunResult(params=dict(params), net_pnl=report.net_pnl, final_equity=report.final_equity,
                     trades=len(report.trades), win_rate=report.win_rate, profit_factor=report.profit_factor,
                     sharpe=report.sharpe, max_drawdown=report.max_drawdown,
                     max_drawdown_pct=report.max_drawdown_pct, commission=report.commission, breaches=breaches,
                     violations=len(report.violations), start=report.start, end=report.end)


def rank(results: Iterable[RunResult], maximize: Metric) -> list[RunResult]:
    """Unbreached before breached, then by the metric descending (no value last); stable."""
    def key(r: RunResult) -> tuple[bool, bool, float]:
        value = r.metric(maximize)
        return r.breached, value is None, -(value if value is not None else 0.0)
    return sorted(results, key=key)


def _number(text: str, where: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise OptimizeError(f"{where}: {text!r} is not a number") from None
    if not value.is_finite():
        raise OptimizeError(f"{where}: {text!r} is not a number")
    return value


def _text(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else format(value.normalize(), "f")


def parse_range(spec: str) -> tuple[str, list[str]]:
    """`fast=5:30:5` -> ("fast", ["5", "10", ..., "30"]); `mode=a,b` -> ("mode", ["a", "b"])."""
    name, sep, body = spec.partition("=")
    name, body = name.strip(), body.strip()
    if not sep or not name or not body:
        raise OptimizeError(f"--optimize {spec!r}: use NAME=START:STOP:STEP or NAME=A,B,C")
    if ":" in body:
        parts = body.split(":")
        if len(parts) not in (2, 3):
            raise OptimizeError(f"--optimize {spec!r}: a range is START:STOP[:STEP]")
        start, stop = _number(parts[0], spec), _number(parts[1], spec)
        step = _number(parts[2], spec) if len(parts) == 3 else Decimal(1)
        if step <= 0 or stop < start:
            raise OptimizeError(f"--optimize {spec!r}: needs START <= STOP and a positive STEP")
        count = int((stop - start) / step) + 1
        if count > MAX_GRID:
            raise OptimizeError(f"--optimize {spec!r}: {count} values is too many")
        return name, [_text(start + i * step) for i in range(count)]
    values = [v.strip() for v in body.split(",")]
    if any(not v for v in values):
        raise OptimizeError(f"--optimize {spec!r}: an empty value in the list")
    return name, list(dict.fromkeys(values))


class Constraint:
    """A boolean expression over the parameters, e.g. `fast < slow` or `slow - fast >= 10`."""

    def __init__(self, text: str, names: Iterable[str]) -> None:
        self.text = text
        probe = SimpleEval(names={n: 1 for n in names}, functions={"abs": abs, "min": min, "max": max})
        try:
            probe.eval(text)
        except (InvalidExpression, SyntaxError) as exc:
            raise OptimizeError(f"--constraint {text!r}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError):
            pass  # the probe values may divide by zero or compare oddly; the names and syntax are fine

    def __call__(self, params: Mapping[str, Any]) -> bool:
        names = {k: float(v) if isinstance(v, Decimal) else v for k, v in params.items()}
        try:
            return bool(SimpleEval(names=names, functions={"abs": abs, "min": min, "max": max}).eval(self.text))
        except (InvalidExpression, ArithmeticError, TypeError, ValueError) as exc:
            raise OptimizeError(f"--constraint {self.text!r} on {dict(params)}: {exc}") from None


@dataclass
class Candidates:
    """The parameter sets to run and how they were chosen."""

    sets: list[dict[str, str]]
    grid_size: int  # sets of the full product
    valid: int  # of those, the ones the constraints and the strategy's Params accept
    sampled: bool


def candidates(cls: type[Strategy], ranges: Sequence[tuple[str, list[str]]], constraints: Sequence[str],
               fixed: Mapping[str, str], max_runs: int, seed: int | None) -> Candidates:
    """The valid sets of the grid, or a seeded random sample of `max_runs` of them."""
    names = [n for n, _ in ranges]
    if len(set(names)) != len(names):
        raise OptimizeError("--optimize names a parameter twice")
    known = set(cls.Params.model_fields)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise OptimizeError(f"--optimize {', '.join(unknown)}: not a parameter of {cls.__name__} "
                            f"({', '.join(sorted(known)) or 'it has none'})")
    size = 1
    for _, values in ranges:
        size *= len(values)
    if size > MAX_GRID:
        raise OptimizeError(f"the grid has {size} sets; narrow the ranges (at most {MAX_GRID})")
    checks = [Constraint(text, known) for text in constraints]
    valid: list[dict[str, str]] = []
    for combo in itertools.product(*(values for _, values in ranges)):
        chosen = dict(zip(names, combo, strict=True))
        try:
            typed = parse_params(cls, {**fixed, **chosen}).model_dump()
        except StrategyLoadError:
            continue
        if all(check(typed) for check in checks):
            valid.append(chosen)
    if max_runs <= 0:
        raise OptimizeError("--max-runs must be positive")
    if len(valid) <= max_runs:
        return Candidates(valid, size, len(valid), sampled=False)
    picked = sorted(random.Random(seed).sample(range(len(valid)), max_runs))
    return Candidates([valid[i] for i in picked], size, len(valid), sampled=True)


def run_chunk(setup: ReplaySetup, bars: Sequence[Bar], chunk: Sequence[Mapping[str, str]]) -> list[RunResult]:
    """Replay each set of `chunk` in this process (the unit of work of a worker)."""
    cls = setup.load()

    async def go() -> list[RunResult]:
        out = []
        for params in chunk:
            report = await setup.run(cls, params, bars)
            out.append(summarize(report, {k: v for k, v in report.params.items() if k in params}))
        return out

    return asyncio.run(go())


class Optimization(BaseModel):
    strategy: str
    maximize: Metric
    grid_size: int
    valid: int
    runs: int
    sampled: bool
    seed: int | None
    bars: int
    seconds: float
    bars_per_second: float  # replayed bars per wall-clock second, over all processes
    results: list[RunResult]  # ranked

    @property
    def best(self) -> RunResult | None:
        """The top set that breached nothing, or None when every set breached."""
        return next((r for r in self.results if not r.breached), None)


def _chunks(sets: Sequence[dict[str, str]], jobs: int) -> list[Sequence[dict[str, str]]]:
    size = max(1, min(16, len(sets) // (jobs * 4) or 1))
    return [sets[i:i + size] for i in range(0, len(sets), size)]


def optimize(setup: ReplaySetup, bars: Sequence[Bar], chosen: Candidates, maximize: Metric, *, jobs: int = 1,
             seed: int | None = None, executor: Executor | None = None,
             progress: Callable[[int], None] | None = None) -> Optimization:
    """Replay every set of `chosen` over `bars` (in `executor`, or a new pool of `jobs` processes) and rank."""
    if maximize not in METRICS:
        raise OptimizeError(f"--maximize {maximize!r}: use one of {', '.join(METRICS)}")
    started = time.perf_counter()
    results: list[tuple[int, list[RunResult]]] = []
    chunks = _chunks(chosen.sets, max(jobs, 1))
    if executor is None and jobs <= 1:
        for i, chunk in enumerate(chunks):
            results.append((i, run_chunk(setup, bars, chunk)))
            if progress:
                progress(len(chunk))
    else:
        pool = executor or ProcessPoolExecutor(max_workers=jobs)
        try:
            futures = {pool.submit(run_chunk, setup, bars, chunk): (i, len(chunk)) for i, chunk in enumerate(chunks)}
            for future in as_completed(futures):
                i, count = futures[future]
                results.append((i, future.result()))
                if progress:
                    progress(count)
        finally:
            if executor is None:
                pool.shutdown(cancel_futures=True)
    ordered = [r for _, chunk in sorted(results, key=lambda x: x[0]) for r in chunk]
    seconds = time.perf_counter() - started
    replayed = len(bars) * len(ordered)
    return Optimization(strategy=setup.name or str(setup.strategy), maximize=maximize, grid_size=chosen.grid_size,
                        valid=chosen.valid, runs=len(ordered), sampled=chosen.sampled, seed=seed, bars=len(bars),
                        seconds=seconds, bars_per_second=replayed / seconds if seconds > 0 else 0.0,
                        results=rank(ordered, maximize))
