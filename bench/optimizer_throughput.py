"""Optimizer throughput: replayed bars per wall-clock second over all worker processes.

It writes a seeded random walk of daily bars (`--bars`, seed `--seed`), then runs the same SMA crossover
grid (`--grid`, fast x slow with fast < slow) through `daemon.strategy.optimize.optimize` with each worker
count of `--jobs`, every set a full replay (engine, paper broker, risk rules). Bars per second is
`sets x bars / elapsed`; the JSON lands in bench/results/optimizer-throughput.json.

    python bench/optimizer_throughput.py                    # 1 and 2 processes, 500 bars, 48 sets
    python bench/optimizer_throughput.py --jobs 1 2 4 --bars 1000

Last results (2-core x86_64, Python 3.11.7, 2026-12-01, other work sharing the cores at load 1.5-3):
1 process 2,656-3,433 bars/s, 2 processes 3,535 bars/s (49 sets x 500 bars in 6.9 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon import calendar as cal
from daemon.strategy.optimize import ReplaySetup, candidates, optimize, parse_range
from daemon.strategy.replay import load_bars
from strategies.base import load_strategy

RESULTS = Path(__file__).resolve().parent / "results" / "optimizer-throughput.json"


def write_walk(path: Path, sessions: int, seed: int) -> None:
    rng, price, day, rows = random.Random(seed), 100.0, date(2020, 1, 2), []
    while len(rows) < sessions:
        if cal.is_business_day(day):
            o = price * (1 + rng.gauss(0, 0.004))
            c = o * (1 + rng.gauss(0, 0.012))
            rows.append(f"{day},{o:.2f},{max(o, c) * 1.004:.2f},{min(o, c) * 0.996:.2f},{c:.2f},1000")
            price = c
        day += timedelta(days=1)
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--grid", nargs=2, default=["fast=5:40:5", "slow=20:110:15"], metavar="RANGE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "WALK.csv"
        write_walk(data, args.bars, args.seed)
        bars = load_bars(data, "WALK", "1d", "nyse")
    cls = load_strategy("sma_cross")
    chosen = candidates(cls, [parse_range(r) for r in args.grid], [], {"quantity": "10"}, 10_000, None)
    setup = ReplaySetup(strategy="sma_cross", fixed={"quantity": "10"})
    rows = []
    for jobs in args.jobs:
        result = optimize(setup, bars, chosen, "sharpe", jobs=jobs)
        rows.append({"jobs": jobs, "sets": result.runs, "bars": result.bars, "seconds": round(result.seconds, 2),
                     "bars_per_second": round(result.bars_per_second)})
        print(f"{jobs} process(es): {result.runs} sets x {result.bars} bars in {result.seconds:.1f} s = "
              f"{result.bars_per_second:,.0f} bars/s", flush=True)
    report = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "grid": args.grid, "runs": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
