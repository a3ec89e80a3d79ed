"""Failover benchmark: kill -9 the owner of an account under steady webhook load, time the standby's takeover.

Two `traderd run` processes share a fresh PostgreSQL database and one Alpaca stand-in (every order POST is
timed at the stand-in). Signals are posted round robin over both daemons at `--rate` per second (default 5),
the way a reverse proxy with two upstreams spreads them. Each round kills the current owner with SIGKILL, measures the
time from the kill to the first order the new owner places, then restarts the killed daemon as the standby.
At the end every accepted signal must have been placed exactly once.

    TRADERD_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:55432/postgres \\
        python bench/failover.py --kills 20 --json bench/results/failover-20-kills.json

`--lease` sets cluster.lease_seconds (default 10, the shipped default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.domain import client_order_id  # noqa: E402
from daemon.store.database import normalize_url  # noqa: E402
from tests.cluster_broker import AlpacaProcess  # noqa: E402
from tests.cluster_nodes import Load, Node, alpaca_account, fresh_database  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank: with 20 samples p99 is the largest one."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def owner(nodes: list[Node], within: float) -> Node:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for node in nodes:
            health = await node.health() if node.alive() else None
            if health and health.get("accounts") == ["stocks"]:
                return node
        await asyncio.sleep(0.1)
    raise SystemExit("nobody owns the account: " + " | ".join(n.tail(5) for n in nodes))


def stored(url: str) -> dict[str, str]:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return {key: status for key, status in conn.execute(text("SELECT dedup_key, status FROM signals"))}
    finally:
        engine.dispose()


async def bench(kills: int, lease: float, rate: float, url: str) -> dict[str, Any]:
    # The tests validate every exchange; here the daemons are timed, so the stand-in skips that work.
    alpaca = await AlpacaProcess(checked=False).start()
    tmp = Path(tempfile.mkdtemp(prefix="traderd-failover-"))
    urls = [alpaca.base_url, await alpaca.listen_again()]  # a port per daemon: whose order is whose
    # Signals queued behind an outage must not age past their max_lag on a busy machine: every accepted one
    # is then executed, and "lost" or "doubled" would be the daemons' fault alone.
    nodes = [Node(name, tmp, {"store": {"url": url}, "cluster": {"lease_seconds": lease},
                              "daemon": {"log_level": "WARNING"}, "webhook": {"default_max_lag_seconds": 3600},
                              "accounts": {"stocks": alpaca_account(alpaca, at)}})
             .start() for name, at in (("host-a", urls[0]), ("host-b", urls[1]))]
    port_of = {node.name: at for node, at in zip(nodes, urls, strict=True)}
    takeovers: list[float] = []
    try:
        await asyncio.gather(*(node.wait_ready() for node in nodes))
        load = Load(nodes, rate)
        running = asyncio.create_task(load.run())
        for round_ in range(kills):
            current = await owner(nodes, lease * 3)
            await asyncio.sleep(2)  # steady state under load
            current.kill(signal.SIGKILL)
            killed = time.monotonic()
            current.process.wait()  # type: ignore[union-attr]
            standby = next(node for node in nodes if node is not current)
            await owner([standby], lease * 3)
            while (first := await alpaca.first_post_after(killed, port_of[standby.name])) is None:
                if time.monotonic() - killed > lease * 3 + 30:
                    raise SystemExit(f"no order after kill {round_ + 1}: {standby.tail(10)}")
                await asyncio.sleep(0.05)  # the time is the stand-in's, not the poll's
            takeover = first - killed
            takeovers.append(takeover)
            print(f"kill {round_ + 1:>2}/{kills}: first order by {standby.name} {takeover:.2f} s after the kill",
                  flush=True)
            current.start()  # back as the standby
            await current.wait_ready()
        load.stop()
        await running
        deadline = time.monotonic() + 60
        while any(status in ("pending", "submitting") for status in stored(url).values()):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        statuses = stored(url)
        outcomes: dict[str, int] = {}
        for key in load.accepted:
            outcomes[statuses.get(key, "missing")] = outcomes.get(statuses.get(key, "missing"), 0) + 1
        lost = [key for key in load.accepted if statuses.get(key) in (None, "pending", "submitting")]
        posted = [coid for _, coid, _ in await alpaca.posts()]
        at_broker = await alpaca.client_order_ids()
        missing = [key for key in load.accepted if client_order_id("stocks", key) not in at_broker]
        return {
            "machine": f"{platform.machine()} {platform.python_version()}",
            "kills": kills, "lease_seconds": lease, "rate_per_s": rate,
            "load": load.summary(),
            "signals_accepted": len(load.accepted), "refused": len(load.refused), "unanswered": load.unanswered,
            "outcomes": outcomes, "lost": len(lost), "without_order": len(missing),
            "doubled": len(posted) - len(set(posted)),
            "takeover_s": {"p50": round(percentile(takeovers, 50), 2), "p99": round(percentile(takeovers, 99), 2),
                           "min": round(min(takeovers), 2), "max": round(max(takeovers), 2),
                           "all": [round(t, 2) for t in takeovers]},
        }
    finally:
        for node in nodes:
            node.stop()
        await alpaca.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5.0,
                        help="signals per second over both daemons (the stand-in, which validates every exchange "
                             "against Alpaca's contract, executes a few dozen per second at most)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    with fresh_database() as url:
        result = asyncio.run(bench(args.kills, args.lease, args.rate, url))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
