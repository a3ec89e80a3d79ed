"""Fan-out benchmark: one alert to a group of 20 paper accounts, into a real `traderd run`; ack-to-fills latency.

Starts the daemon as a subprocess on a fresh state directory (20 paper accounts in one group, SQLite), posts
`--alerts` alerts one after another (`--gap` seconds apart, so each fan-out is measured on its own), and then
reads the store: for each alert, the time from the webhook's 202 (as the client received it) and from the
daemon's receipt to the moment the last of its children was committed with its fill. Also checks that every
child filled exactly once. The reference, in the same run on a fresh daemon, is the same alerts to a group of
one account: what the fan-out adds over one order. The machine may be shared: the load average is recorded.

    python bench/fanout.py --alerts 100 --json bench/results/fanout-20.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import Session, col, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.webhook_load import cpu_seconds, free_port, percentile  # noqa: E402
from daemon.store.repository import Store  # noqa: E402
from daemon.store.tables import FillRow, SignalRow  # noqa: E402

SECRET = "bench-secret-0123456789"


def config(state: Path, port: int, accounts: int) -> str:
    names = [f"paper{i:02d}" for i in range(1, accounts + 1)]
    text = f'[daemon]\nstate_dir = "{state}"\nreconcile_interval_seconds = 3600\nlog_level = "WARNING"\n\n'
    text += f'[webhook]\nhost = "127.0.0.1"\nport = {port}\nsecret = "{SECRET}"\n\n'
    text += "".join(f'[accounts.{name}.paper]\nstarting_cash = "10000000"\n\n' for name in names)
    return text + "[groups.all20]\naccounts = { " + ", ".join(f"{n} = 1" for n in names) + " }\n"


def start_daemon(path: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}
    process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", str(path)], env=env, cwd=ROOT,
                               text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("traderd did not become ready")


async def send(url: str, alerts: int, gap: float) -> list[tuple[str, datetime]]:
    acked: list[tuple[str, datetime]] = []
    async with aiohttp.ClientSession() as session:
        for n in range(alerts):
            body = {"ticker": "AAPL", "action": "buy" if n % 2 == 0 else "sell", "quantity": "1", "price": "100",
                    "id": f"fan-{n}", "account": "all20"}
            async with session.post(url, json=body) as response:
                answer = await response.json()
                acked.append((answer["signal_id"], datetime.now(UTC)))
                assert response.status == 202, answer
            await asyncio.sleep(gap)
    return acked


def measure(store: Store, acked: list[tuple[str, datetime]], accounts: int) -> dict[str, Any]:
    from_ack, from_receipt, filled, doubled = [], [], 0, 0
    deadline = time.monotonic() + 60
    with Session(store._writer_engine) as session:
        for parent_id, ack in acked:
            while True:
                kids = session.exec(select(SignalRow).where(SignalRow.parent_id == parent_id)).all()
                if len(kids) == accounts and all(k.status != "pending" for k in kids):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{parent_id}: children not finished")
                time.sleep(0.05)
                session.expire_all()
            parent = session.exec(select(SignalRow).where(SignalRow.signal_id == parent_id)).one()
            last = max(k.updated_at for k in kids)
            from_ack.append((last - ack).total_seconds() * 1000)
            from_receipt.append((last - parent.received_at).total_seconds() * 1000)
            coids = [k.client_order_id for k in kids]
            fills = session.exec(select(FillRow).where(col(FillRow.client_order_id).in_(coids))).all()
            filled += len({f.client_order_id for f in fills})
            doubled += len(fills) - len({f.client_order_id for f in fills})
    summary = {name: {"p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2),
                      "max": round(max(v), 2)} for name, v in (("ack_to_last_fill_ms", from_ack),
                                                               ("receipt_to_last_fill_ms", from_receipt))}
    slowest = sorted(from_ack, reverse=True)[:5]
    return summary | {"slowest_five_ms": [round(v, 1) for v in slowest], "children_filled": filled,
                      "children_expected": len(acked) * accounts, "doubled": doubled}


def run(accounts: int, alerts: int, gap: float) -> dict[str, Any]:
    """One fresh daemon with a group of `accounts`, `alerts` alerts to it; its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        state, port = Path(tmp) / "state", free_port()
        path = Path(tmp) / "traderd.toml"
        path.write_text(config(state, port, accounts))
        process = start_daemon(path, port)
        try:
            # The daemon's CPU while idle (its periodic jobs) is measured first and taken out of the figure.
            idle_from, idle_cpu = time.monotonic(), cpu_seconds(process.pid)
            time.sleep(2)
            idle_rate = (cpu_seconds(process.pid) - idle_cpu) / (time.monotonic() - idle_from)
            started, cpu = time.monotonic(), cpu_seconds(process.pid)
            acked = asyncio.run(send(f"http://127.0.0.1:{port}/webhook/tradingview/{SECRET}", alerts, gap))
            store = Store(f"sqlite:///{state / 'traderd.db'}")
            store.open()
            result = measure(store, acked, accounts)
            store.close()
            busy = cpu_seconds(process.pid) - cpu - idle_rate * (time.monotonic() - started)
            result["cpu_ms_per_alert"] = round(busy * 1000 / alerts, 2)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    return result | {"accounts": accounts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between alerts")
    parser.add_argument("--no-reference", action="store_true", help="skip the one-account reference run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = run(args.accounts, args.alerts, args.gap)
    if not args.no_reference:
        reference = run(1, args.alerts, args.gap)
        result["reference_one_account"] = reference
        # From the receipt: one account's fill is often committed before its 202 reaches the client.
        result["receipt_to_last_fill_p50_vs_one_account"] = round(
            result["receipt_to_last_fill_ms"]["p50"] / max(reference["receipt_to_last_fill_ms"]["p50"], 0.01), 2)
    result |= {"alerts": args.alerts, "gap_seconds": args.gap,
               "load_average_before": [round(x, 2) for x in load_before],
               "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
               "python": platform.python_version(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    runs = [result, *([result["reference_one_account"]] if "reference_one_account" in result else [])]
    ok = all(r["children_filled"] == r["children_expected"] and r["doubled"] == 0 for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
