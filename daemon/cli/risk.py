"""`traderd risk simulate|pdt`: what-if tools that replay files through the funded-account and PDT rules.

    traderd risk simulate --rules topstep_50k_combine --events events.csv [--json]
    traderd risk simulate --rules account.toml --events events.csv     # TOML with a [rules] table
    traderd risk pdt --fills fills.csv [--format auto|csv|alpaca|thinkorswim] [--method traditional|direction]
                     [--asof 2026-03-06] [--equity 40000 [--maintenance 6000] [--dt-call]]

`simulate` reads `time,type,symbol,side,qty,price,equity` rows (type fill|mark|close; a mark carries a price
for `symbol` or the live `equity`; a close carries the settled balance in `equity`, or keeps the current
one) and prints one readable line per event (time, equity, floor, daily loss left, what happened) and a
final verdict; `--json` prints one JSON object per event instead. A fill that traderd would have refused
(it adds contracts while blocked, locked, past flat-by or over the contract limit) is reported as refused
(`applied: false`) and skipped. `pdt` reads fills (see `daemon.risk.fill_imports` for the formats) and
prints one JSON report, with day-trading buying power when `--equity` and `--maintenance` are given. Times
without a UTC offset are exchange time: America/Chicago for `simulate`, America/New_York for `pdt`. Bad
input: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tomllib
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.calendar import CHICAGO, is_business_day, next_business_day, trade_date
from daemon.domain import Fill
from daemon.risk import funded, pdt
from daemon.risk.fill_imports import FORMATS, BadInput, make_fill, parse_decimal, parse_side, parse_time, read_fills
from daemon.risk.presets import PRESETS
from daemon.risk.simulate_text import event_line, verdict

InputError = BadInput  # one line on stderr, exit code 2


def _read_rows(path: str, required: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(required)}")
            return [(f"{path} line {reader.line_num}", row) for row in reader]
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc


def load_rules(spec: str) -> funded.AccountRules:
    """A preset name, or a TOML file whose [rules] table holds `preset = "..."` and/or every field."""
    try:
        if spec in PRESETS:
            return funded.AccountRules.model_validate({"preset": spec})
        path = Path(spec)
        if not path.exists():
            raise InputError(f"--rules {spec!r}: neither a preset ({', '.join(sorted(PRESETS))}) nor a file")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise InputError(f"{spec}: not a readable TOML file ({exc})") from exc
        table = data.get("rules")
        if not isinstance(table, dict):
            raise InputError(f"{spec}: no [rules] table")
        return funded.AccountRules.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "rules"
        raise InputError(f"{spec}: {loc}: {first['msg']}") from exc


def _breach_json(b: funded.Breach) -> dict[str, Any]:
    return {"rule": b.rule, "action": b.action, "detail": b.detail, "numbers": b.numbers}


def simulate(rules: funded.AccountRules, path: str) -> list[dict[str, Any]]:
    """Replay the events file; one result object per event."""
    rows = _read_rows(path, ["time", "type", "symbol", "side", "qty", "price", "equity"])
    if not rows:
        raise InputError(f"{path}: no events")
    results: list[dict[str, Any]] = []
    state: funded.FundedState | None = None
    for n, (where, row) in enumerate(rows, start=1):
        ts = parse_time(row.get("time") or "", CHICAGO, where)
        kind = (row.get("type") or "").strip().lower()
        symbol = (row.get("symbol") or "").strip()
        price = parse_decimal(row.get("price"), where, "price")
        equity = parse_decimal(row.get("equity"), where, "equity")
        if state is None:
            state = funded.new_state(rules, ts)
        breaches: list[funded.Breach] = []
        applied = True
        if kind == "fill":
            side = parse_side(row.get("side"), where)
            qty = parse_decimal(row.get("qty"), where, "qty")
            if qty is None or price is None:
                raise InputError(f"{where}: a fill needs qty and price")
            fill = make_fill(where, f"csv-{n}", f"csv-{n}", ts, symbol, side, qty, price)
            after, micros = funded.contracts_after(rules, state.quantities, symbol, qty * side.sign)
            breaches = funded.check_order(state, rules, after, ts, micros)
            if breaches:
                applied = False
            else:
                state, breaches = funded.on_fill(state, rules, fill)
        elif kind == "mark":
            if equity is None and (price is None or not symbol):
                raise InputError(f"{where}: a mark needs symbol and price, or equity")
            prices = {symbol: price} if price is not None and symbol else None
            state, breaches = funded.on_mark(state, rules, ts, live_equity=equity, prices=prices)
        elif kind == "close":
            state, breaches = funded.on_session_close(state, rules, equity if equity is not None else state.balance, ts)
        else:
            raise InputError(f"{where}: bad type {kind!r} (fill, mark or close)")
        results.append(
            {
                "time": ts.isoformat(),
                "type": kind,
                "event": {"symbol": symbol, "side": (row.get("side") or "").strip().lower(),
                          "qty": (row.get("qty") or "").strip(), "price": None if price is None else str(price),
                          "equity": None if equity is None else str(equity)},
                "applied": applied,
                **funded.snapshot(state, rules, ts),
                "breaches": [_breach_json(b) for b in breaches],
            }
        )
    return results


def pdt_report(
    fills: Sequence[Fill], method: pdt.CountMethod, asof: date | None, equity: Decimal | None, min_equity: Decimal,
    maintenance: Decimal | None = None, call_open: bool = False, source: str = "fills",
) -> dict[str, Any]:
    if asof is None:
        if not fills:
            raise InputError(f"{source}: no fills (and no --asof)")
        asof = max(trade_date(f.filled_at) for f in fills)
    if not is_business_day(asof):
        asof = next_business_day(asof)  # an order placed on a closed day executes on the next business day
    report = pdt.window_report(fills, asof, method)
    # Would one more day trade today be blocked? Count it as one more trade, too, for the 6% test.
    dts, trades = report.day_trades + 1, report.trades + 1
    pattern_next = dts >= pdt.PATTERN_THRESHOLD and Decimal(dts) > pdt.SIX_PERCENT * trades
    rich = equity is not None and equity >= min_equity
    return {
        "asof": asof.isoformat(),
        "method": method.value,
        "days": [
            {"day": d.day.isoformat(), "day_trades": d.day_trades, "trades": d.trades, "by_symbol": d.by_symbol}
            for d in report.days
        ],
        "rolling_day_trades": report.day_trades,
        "rolling_trades": report.trades,
        "six_percent_test": {
            "ratio_pct": str((report.ratio * 100).quantize(Decimal("0.01"))),
            "day_trades_at_most_6pct": report.trades > 0
            and Decimal(report.day_trades) <= pdt.SIX_PERCENT * report.trades,
        },
        "pattern_day_trader": report.is_pattern,
        "day_trades_left": max(0, pdt.PATTERN_THRESHOLD - 1 - report.day_trades),
        "equity": None if equity is None else str(equity),
        "min_equity": str(min_equity),
        "next_day_trade_blocked": pattern_next and not rich,
        "note": None if equity is not None else "no --equity given: assumed below the minimum",
        "day_trading_buying_power": _dtbp(equity, maintenance, call_open),
    }


def _dtbp(equity: Decimal | None, maintenance: Decimal | None, call_open: bool) -> dict[str, Any] | None:
    """FINRA 4210(f)(8)(B)(iv): (equity at the previous close - maintenance requirement) x 4, x 2 with a call."""
    if maintenance is None:
        return None
    if equity is None:
        raise InputError("--maintenance needs --equity (the equity at the previous close)")
    bp = pdt.day_trading_buying_power(equity, maintenance, call_open)
    return {
        "prior_close_equity": str(equity),
        "maintenance_margin": str(maintenance),
        "maintenance_excess": str(max(Decimal(0), equity - maintenance)),
        "multiplier": str(pdt.DTBP_MULTIPLIER_WITH_CALL if call_open else pdt.DTBP_MULTIPLIER),
        "day_trading_call": call_open,
        "buying_power": str(bp.quantize(Decimal("0.01"))),
    }


def _run_simulate(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    results = simulate(rules, args.events)
    if args.json:
        for result in results:
            print(json.dumps(result, default=str))
        return 0
    for result in results:
        print(event_line(result))
    print(verdict(results, rules))
    return 0


def _run_pdt(args: argparse.Namespace) -> int:
    asof = None
    if args.asof:
        try:
            asof = date.fromisoformat(args.asof)
        except ValueError as exc:
            raise InputError(f"--asof {args.asof!r}: use YYYY-MM-DD") from exc
    equity = parse_decimal(args.equity, "--equity", "amount")
    min_equity = parse_decimal(args.min_equity, "--min-equity", "amount") or pdt.DEFAULT_MIN_EQUITY
    maintenance = parse_decimal(args.maintenance, "--maintenance", "amount")
    fills = read_fills(args.fills, args.format)
    report = pdt_report(fills, pdt.CountMethod(args.method), asof, equity, min_equity, maintenance, args.dt_call,
                        args.fills)
    print(json.dumps(report, indent=2, default=str))
    return 0


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except InputError as exc:
            print(f"traderd risk: {exc}", file=sys.stderr)
            return 2

    return run


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `risk simulate` and `risk pdt`; each subparser sets `func(args) -> exit code`."""
    risk = subparsers.add_parser("risk", help="what-if tools for the risk rules")
    sub = risk.add_subparsers(dest="risk_command", required=True)
    sim = sub.add_parser("simulate", help="replay events through a funded-account rule set")
    sim.add_argument("--rules", required=True, help="preset name or TOML file with a [rules] table")
    sim.add_argument("--events", required=True, help="CSV: time,type,symbol,side,qty,price,equity")
    sim.add_argument("--json", action="store_true", help="one JSON object per event instead of text")
    sim.set_defaults(func=_guarded(_run_simulate))
    p = sub.add_parser("pdt", help="count day trades (FINRA 4210) from a fills CSV")
    p.add_argument("--fills", required=True, help="CSV time,symbol,side,qty,price[,order_id], Alpaca activities "
                   "JSON or a thinkorswim Account Statement CSV")
    p.add_argument("--format", choices=FORMATS, default="auto", help="how to read --fills (default: detect)")
    p.add_argument("--method", choices=[m.value for m in pdt.CountMethod], default=pdt.CountMethod.TRADITIONAL.value)
    p.add_argument("--asof", help="business day to evaluate (YYYY-MM-DD); default: the last fill's day")
    p.add_argument("--equity", help="account equity, to decide whether a 4th day trade would be blocked")
    p.add_argument("--min-equity", default=str(pdt.DEFAULT_MIN_EQUITY), help="minimum equity (default 25000)")
    p.add_argument("--maintenance", help="maintenance margin requirement at the previous close: report DTBP")
    p.add_argument("--dt-call", action="store_true", help="a day-trading margin call is open (DTBP x 2)")
    p.set_defaults(func=_guarded(_run_pdt))

