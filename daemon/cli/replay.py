"""`traderd replay`: run a strategy over a CSV of bars through the paper broker and risk rules, and report.

    traderd replay --strategy sma_cross --data strategies/data/sample_daily.csv --param fast=10 --param slow=30
    traderd replay --strategy opening_range --data es_1m.csv --timeframe 5m --calendar cme \\
        --account-rules topstep_50k_combine --param quantity=2 --json --plot equity.png

Risk limits, commission and slippage come from `--config FILE --account NAME` (that account's `risk`,
`paper` and `funded` sections) and can be overridden with `--commission`, `--commission-minimum`,
`--slippage-bps`, `--cash`; `--account-rules PRESET` applies a funded-account preset; the summary names the
costs used and where they came from. `--plot FILE` draws price, equity and drawdown (`daemon.strategy.plot`),
`--html FILE` writes the same as an interactive offline page (`daemon.strategy.page`), `--trades` lists the
trades in the text (`daemon.cli.replay_text`). A progress bar counts bars (or runs) on stderr when it is a
terminal. Exit codes: 0 done, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.brokers import PaperSettings
from config.settings import ConfigFileError, RiskLimits, load_settings
from daemon.calendar import futures_session_date
from daemon.cli import research
from daemon.cli.replay_text import render
from daemon.money import NotANumber, parse_decimal
from daemon.risk.funded import AccountRules
from daemon.risk.presets import PRESETS
from daemon.strategy.bars import TIMEFRAMES, BarDataError
from daemon.strategy.costs import CostError, Costs, fee_table_for, load_fee_table, unverified_note
from daemon.strategy.montecarlo import MonteCarloError, MonteCarloReport, simulate
from daemon.strategy.optimize import METRICS, OptimizeError, ReplaySetup, candidates, optimize, parse_range
from daemon.strategy.page import PageError, write_page
from daemon.strategy.plot import PlotError, plot
from daemon.strategy.replay import ReplayError, Trade, load_bars
from daemon.strategy.walkforward import folds, parse_spec, walk_forward
from strategies.base import Bar, Strategy, StrategyLoadError, load_strategy, parse_params

COST_FLAGS = ("--commission", "--commission-minimum", "--slippage-bps", "--slippage-ticks", "--tick-size", "--fees")


class InputError(Exception):
    """Bad command line or input file."""


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--param {pair!r}: use NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _money(text: str | None, flag: str) -> Decimal | None:
    if text is None:
        return None
    try:
        value = parse_decimal(text, flag)
    except NotANumber as exc:
        raise InputError(f"{flag} {text!r} is not a number") from exc
    if value is not None and value < 0:
        raise InputError(f"{flag} {text!r} must be a non-negative number")
    return value


def _account(args: argparse.Namespace) -> tuple[PaperSettings, RiskLimits, AccountRules | None, str]:
    """The paper settings, risk limits and funded rules to replay with, and where the costs came from."""
    paper, limits, rules, source = PaperSettings(), RiskLimits(), None, ""
    if args.config or args.account:
        try:
            settings = load_settings(args.config)
        except (ConfigFileError, ValidationError) as exc:
            raise InputError(f"configuration: {exc}") from exc
        name = args.account or next(iter(settings.accounts))
        if name not in settings.accounts:
            raise InputError(f"--account {name!r}: not in the configuration ({', '.join(settings.accounts)})")
        acc = settings.accounts[name]
        configured, limits = acc.section("paper"), acc.risk
        paper = configured if isinstance(configured, PaperSettings) else paper
        where = f"--config {args.config}" if args.config else "the configuration"
        written = isinstance(configured, PaperSettings) and configured.model_fields_set  # not just defaults
        source = (f"from [accounts.{name}.paper] of {where}" if written
                  else f"{where} has no [accounts.{name}.paper] section: none")
        if acc.funded is not None:
            rules = AccountRules.model_validate({"preset": acc.funded.preset, **acc.funded.overrides})
    if args.account_rules:
        if args.account_rules not in PRESETS:
            raise InputError(f"--account-rules {args.account_rules!r}: known presets: {', '.join(sorted(PRESETS))}")
        rules = AccountRules.model_validate({"preset": args.account_rules})
    updates: dict[str, Any] = {}
    for field, flag in (("commission_per_unit", "commission"), ("commission_minimum", "commission_minimum"),
                        ("slippage_bps", "slippage_bps"), ("starting_cash", "cash")):
        value = _money(getattr(args, flag), "--" + flag.replace("_", "-"))
        if value is not None:
            updates[field] = value
    if args.multiplier is not None:
        updates["multipliers"] = {**paper.multipliers, args.symbol or Path(args.data).stem.upper():
                                  _money(args.multiplier, "--multiplier")}
    try:
        paper = PaperSettings.model_validate({**paper.model_dump(), **updates})
    except ValidationError as exc:
        raise InputError(str(exc.errors()[0]["msg"])) from exc
    return paper, limits, rules, source


def _costs(args: argparse.Namespace, paper: PaperSettings, rules: AccountRules | None) -> Costs:
    table = args.fees or fee_table_for(rules.preset if rules else None)
    ticks, tick = _money(args.slippage_ticks, "--slippage-ticks"), _money(args.tick_size, "--tick-size")
    try:
        fees = load_fee_table(table) if table and table != "none" else {}
        if (note := unverified_note(table)) is not None:
            print(f"traderd replay: {note}", file=sys.stderr)
        return Costs.of_paper(paper).model_copy(update={"slippage_ticks": ticks or Decimal(0),
                                                        "tick_size": tick or None, "fees": fees})
    except CostError as exc:
        raise InputError(str(exc)) from exc


def _sources(args: argparse.Namespace, configured: str, rules: AccountRules | None) -> str:
    """Where the replay's costs came from: the configuration, the command line, a funded preset's fee table."""
    flags = [flag for flag in COST_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
    parts = [configured, " ".join(flags)]
    if not args.fees and rules and fee_table_for(rules.preset):
        parts.append(f"fees: the {fee_table_for(rules.preset)} table of {rules.preset}")
    return "; ".join(p for p in parts if p) or "defaults: nothing configured or given"


def _progress(total: int, unit: str = "run", desc: str = "replays") -> Any:
    """A progress bar on stderr when it is a terminal (nothing otherwise), counting replays or bars."""
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, disable=not sys.stderr.isatty(), unit=unit, desc=desc,
                leave=False)


def _monte_carlo(args: argparse.Namespace, trades: Sequence[Trade], rules: AccountRules | None,
                 seed: int) -> MonteCarloReport:
    mc = simulate([t.net_pnl for t in trades], [futures_session_date(t.exit_time) for t in trades],
                  args.monte_carlo, seed=seed, method=args.mc_method, rules=rules)
    if args.mc_plot:
        research.histogram(mc, Path(args.mc_plot))
    return mc


def _research(args: argparse.Namespace, cls: type[Strategy], setup: ReplaySetup, bars: list[Bar],
              seed: int) -> tuple[str, dict[str, Any]]:
    """--optimize (and --walk-forward): text and JSON of the search, and Monte Carlo of its trades."""
    ranges = [parse_range(spec) for spec in args.optimize]
    chosen = candidates(cls, ranges, args.constraint, setup.fixed, args.max_runs, seed)
    if not chosen.sets:
        raise InputError(f"no parameter set of the {chosen.grid_size}-set grid passes the constraints "
                         f"and {cls.__name__}'s own checks")
    if args.walk_forward:
        train, test = parse_spec(args.walk_forward)
        with _progress(len(chosen.sets) * len(folds(bars, train, test))) as bar:
            wf = walk_forward(setup, bars, chosen, args.maximize, train, test, jobs=args.jobs, seed=seed,
                              progress=bar.update)
        text, data = research.walk_forward_table(wf), {"walk_forward": wf.model_dump(mode="json")}
        if not args.equity_curve:
            data["walk_forward"].pop("equity_curve")
        trades, title, curve = wf.out_of_sample_trades, "stitched out-of-sample equity", wf.equity_curve
    else:
        with _progress(len(chosen.sets)) as bar:
            opt = optimize(setup, bars, chosen, args.maximize, jobs=args.jobs, seed=seed, progress=bar.update)
        text, data = research.optimization_table(opt, args.top), {"optimization": opt.model_dump(mode="json")}
        if args.heatmap:
            names = args.heatmap_params.split(",") if args.heatmap_params else [n for n, _ in ranges][:2]
            if len(names) != 2:
                raise InputError("--heatmap needs two searched parameters (--heatmap-params X,Y)")
            research.heatmap(opt, names[0], names[1], Path(args.heatmap))
        best = opt.best
        if best is None:
            return text, data
        report = asyncio.run(setup.run(cls, {k: str(v) for k, v in best.params.items()}, bars))
        trades, title, curve = report.trades, f"best {json.dumps(best.params)}", report.equity_curve
    if args.plot:
        research.equity(curve, f"{setup.name}: {title}", Path(args.plot))
    if args.monte_carlo and trades:
        mc = _monte_carlo(args, trades, setup.rules, seed)
        text += "\n\n" + research.monte_carlo_table(mc)
        data["monte_carlo"] = mc.model_dump(mode="json", exclude={"final_pnls", "max_drawdowns"})
    return text, data


def run(args: argparse.Namespace) -> int:
    try:
        cls = load_strategy(args.strategy)
        fixed = parse_pairs(args.param)
        params = parse_params(cls, fixed)
        paper, limits, rules, costs_source = _account(args)
        symbol = (args.symbol or Path(args.data).stem).upper()
        bars = load_bars(args.data, symbol, args.timeframe, args.calendar)
        name = args.strategy if "/" not in args.strategy else cls.__name__
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        setup = ReplaySetup(strategy=args.strategy, name=name, timeframe=args.timeframe, calendar=args.calendar,
                            paper=paper, limits=limits, rules=rules, costs=_costs(args, paper, rules), fixed=fixed)
        costs_source = _sources(args, costs_source, rules)
        if args.monte_carlo is not None and args.monte_carlo <= 0:
            raise InputError("--monte-carlo needs a positive number of runs")
        if args.jobs < 1:
            raise InputError("--jobs must be at least 1")
        if args.heatmap and (args.walk_forward or not args.optimize):
            raise InputError("--heatmap draws a search: use it with --optimize and without --walk-forward")
        if args.html and args.optimize:
            raise InputError("--html draws one replay: use it without --optimize")
        if args.walk_forward and not args.optimize:
            raise InputError("--walk-forward needs --optimize NAME=RANGE ... (the sets tried in each window)")
        if args.optimize:
            text, data = _research(args, cls, setup, bars, seed)
            print(research.dump(data) if args.json else text)
            return 0
        with _progress(len(bars), unit="bar", desc="replay") as bar:
            report = asyncio.run(setup.run(cls, params.model_dump(mode="json"), bars, progress=bar.update))
            bar.refresh()
        if args.plot:
            plot(report, bars, Path(args.plot), args.calendar)
        if args.html:
            write_page(report, bars, Path(args.html), args.calendar,
                       render(report, bars, args.calendar, costs_source=costs_source, hint=False))
        mc = _monte_carlo(args, report.trades, rules, seed) if args.monte_carlo and report.trades else None
    except (InputError, StrategyLoadError, BarDataError, ReplayError, OptimizeError, MonteCarloError,
            research.PlotError, PlotError, PageError) as exc:
        print(f"traderd replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        data = report.model_dump(mode="json", exclude={"equity_curve"} if not args.equity_curve else set())
        if mc is not None:
            data["monte_carlo"] = mc.model_dump(mode="json", exclude={"final_pnls", "max_drawdowns"})
        print(json.dumps(data, indent=2))
    else:
        text = render(report, bars, args.calendar, trades=args.trades, costs_source=costs_source)
        print(text + ("\n\n" + research.monte_carlo_table(mc) if mc else ""))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `replay`; the subparser sets `func(args) -> exit code`."""
    p = subparsers.add_parser("replay", help="backtest a strategy on a CSV of bars through the paper broker")
    p.add_argument("--strategy", required=True, help="strategy name (strategies/NAME.py) or a .py file")
    p.add_argument("--data", required=True, help="CSV of bars: time,open,high,low,close[,volume]")
    p.add_argument("--symbol", help="ticker of the bars (default: the file name)")
    p.add_argument("--timeframe", default="1d", choices=list(TIMEFRAMES), help="the strategy's bar size")
    p.add_argument("--calendar", default="nyse", choices=["nyse", "cme", "24x7"])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="strategy parameter")
    p.add_argument("--account-rules", metavar="PRESET", help="funded-account preset, e.g. topstep_50k_combine")
    if not any(a.dest == "config" for a in p._actions):
        p.add_argument("--config", "-c", metavar="PATH", help="TOML configuration to take an account's rules from")
    p.add_argument("--account", help="account in the configuration whose risk/paper/funded settings apply")
    p.add_argument("--commission", help="commission per share/contract (overrides the account's)")
    p.add_argument("--commission-minimum", help="minimum commission per fill")
    p.add_argument("--slippage-bps", help="slippage against the trader, basis points per fill")
    p.add_argument("--cash", help="starting cash")
    p.add_argument("--multiplier", help="point value of the symbol (futures)")
    p.add_argument("--slippage-ticks", help="slippage against the trader in ticks per fill (on top of bps)")
    p.add_argument("--tick-size", help="price increment of the symbol (default: known futures roots, else 0.01)")
    p.add_argument("--fees", metavar="TABLE", help="per-contract fee table: a shipped name (topstep, "
                   "cme_exchange), a TOML/JSON file, or none (default: the funded preset's firm table)")
    g = p.add_argument_group("research")
    g.add_argument("--optimize", nargs="+", metavar="NAME=RANGE", help="search NAME=START:STOP:STEP or NAME=A,B")
    g.add_argument("--maximize", default="sharpe", choices=list(METRICS), help="what the search ranks by")
    g.add_argument("--constraint", action="append", default=[], metavar="EXPR", help='e.g. "fast < slow"')
    g.add_argument("--max-runs", type=int, default=2000, help="above this many sets, run a random sample")
    g.add_argument("--seed", type=int, help="seed of the random sample and Monte Carlo (default: random, printed)")
    g.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    g.add_argument("--top", type=int, default=20, help="rows of the ranked table")
    g.add_argument("--heatmap", metavar="FILE", help="PNG of the metric over two searched parameters")
    g.add_argument("--heatmap-params", metavar="X,Y", help="the two parameters (default: the first two)")
    g.add_argument("--walk-forward", nargs=2, metavar=("train=LEN", "test=LEN"), help="e.g. train=120d test=30d")
    g.add_argument("--monte-carlo", type=int, metavar="RUNS", help="resample the trades this many times")
    g.add_argument("--mc-method", default="bootstrap", choices=["bootstrap", "shuffle"])
    g.add_argument("--mc-plot", metavar="FILE", help="PNG histograms of final P&L and max drawdown")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--equity-curve", action="store_true", help="include the equity curve in --json")
    p.add_argument("--plot", metavar="FILE", help="write price, equity and drawdown charts (.png or .svg)")
    p.add_argument("--html", metavar="FILE", help="write the chart as one interactive HTML page (works offline)")
    p.add_argument("--trades", action="store_true", help="list every trade in the text report")
    p.set_defaults(func=run)

