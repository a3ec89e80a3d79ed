"""`traderd replay`: run a strategy over a CSV of bars through the paper broker and risk rules, and report.

    traderd replay --strategy sma_cross --data strategies/data/sample_daily.csv --param fast=10 --param slow=30
    traderd replay --strategy opening_range --data es_1m.csv --timeframe 5m --calendar cme \\
        --account-rules topstep_50k_combine --param quantity=2 --json --plot equity.png

Risk limits, commission and slippage come from `--config FILE --account NAME` (that account's `risk`,
`paper` and `funded` sections) and can be overridden with `--commission`, `--commission-minimum`,
`--slippage-bps`, `--cash`; `--account-rules PRESET` applies a funded-account preset. `--plot FILE` draws
price, equity and drawdown (`daemon.strategy.plot`). Exit codes: 0 done, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.settings import ConfigFileError, PaperSettings, RiskLimits, load_settings
from daemon.risk.funded import AccountRules
from daemon.risk.presets import PRESETS
from daemon.strategy.bars import TIMEFRAMES, BarDataError
from daemon.strategy.plot import PlotError, plot
from daemon.strategy.replay import ReplayError, ReplayReport, load_bars, replay
from strategies.base import StrategyLoadError, load_strategy, parse_params


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
        value = Decimal(text)
    except InvalidOperation as exc:
        raise InputError(f"{flag} {text!r} is not a number") from exc
    if not value.is_finite() or value < 0:
        raise InputError(f"{flag} {text!r} must be a non-negative number")
    return value


def _account(args: argparse.Namespace) -> tuple[PaperSettings, RiskLimits, AccountRules | None]:
    paper, limits, rules = PaperSettings(), RiskLimits(), None
    if args.config or args.account:
        try:
            settings = load_settings(args.config)
        except (ConfigFileError, ValidationError) as exc:
            raise InputError(f"configuration: {exc}") from exc
        name = args.account or next(iter(settings.accounts))
        if name not in settings.accounts:
            raise InputError(f"--account {name!r}: not in the configuration ({', '.join(settings.accounts)})")
        acc = settings.accounts[name]
        paper, limits = acc.paper, acc.risk
        if acc.funded is not None:
            rules = AccountRules(preset=acc.funded.preset, **acc.funded.overrides)
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
    return paper, limits, rules


def render_text(report: ReplayReport) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.1f}%"

    pf = "-" if report.profit_factor is None else f"{report.profit_factor:.2f}"
    lines = [
        f"{report.strategy} on {report.symbol} {report.timeframe}: {report.bars} bars "
        f"{report.start:%Y-%m-%d} .. {report.end:%Y-%m-%d}" if report.start and report.end else report.strategy,
        f"params: {json.dumps(report.params)}",
        f"net P&L {report.net_pnl:.2f} (equity {report.starting_equity:.2f} -> {report.final_equity:.2f}), "
        f"commission {report.commission:.2f}",
        f"trades {len(report.trades)}, win rate {pct(report.win_rate)}, profit factor {pf}, "
        f"max drawdown {report.max_drawdown:.2f} ({report.max_drawdown_pct:.2f}%), "
        f"Sharpe {'-' if report.sharpe is None else f'{report.sharpe:.2f}'}",
    ]
    if report.open_position:
        lines.append(f"open position at the end: {report.open_position.normalize():f}")
    if report.trades:
        lines.append("")
        lines.append(f"{'#':>3} {'side':<4} {'qty':>8} {'entry time':<25} {'entry':>10} {'exit time':<25} "
                     f"{'exit':>10} {'net P&L':>10}")
        for i, t in enumerate(report.trades, 1):
            lines.append(f"{i:>3} {t.side.value:<4} {t.quantity.normalize():>8f} {t.entry_time.isoformat():<25} "
                         f"{t.entry_price:>10.2f} {t.exit_time.isoformat():<25} {t.exit_price:>10.2f} "
                         f"{t.net_pnl:>10.2f}")
    lines.append("")
    lines.append(f"rule violations: {len(report.violations)}")
    for v in report.violations:
        lines.append(f"  {v.at.isoformat()} {v.rule}: {v.detail}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        cls = load_strategy(args.strategy)
        params = parse_params(cls, parse_pairs(args.param))
        paper, limits, rules = _account(args)
        symbol = (args.symbol or Path(args.data).stem).upper()
        bars = load_bars(args.data, symbol, args.timeframe, args.calendar)
        report = asyncio.run(replay(cls, params, bars, name=args.strategy if "/" not in args.strategy else cls.__name__,
                                    timeframe=args.timeframe, calendar=args.calendar, paper=paper, limits=limits,
                                    rules=rules))
        if args.plot:
            plot(report, bars, Path(args.plot), args.calendar)
    except (InputError, StrategyLoadError, BarDataError, ReplayError, PlotError) as exc:
        print(f"traderd replay: {exc}", file=sys.stderr)
        return 2
    if args.json:
        data = report.model_dump(mode="json", exclude={"equity_curve"} if not args.equity_curve else set())
        print(json.dumps(data, indent=2))
    else:
        print(render_text(report))
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
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--equity-curve", action="store_true", help="include the equity curve in --json")
    p.add_argument("--plot", metavar="FILE", help="write price, equity and drawdown charts (.png or .svg)")
    p.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="traderd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["replay", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
