"""Cost as history grows: traderd's floor cases on an empty store and on one seeded with N signals, and a soak.

Compare (the default): seeds a store once with `--history` signals and their orders, fills and positions
(`bench/history_seed.py`, default 1,000,000; a year of trading over the paper and group accounts), then runs
each traderd case of `bench/floor.py` (closed loop at 1 and 16 connections, open loop, both bursts) twice
back to back, on an empty store and on a copy of the seeded one, and prints per-signal CPU (the daemon's CPU
seconds over the case / its signals), the p99s, the daemon's time to ready (migrations, start-up
reconciliation) and the p99 of the control API's reads (`/api/pnl`, `/api/risk`, ...) side by side with the
ratio seeded/empty (the target: within 10 %). On PostgreSQL (`--database-url`) the seeded store is a
template database each case copies.

Soak (`--soak K`): one daemon takes K signals (closed loop, `--connections` at a time) as fast as it
takes them; after every `--every` signals the bench waits (bounded) until nothing is left to execute and
samples the daemon's RSS, so the curve shows memory held, not a backlog in flight. The curve and its slope
(MB per 100k signals over the second half) are written as they grow. A million signals at ~350/s takes about
50 minutes; any K works.

    python bench/history.py --history 1000000                 # compare (about 15 minutes)
    python bench/history.py --history 20000 --closed-seconds 2 --open-seconds 5   # a quick check
    python bench/history.py --soak 1000000                    # the soak (about 50 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from floor import add_plan_options, header, plan_of, ratio, write_results  # noqa: E402
from floor_cases import Plan, Stores, latency, planned, reads_case, run_case  # noqa: E402
from floor_load import Alerts, Endpoint, counted_loop, post  # noqa: E402
from floor_store import wait_drained  # noqa: E402
from floor_targets import Target, create_database, database_name, drop_database, group_accounts, started  # noqa: E402
from history_seed import seed  # noqa: E402
from webhook_load import cpu_seconds  # noqa: E402

# What is compared, empty against seeded: (label, path into a case's result)
MEASURES = [("cpu_ms_per_signal", ("cpu_ms_per_signal",)), ("ack_p99_ms", ("ack_ms", "p99")),
            ("signal_to_fill_p99_ms", ("signal_to_fill_ms", "p99")),
            ("last_fill_after_last_alert_ms", ("last_fill_after_last_alert_ms",)),
            ("ready_s", ("receiver_ready_s",))]
# The control API's reads, timed on the same two stores: what grows with history shows here.
READS = ["/api/pnl", "/api/positions", "/api/risk", "/api/status", "/api/fills", "/api/signals",
         "/api/orders?open=true"]
TOLERANCE = 0.10


def seeded_store(stack: ExitStack, args: argparse.Namespace, accounts: list[str]) -> tuple[Stores, dict[str, Any]]:
    """Seed the history once, as a template each case starts from a copy of; removed on the way out."""
    if args.database_url:
        name = database_name("history_template")
        url = create_database(args.database_url, name)
        stack.callback(drop_database, args.database_url, name)
        stats = seed(url, args.history, accounts)
        return Stores(admin_url=args.database_url, pg_template=name), stats
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="traderd-history-"))) / "seeded.db"
    stats = seed(f"sqlite:///{path}", args.history, accounts)
    return Stores(sqlite_template=path), stats


def _get(case: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = case
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def compare(empty: dict[str, Any], seeded: dict[str, Any]) -> dict[str, Any]:
    """Per case and measure: empty, seeded, seeded/empty and whether that is within the tolerance."""
    out: dict[str, Any] = {}
    for key in empty:
        row: dict[str, Any] = {}
        reads = [(f"{p} p99_ms", ("reads_ms", p, "p99")) for p in empty[key].get("reads_ms", {})]
        for label, path in [*MEASURES, *reads]:
            a, b = _get(empty[key], path), _get(seeded.get(key, {}), path)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                r = ratio(b, a)
                row[label] = {"empty": a, "seeded": b, "ratio": r, "within_10pct": r <= 1 + TOLERANCE}
        out[key] = row
    return out


def print_table(comparison: dict[str, Any]) -> None:
    print(f"{'case':<28} {'measure':<34} {'empty':>10} {'seeded':>10} {'ratio':>7}")
    for key, row in comparison.items():
        for label, v in row.items():
            mark = "" if v["within_10pct"] else "  > +10 %"
            print(f"{key:<28} {label:<34} {v['empty']:>10} {v['seeded']:>10} {v['ratio']:>7}{mark}")


def run_compare(args: argparse.Namespace, plan: Plan) -> int:
    results = header(args) | {"history_signals": args.history}
    accounts = ["paper", *group_accounts(plan.group_size or 5)]
    with ExitStack() as stack:
        stores, results["seeded"] = seeded_store(stack, args, accounts)
        print("seeded", json.dumps(results["seeded"]), flush=True)
        empty_stores = Stores(admin_url=args.database_url)
        empty: dict[str, Any] = {}
        full: dict[str, Any] = {}
        results["empty"], results["history"] = empty, full
        cases = [*planned(["traderd"], plan), ("api_reads/traderd", "traderd", reads_case(READS, args.reads), 0)]
        for n, (key, name, case, group_size) in enumerate(cases):
            # Back to back, so both halves of a pair see the same machine.
            empty[key] = run_case(name, case, empty_stores, tag=f"e{n}", group_size=group_size)
            print(f"empty/{key}", json.dumps(empty[key]), flush=True)
            full[key] = run_case(name, case, stores, tag=f"h{n}", group_size=group_size)
            print(f"history/{key}", json.dumps(full[key]), flush=True)
    results["comparison"] = compare(empty, full)
    print_table(results["comparison"])
    write_results(results, args.json, "history-pg" if args.database_url else "history")
    bad = [c for c in [*empty.values(), *full.values()] if c.get("lost") or c.get("doubled")]
    return 1 if bad else 0


# ---- soak -----------------------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    """The process's resident set now (VmRSS), in MB."""
    try:
        found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return float("nan")
    return int(found.group(1)) / 1024 if found else float("nan")


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares MB per 100k signals over the second half of the curve (after warm-up)."""
    tail = points[len(points) // 2:]
    if len(tail) < 2:
        return float("nan")
    mx = sum(x for x, _ in tail) / len(tail)
    my = sum(y for _, y in tail) / len(tail)
    var = sum((x - mx) ** 2 for x, _ in tail)
    return round(sum((x - mx) * (y - my) for x, y in tail) / var * 100_000, 3) if var else float("nan")


def save(out: Path, results: dict[str, Any]) -> None:
    out.write_text(json.dumps(results, indent=2) + "\n")


async def soak(target: Target, total: int, every: int, connections: int, drain_within: float,
               results: dict[str, Any], out: Path) -> None:
    endpoint = Endpoint(target.port, target.path, answers_ids=True)
    alerts = Alerts("soak")
    await post(target.port, target.path, alerts.next())
    pid, curve = target.process.pid, results["curve"]
    started_at, cpu0 = time.perf_counter(), cpu_seconds(target.process.pid)
    curve.append({"signals": 0, "rss_mb": round(rss_mb(pid), 1), "elapsed_s": 0.0, "cpu_s": 0.0})
    sent = 0
    while sent < total:
        step = min(every, total - sent)
        tally = await counted_loop(endpoint, alerts, connections, step)
        sent += step
        drained = wait_drained(target.store_url or "", drain_within)
        point = {"signals": sent, "accepted": len(tally.accepted), "rss_mb": round(rss_mb(pid), 1),
                 "elapsed_s": round(time.perf_counter() - started_at, 1),
                 "cpu_s": round(cpu_seconds(pid) - cpu0, 1), "ack_ms": latency(tally.latencies),
                 "codes": {str(k): v for k, v in sorted(tally.codes.items())}, "drained": drained}
        curve.append(point)
        results["rss_slope_mb_per_100k"] = slope([(p["signals"], p["rss_mb"]) for p in curve[1:]])
        results["final_rss_mb"], results["peak_rss_mb"] = point["rss_mb"], max(p["rss_mb"] for p in curve)
        save(out, results)  # as it grows: an interrupted soak still leaves its curve
        print(json.dumps(point), flush=True)
        if not tally.accepted:
            results["stopped"] = "a step had no signal accepted"
            return
    results["signals_per_s"] = round(sent / (time.perf_counter() - started_at), 1)
    results["cpu_ms_per_signal"] = round(curve[-1]["cpu_s"] * 1000 / max(1, sent), 3)


def run_soak(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    every = args.every or max(1, min(10_000, args.soak // 10))
    results = header(args) | {"soak_signals": args.soak, "sample_every": every, "connections": args.connections,
                              "history_signals": args.history or 0, "curve": []}
    out = args.json or ROOT / "bench" / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        stores = Stores(admin_url=args.database_url)
        if args.history:
            stores, results["seeded"] = seeded_store(stack, args, ["paper", *group_accounts(5)])
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="traderd-soak-")))
        target = stack.enter_context(started("traderd", state, admin_url=stores.admin_url, tag="soak",
                                             sqlite_template=stores.sqlite_template,
                                             pg_template=stores.pg_template))
        asyncio.run(soak(target, args.soak, every, args.connections, args.drain_seconds, results, out))
    save(out, results)
    print(json.dumps({k: v for k, v in results.items() if k != "curve"}, indent=2))
    print(f"written to {out}")
    return 0 if "stopped" not in results else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_plan_options(parser)
    parser.add_argument("--history", type=int, help="signals of history to seed (compare: default 1,000,000; "
                        "soak: default none)")
    parser.add_argument("--soak", type=int, metavar="K", help="soak instead: drive K signals through one daemon")
    parser.add_argument("--every", type=int, help="soak: sample RSS after this many signals (default 10,000, "
                        "or K/10 when smaller)")
    parser.add_argument("--connections", type=int, default=8, help="soak: concurrent senders (closed loop)")
    parser.add_argument("--drain-seconds", type=float, default=300.0,
                        help="soak: longest wait for the backlog to drain before a sample")
    parser.add_argument("--reads", type=int, default=50, help="compare: times each control API read is timed")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/...)")
    args = parser.parse_args()
    if args.soak:
        return run_soak(args)
    if args.history is None:
        args.history = 1_000_000
    return run_compare(args, plan_of(args))


if __name__ == "__main__":
    sys.exit(main())
