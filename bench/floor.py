"""traderd against the floor of a durable Python webhook receiver, side by side in one run.

One command, one process tree: the bench starts each receiver as its own subprocess on a fresh store,
drives it from this process with fresh connections (`Connection: close`, as TradingView sends every alert),
and prints the traderd/floor ratios:

- floor receivers the bench contains (`bench/floor_receivers.py`): `bare` (aiohttp, JSON parse, no store),
  `commit` (plus one SQLite WAL insert and fsync commit per request, on the event loop) and `group` (the
  same insert, but concurrent requests share one fsync); with `--database-url`, `pg-commit` and `pg-group`,
  the same two on PostgreSQL with `synchronous_commit=on`;
- traderd: a real `traderd run` (paper accounts, SQLite, or with `--database-url` PostgreSQL).

Cases (`bench/floor_cases.py`): closed loop at 1 and 16 connections (`--closed-seconds` each); open loop at
`--rate` alerts/s for `--open-seconds` (acknowledgement p99, and for traderd signal-to-fill p99 read from the
store); a burst of `--burst` alerts spread over one second to one account, and the same burst with every
alert to a group of `--group-size` paper accounts (time from the last alert sent to the last fill recorded,
every child filled exactly once). Each receiver of each case gets a fresh store: a new state directory, and
on PostgreSQL a new database created from the `--database-url` server and dropped after. Every load loop
stops by itself and every wait is bounded. Results go to `bench/results/floor-<time>.json`.

    python bench/floor.py                      # the full run (about 7 minutes)
    python bench/floor.py --open-seconds 10    # shorter open loop
    python bench/floor.py --database-url postgresql://postgres@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from floor_cases import Plan, Stores, run_all  # noqa: E402
from floor_receivers import FLOORS, PG_FLOORS  # noqa: E402
from floor_targets import redact  # noqa: E402


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--closed-seconds", type=float, default=10.0, help="seconds of each closed-loop case")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop alerts per second")
    parser.add_argument("--open-seconds", type=float, default=60.0, help="seconds of the open-loop case")
    parser.add_argument("--burst", type=int, default=200, help="alerts in the one-second bursts")
    parser.add_argument("--group-size", type=int, default=5,
                        help="paper accounts in the fan-out burst's group (0: no fan-out burst)")
    parser.add_argument("--database-url", help="run traderd (and the pg-* floors) on this PostgreSQL server; "
                        "each receiver gets a database of its own there, dropped after")


def plan_of(args: argparse.Namespace) -> Plan:
    return Plan(closed_seconds=args.closed_seconds, rate=args.rate, open_seconds=args.open_seconds,
                burst=args.burst, group_size=args.group_size)


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
            "started": datetime.now(UTC).isoformat(timespec="seconds"), "load_avg_at_start": os.getloadavg()[0],
            "store": "postgresql" if args.database_url else "sqlite",
            "database": redact(args.database_url) if args.database_url else None}


def write_results(results: dict[str, Any], out: Path | None, stem: str) -> Path:
    path = out or ROOT / "bench" / "results" / f"{stem}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_options(parser)
    parser.add_argument("--only", choices=("traderd", *FLOORS, *PG_FLOORS), action="append",
                        help="run only these receivers")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/floor-*.json)")
    args = parser.parse_args()
    default = ["bare", *PG_FLOORS] if args.database_url else ["bare", "commit", "group"]
    names = args.only or [*default, "traderd"]
    if any(n in PG_FLOORS for n in names) and not args.database_url:
        parser.error("the pg-* floors need --database-url")
    plan = plan_of(args)
    results = header(args)
    cases = results["cases"] = run_all(names, plan, Stores(admin_url=args.database_url))
    results["ratios"] = ratios(cases, names, plan)
    results["targets"] = targets(cases, plan)
    print(json.dumps({"ratios": results["ratios"], "targets": results["targets"]}, indent=2))
    write_results(results, args.json, "floor-pg" if args.database_url else "floor")
    bad = [c for c in cases.values() if c.get("lost") or c.get("doubled")]
    return 1 if bad else 0


def ratios(cases: dict[str, Any], names: list[str], plan: Plan) -> dict[str, Any]:
    """traderd / floor: throughput (higher is better) and acknowledgement latency (lower is better)."""
    out: dict[str, Any] = {}
    if "traderd" not in names:
        return out
    for connections in (1, 16):
        ours = cases[f"closed_{connections}conn/traderd"]
        for floor in (n for n in names if n != "traderd"):
            theirs = cases[f"closed_{connections}conn/{floor}"]
            out[f"closed_{connections}conn/traderd_over_{floor}"] = {
                "throughput": ratio(ours["per_s"], theirs["per_s"]),
                "ack_p50": ratio(ours["ack_ms"]["p50"], theirs["ack_ms"]["p50"]),
                "ack_p99": ratio(ours["ack_ms"]["p99"], theirs["ack_ms"]["p99"])}
    for floor in (n for n in names if n in ("group", "pg-group")):
        ours, theirs = cases[f"{plan.open_key}/traderd"], cases[f"{plan.open_key}/{floor}"]
        out[f"{plan.open_key}/traderd_over_{floor}"] = {
            "ack_p50": ratio(ours["ack_ms"]["p50"], theirs["ack_ms"]["p50"]),
            "ack_p99": ratio(ours["ack_ms"]["p99"], theirs["ack_ms"]["p99"])}
    return out


def targets(cases: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The issue's targets against what this run measured (None: the case was not run)."""
    def get(key: str, *path: str) -> Any:
        value: Any = cases.get(key)
        for part in path:
            value = None if value is None else value.get(part)
        return value

    open_key = f"{plan.open_key}/traderd"
    fanout = f"{plan.fanout_key}/traderd"
    return {
        "filled_per_s_16conn (>= 1000)": get("closed_16conn/traderd", "filled_per_s"),
        "ack_p50_ms_1conn (< 1.5)": get("closed_1conn/traderd", "ack_ms", "p50"),
        f"open_{plan.rate:g}_ack_p99_ms (<= 2)": get(open_key, "ack_ms", "p99"),
        f"open_{plan.rate:g}_signal_to_fill_p99_ms (<= 5)": get(open_key, "signal_to_fill_ms", "p99"),
        f"burst_{plan.burst}_last_fill_after_last_alert_ms (<= 1000)":
            get(f"burst_{plan.burst}/traderd", "last_fill_after_last_alert_ms"),
        f"burst_{plan.burst}x{plan.group_size}_last_fill_after_last_alert_ms (<= 1000)":
            get(fanout, "last_fill_after_last_alert_ms"),
        f"burst_{plan.burst}x{plan.group_size}_children_filled_once (= {plan.burst * plan.group_size})":
            get(fanout, "children_filled_once"),
    }


if __name__ == "__main__":
    sys.exit(main())
