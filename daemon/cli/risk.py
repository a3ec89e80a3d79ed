"""`traderd risk simulate|pdt`: what-if tools that replay CSV files through the funded-account and PDT rules.

    traderd risk simulate --rules topstep_50k_combine --events events.csv
    traderd risk simulate --rules account.toml --events events.csv     # TOML with a [rules] table
    traderd risk pdt --fills fills.csv [--method traditional|direction] [--asof 2026-03-06] [--equity 20000]

`simulate` reads `time,type,symbol,side,qty,price,equity` rows (type fill|mark|close; a mark carries a price
for `symbol` or the live `equity`; a close carries the settled balance in `equity`, or keeps the current
one) and prints one JSON object per event. A fill that traderd would have refused (it adds contracts while
blocked, locked, past flat-by or over the contract limit) is reported with `applied: false` and skipped.
`pdt` reads `time,symbol,side,qty,price` rows and prints one JSON report. Times without a UTC offset are
exchange time: America/Chicago for `simulate`, America/New_York for `pdt`. Bad input: one line on stderr,
exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tomllib
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from daemon.calendar import CHICAGO, NEW_YORK, is_business_day, next_business_day, trade_date
from daemon.domain import Fill, Side
from daemon.risk import funded, pdt
from daemon.risk.presets import PRESETS


class InputError(Exception):
    """A bad file or argument; reported as one line on stderr with exit code 2."""


def _parse_time(text: str, tz: ZoneInfo, where: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InputError(f"{where}: bad time {text!r} (use ISO 8601, e.g. 2026-03-02T09:31:00-05:00)") from exc
    return ts.replace(tzinfo=tz) if ts.tzinfo is None else ts


def _parse_decimal(text: str | None, where: str, name: str) -> Decimal | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise InputError(f"{where}: bad {name} {text!r}") from exc
    if not value.is_finite():
        raise InputError(f"{where}: bad {name} {text!r}")
    return value


def _parse_side(text: str | None, where: str) -> Side:
    try:
        return Side((text or "").strip().lower())
    except ValueError as exc:
        raise InputError(f"{where}: bad side {text!r} (buy or sell)") from exc


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


def _fill(where: str, n: int, ts: datetime, symbol: str, side: Side, qty: Decimal, price: Decimal) -> Fill:
    if not symbol:
        raise InputError(f"{where}: symbol is required")
    if qty <= 0:
        raise InputError(f"{where}: qty must be positive")
    oid = f"csv-{n}"
    return Fill(
        fill_id=oid,
        broker_order_id=oid,
        client_order_id=oid,
        account="csv",
        symbol=symbol,
        side=side,
        quantity=qty,
        price=price,
        filled_at=ts,
    )


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
        ts = _parse_time(row.get("time") or "", CHICAGO, where)
        kind = (row.get("type") or "").strip().lower()
        symbol = (row.get("symbol") or "").strip()
        price = _parse_decimal(row.get("price"), where, "price")
        equity = _parse_decimal(row.get("equity"), where, "equity")
        if state is None:
            state = funded.new_state(rules, ts)
        breaches: list[funded.Breach] = []
        applied = True
        if kind == "fill":
            side = _parse_side(row.get("side"), where)
            qty = _parse_decimal(row.get("qty"), where, "qty")
            if qty is None or price is None:
                raise InputError(f"{where}: a fill needs qty and price")
            fill = _fill(where, n, ts, symbol, side, qty, price)
            held = state.positions.get(symbol)
            after_symbol = (held.qty if held else Decimal(0)) + qty * side.sign
            contracts_after = state.contracts - (abs(held.qty) if held else 0) + abs(after_symbol)
            breaches = funded.check_order(state, rules, contracts_after, ts)
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
                "applied": applied,
                **funded.snapshot(state, rules, ts),
                "breaches": [_breach_json(b) for b in breaches],
            }
        )
    return results


def pdt_report(
    path: str, method: pdt.CountMethod, asof: date | None, equity: Decimal | None, min_equity: Decimal
) -> dict[str, Any]:
    rows = _read_rows(path, ["time", "symbol", "side", "qty", "price"])
    fills: list[Fill] = []
    for n, (where, row) in enumerate(rows, start=1):
        ts = _parse_time(row.get("time") or "", NEW_YORK, where)
        qty = _parse_decimal(row.get("qty"), where, "qty")
        price = _parse_decimal(row.get("price"), where, "price")
        if qty is None or price is None:
            raise InputError(f"{where}: qty and price are required")
        fills.append(
            _fill(where, n, ts, (row.get("symbol") or "").strip(), _parse_side(row.get("side"), where), qty, price)
        )
    if asof is None:
        if not fills:
            raise InputError(f"{path}: no fills (and no --asof)")
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
    }


def _run_simulate(args: argparse.Namespace) -> int:
    rules = load_rules(args.rules)
    for result in simulate(rules, args.events):
        print(json.dumps(result, default=str))
    return 0


def _run_pdt(args: argparse.Namespace) -> int:
    asof = None
    if args.asof:
        try:
            asof = date.fromisoformat(args.asof)
        except ValueError as exc:
            raise InputError(f"--asof {args.asof!r}: use YYYY-MM-DD") from exc
    equity = _parse_decimal(args.equity, "--equity", "amount")
    min_equity = _parse_decimal(args.min_equity, "--min-equity", "amount") or pdt.DEFAULT_MIN_EQUITY
    report = pdt_report(args.fills, pdt.CountMethod(args.method), asof, equity, min_equity)
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
    sim.set_defaults(func=_guarded(_run_simulate))
    p = sub.add_parser("pdt", help="count day trades (FINRA 4210) from a fills CSV")
    p.add_argument("--fills", required=True, help="CSV: time,symbol,side,qty,price")
    p.add_argument("--method", choices=[m.value for m in pdt.CountMethod], default=pdt.CountMethod.TRADITIONAL.value)
    p.add_argument("--asof", help="business day to evaluate (YYYY-MM-DD); default: the last fill's day")
    p.add_argument("--equity", help="account equity, to decide whether a 4th day trade would be blocked")
    p.add_argument("--min-equity", default=str(pdt.DEFAULT_MIN_EQUITY), help="minimum equity (default 25000)")
    p.set_defaults(func=_guarded(_run_pdt))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="traderd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["risk", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
