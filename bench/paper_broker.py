"""Paper broker persistence benchmark: per-order `place_order` time as the account's history grows.

For each level it starts a fresh `PaperBroker` on a temporary state file, places `level` market orders
through the public API (alternating buy/sell so the position stays small, each one persisted as usual),
then times `--samples` more market orders one by one. It also times a restart (`connect` of a new broker
on the same files) at that history. Everything runs on one asyncio loop, as in the daemon.

    python bench/paper_broker.py                      # levels 0, 2000, 20000
    python bench/paper_broker.py --levels 0 500 2000 --samples 300

Last results (2-vCPU dev box, ext4, Python 3.11; ms per market order with persistence, 500 timed orders):

    prior orders | before: whole state rewritten per mutation | after: one journal line per mutation
               0 | mean  2.2, p99   4.4                       | mean 0.057, p99 0.116
           2,000 | mean 19.2, p99  29.5                       | mean 0.054, p99 0.108
          20,000 | mean 82.8, p99 128.2 (100 timed orders)    | mean 0.051, p99 0.096
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from brokers.paper.broker import PaperBroker  # noqa: E402
from config.settings import PaperSettings  # noqa: E402
from daemon.domain import OrderRequest, Side  # noqa: E402

ACCOUNT = "bench"


class Clock:
    """A clock that moves one millisecond per call, so fills have distinct times."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def request(n: int) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"bench-{n}",
        account=ACCOUNT,
        symbol="AAPL" if n % 3 else "ES1!",
        side=Side.BUY if n % 2 == 0 else Side.SELL,
        quantity=Decimal(1),
        reference_price=Decimal(100) + Decimal(n % 7),
    )


def make(state_file: Path) -> PaperBroker:
    settings = PaperSettings(multipliers={"ES": Decimal(50)}, commission_per_unit=Decimal("0.5"))
    return PaperBroker(ACCOUNT, settings, state_file, Clock())


async def run_level(level: int, samples: int, directory: Path) -> dict[str, float]:
    state_file = directory / f"level-{level}" / "paper.json"
    broker = make(state_file)
    await broker.connect()
    started = time.perf_counter()
    for n in range(level):
        await broker.place_order(request(n))
    seed_s = time.perf_counter() - started
    times: list[float] = []
    for n in range(level, level + samples):
        t0 = time.perf_counter()
        order = await broker.place_order(request(n))
        times.append((time.perf_counter() - t0) * 1000)
        assert order.status == "filled", order
    await broker.close()
    t0 = time.perf_counter()
    restarted = make(state_file)
    await restarted.connect()
    assert await restarted.find_order(f"bench-{level}") is not None  # the first timed order
    restart_ms = (time.perf_counter() - t0) * 1000
    disk_kb = sum(path.stat().st_size for path in state_file.parent.iterdir()) / 1024
    return {
        "level": level,
        "mean": statistics.fmean(times),
        "p50": percentile(times, 50),
        "p99": percentile(times, 99),
        "max": max(times),
        "seed_s": seed_s,
        "restart_ms": restart_ms,
        "disk_kb": disk_kb,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 2_000, 20_000], help="prior orders")
    parser.add_argument("--samples", type=int, default=500, help="timed orders per level")
    parser.add_argument("--dir", type=Path, default=None, help="where to put state files (default: a temp dir)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.samples} timed orders per level")
    header = (
        f"{'prior orders':>12} | {'mean ms':>8} | {'p50 ms':>7} | {'p99 ms':>7} | {'max ms':>7} | "
        f"{'seed s':>7} | {'restart ms':>10} | {'disk KB':>8}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="paper-bench-", dir=args.dir) as tmp:
        for level in args.levels:
            r = await run_level(level, args.samples, Path(tmp))
            print(
                f"{r['level']:>12,} | {r['mean']:>8.3f} | {r['p50']:>7.3f} | {r['p99']:>7.3f} | {r['max']:>7.3f} | "
                f"{r['seed_s']:>7.1f} | {r['restart_ms']:>10.1f} | {r['disk_kb']:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
