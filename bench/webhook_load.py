"""Webhook load benchmark: posts alerts at a fixed rate into a real `traderd run` and reports latencies.

Starts the daemon as a subprocess on a fresh state directory (paper broker, SQLite), sends `--rate` alerts
per second for `--duration` seconds with at most `--concurrency` in flight (open loop: a slow daemon shows
up as latency, not as a lower send rate), then reads the store to compute signal-to-fill latency and to
check that every accepted signal produced exactly one fill. Peak RSS is the daemon's VmHWM.

    python bench/webhook_load.py --rate 200 --duration 60 --concurrency 32 --json bench/results/latest.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.store.repository import Store  # noqa: E402
from daemon.store.tables import FillRow, SignalRow  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    found = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(found.group(1)) / 1024 if found else float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_daemon(state: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}
    env |= {"TRADERD_DAEMON__STATE_DIR": str(state), "TRADERD_WEBHOOK__PORT": str(port),
            "TRADERD_DAEMON__LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run"], env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if "/webhook/tradingview/" in line:
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit("the daemon did not start")


async def send_load(url: str, rate: float, duration: float, concurrency: int) -> dict[str, Any]:
    total = int(rate * duration)
    latencies: list[float] = []
    codes: Counter[int] = Counter()
    accepted: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    symbols = ["AAPL", "MSFT", "NVDA", "AMD", "TSLA", "META", "AMZN", "GOOG"]

    async def post(session: aiohttp.ClientSession, n: int) -> None:
        body = json.dumps({"ticker": symbols[n % len(symbols)], "action": "buy" if n % 2 == 0 else "sell",
                           "quantity": "1", "price": f"{100 + n % 50}.25", "id": f"bench-{n}"})
        async with gate:
            started = time.perf_counter()
            async with session.post(url, data=body, headers={"Content-Type": "text/plain"}) as response:
                payload = await response.json()
            latencies.append(time.perf_counter() - started)
            codes[response.status] += 1
            if response.status == 202:
                accepted.append(payload["signal_id"])

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await post(session, -1)  # warm-up, not counted
        latencies.clear()
        codes.clear()
        accepted.clear()
        tasks = []
        start = time.perf_counter()
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(session, n)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {"sent": total, "elapsed": elapsed, "latencies": latencies, "codes": dict(codes), "accepted": accepted}


def settle(store: Store, accepted: list[str], within: float = 60) -> tuple[list[float], int, int]:
    """Signal-to-fill latencies, plus counts of lost (no fill) and duplicated (more than one fill) signals."""
    wanted = set(accepted)
    deadline = time.monotonic() + within
    while True:
        with Session(store.engine) as session:
            signals = {s.signal_id: s for s in session.exec(select(SignalRow)) if s.signal_id in wanted}
            fills = list(session.exec(select(FillRow)))
        by_coid: dict[str, list[FillRow]] = {}
        for fill in fills:
            by_coid.setdefault(fill.client_order_id, []).append(fill)
        done = [s for s in signals.values() if s.client_order_id in by_coid]
        if len(done) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    latencies = [(min(f.filled_at for f in by_coid[s.client_order_id]) - s.received_at).total_seconds()
                 for s in done]
    duplicated = sum(1 for s in done if len(by_coid[s.client_order_id]) > 1)
    return latencies, len(wanted) - len(done), duplicated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="traderd-bench-") as tmp:
        state = Path(tmp)
        port = free_port()
        daemon = start_daemon(state, port)
        try:
            secret = (state / "webhook_secret").read_text().strip()
            url = f"http://127.0.0.1:{port}/webhook/tradingview/{secret}"
            cpu_before = cpu_seconds(daemon.pid)
            load = asyncio.run(send_load(url, args.rate, args.duration, args.concurrency))
            store = Store(f"sqlite:///{state / 'traderd.db'}")
            store.open()
            to_fill, lost, duplicated = settle(store, load["accepted"])
            store.close()
            cpu_used = cpu_seconds(daemon.pid) - cpu_before
            rss = peak_rss_mb(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
    ack = load["latencies"]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "rate_target": args.rate, "duration_s": args.duration, "concurrency": args.concurrency,
        "sent": load["sent"], "codes": load["codes"], "accepted": len(load["accepted"]),
        "throughput_per_s": round(len(ack) / load["elapsed"], 1),
        "ack_ms": {"p50": round(percentile(ack, 50) * 1000, 2), "p99": round(percentile(ack, 99) * 1000, 2),
                   "max": round(max(ack) * 1000, 2), "mean": round(statistics.fmean(ack) * 1000, 2)},
        "signal_to_fill_ms": {"p50": round(percentile(to_fill, 50) * 1000, 2),
                              "p99": round(percentile(to_fill, 99) * 1000, 2),
                              "max": round(max(to_fill, default=0) * 1000, 2)},
        "lost": lost, "duplicated": duplicated, "peak_rss_mb": round(rss, 1),
        "daemon_cpu_ms_per_signal": round(cpu_used * 1000 / max(1, len(load["accepted"])), 2),
        "daemon_cpu_share_of_one_core": round(cpu_used / load["elapsed"], 2),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if lost == 0 and duplicated == 0 and result["accepted"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
