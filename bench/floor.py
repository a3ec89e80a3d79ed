"""traderd against the floor of a durable Python webhook receiver, side by side in one run.

One command, one process tree: the bench starts each receiver as its own subprocess on a fresh state
directory, drives it from this process with fresh connections (`Connection: close`, as TradingView sends
every alert), and prints the traderd/floor ratios:

- floor receivers this file contains (`--serve KIND`): `bare` (aiohttp, JSON parse, no store), `commit`
  (plus one SQLite WAL insert and fsync commit per request, on the event loop) and `group` (the same insert,
  but concurrent requests share one fsync: a writer thread commits whatever is queued, and each 202 waits
  for its batch's commit);
- traderd: a real `traderd run` (paper broker, SQLite, no configuration).

Cases: closed loop at 1 and 16 connections (`--closed-seconds` each); open loop at `--rate` alerts/s for
`--open-seconds` (acknowledgement p99, and for traderd signal-to-fill p99 read from the store); a burst of
`--burst` alerts spread over one second (time from the last alert sent to the last fill recorded). Every
load loop stops by itself and every wait is bounded. Results go to `bench/results/floor-<time>.json`.

    python bench/floor.py                      # the full run (about 4 minutes)
    python bench/floor.py --open-seconds 10    # shorter open loop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webhook_load import cpu_seconds, free_port, peak_rss_mb, percentile, start_daemon  # noqa: E402

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMD", "TSLA", "META", "AMZN", "GOOG"]
FLOORS = ("bare", "commit", "group")
REQUEST_TIMEOUT = 10.0


# ---- the floor receivers (run in their own process with --serve) ----------------------------------------

def _sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS signals (seq INTEGER PRIMARY KEY, dedup_key TEXT UNIQUE, "
                 "body TEXT NOT NULL, received_at TEXT NOT NULL)")
    return conn


class FloorGroupCommit:
    """The smallest group commit: one thread inserts everything queued in one transaction, one fsync."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.queue: queue.SimpleQueue[tuple[tuple[str, str, str], asyncio.Future[None]]] = queue.SimpleQueue()
        self.batches: Counter[int] = Counter()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, row: tuple[str, str, str]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put((row, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.batches[len(batch)] += 1
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                self.conn.executemany("INSERT OR IGNORE INTO signals (dedup_key, body, received_at) "
                                      "VALUES (?, ?, ?)", [row for row, _ in batch])
                self.conn.execute("COMMIT")
                error: BaseException | None = None
            except sqlite3.Error as exc:
                self.conn.execute("ROLLBACK")
                error = exc
            for _, future in batch:
                future.get_loop().call_soon_threadsafe(_resolve, future, error)


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if not future.done():
        future.set_exception(error) if error else future.set_result(None)


def serve_floor(kind: str, port: int, state: Path) -> None:
    from aiohttp import web

    conn = _sqlite(state / "floor.db")
    group = FloorGroupCommit(conn) if kind == "group" else None

    async def handle(request: web.Request) -> web.Response:
        data = json.loads(await request.read())
        if kind != "bare":
            row = (str(data["id"]), json.dumps(data), datetime.now(UTC).isoformat())
            if group is not None:
                await group.submit(row)
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR IGNORE INTO signals (dedup_key, body, received_at) VALUES (?, ?, ?)", row)
                conn.execute("COMMIT")
        return web.json_response({"status": "accepted"}, status=202)

    async def batches(request: web.Request) -> web.Response:
        return web.json_response(dict(group.batches) if group else {})

    app = web.Application()
    app.router.add_post("/webhook", handle)
    app.router.add_get("/batches", batches)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"floor {kind} listening on http://127.0.0.1:{port}/webhook", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(run())


# ---- the load generator ----------------------------------------------------------------------------------

class Target:
    """A receiver under test, in its own process, and the URL path alerts are posted to."""

    def __init__(self, name: str, process: subprocess.Popen[str], port: int, path: str, state: Path) -> None:
        self.name, self.process, self.port, self.path, self.state = name, process, port, path, state

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_target(name: str, state: Path) -> Target:
    port = free_port()
    if name == "traderd":
        process = start_daemon(state, port)
        secret = (state / "webhook_secret").read_text().strip()
        return Target(name, process, port, f"/webhook/tradingview/{secret}", state)
    process = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port),
                                "--state", str(state)], text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "listening" in process.stdout.readline():
            return Target(name, process, port, "/webhook", state)
        if process.poll() is not None:
            break
    process.kill()
    raise SystemExit(f"the {name} floor did not start")


class Alerts:
    """Alert bodies with ids unique within the run; buys and sells alternate so positions stay small."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.n = prefix, 0

    def next(self) -> bytes:
        n, self.n = self.n, self.n + 1
        return json.dumps({"ticker": SYMBOLS[n % len(SYMBOLS)], "action": "buy" if n % 2 == 0 else "sell",
                           "quantity": "1", "price": f"{100 + n % 50}.25", "id": f"{self.prefix}-{n}"}).encode()


async def post(port: int, path: str, body: bytes) -> tuple[int, float, bytes]:
    """One alert on a fresh connection: (status, seconds from connect to the end of the answer, body)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    started = time.perf_counter()
    async with asyncio.timeout(REQUEST_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head + body)
            answer = await reader.read(-1)  # the server closes after its answer
        finally:
            writer.close()
    elapsed = time.perf_counter() - started
    status = int(answer[9:12]) if answer[:5] == b"HTTP/" else 0
    return status, elapsed, answer.partition(b"\r\n\r\n")[2]


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.codes: Counter[int] = Counter()
        self.accepted: list[str] = []
        self.started_at = time.time()  # wall clock, to compare with the store's timestamps
        self.last_sent_at = 0.0

    async def send(self, target: Target, body: bytes) -> None:
        self.last_sent_at = time.time()
        try:
            status, elapsed, answer = await post(target.port, target.path, body)
        except (OSError, TimeoutError):
            self.codes[0] += 1
            return
        self.latencies.append(elapsed)
        self.codes[status] += 1
        if status == 202 and target.name == "traderd":
            self.accepted.append(json.loads(answer)["signal_id"])


async def closed_loop(target: Target, alerts: Alerts, connections: int, seconds: float) -> tuple[Tally, float]:
    """`connections` senders, each posting its next alert as soon as the last is answered, for `seconds`."""
    tally = Tally()
    tally.started_at = time.time()
    started = time.perf_counter()
    stop_at = started + seconds

    async def sender() -> None:
        while time.perf_counter() < stop_at:
            await tally.send(target, alerts.next())

    await asyncio.gather(*(sender() for _ in range(connections)))
    return tally, time.perf_counter() - started


async def open_loop(target: Target, alerts: Alerts, rate: float, seconds: float) -> tuple[Tally, float]:
    """Alerts sent on schedule whatever the answers: a slow receiver shows up as latency, not a lower rate."""
    tally = Tally()
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for n in range(total):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(tally.send(target, alerts.next())))
    await asyncio.wait_for(asyncio.gather(*tasks), REQUEST_TIMEOUT + 5)
    return tally, time.perf_counter() - started


# ---- reading traderd's store -------------------------------------------------------------------------------

def fills_of(state: Path, accepted: list[str], within: float) -> dict[str, Any]:
    """Signal-to-fill latencies from the store's own timestamps, waiting (bounded) until every accepted signal
    has its fill; also counts lost (no fill) and doubled (more than one fill) signals."""
    wanted = set(accepted)
    deadline = time.monotonic() + within
    conn = sqlite3.connect(f"file:{state / 'traderd.db'}?mode=ro", uri=True)
    try:
        while True:  # joined here, by client order id: one pass over each table
            found = [r for r in conn.execute("SELECT signal_id, received_at, client_order_id, status FROM signals")
                     if r[0] in wanted]
            signals = {r[0]: r[:3] for r in found}
            statuses = Counter(r[3] for r in found)
            fills: dict[str, list[str]] = {}
            for coid, filled_at in conn.execute("SELECT client_order_id, filled_at FROM fills"):
                fills.setdefault(coid, []).append(filled_at)
            rows = [(sid, received, min(fills[coid]), max(fills[coid]), len(fills[coid]))
                    for sid, received, coid in signals.values() if coid in fills]
            if sum(statuses.get(s, 0) for s in ("pending", "submitting")) == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        conn.close()
    done = rows
    to_fill = [(_when(r[2]) - _when(r[1])).total_seconds() for r in done]
    last_fill = max((_when(r[3]).timestamp() for r in done), default=float("nan"))
    # Expired (not executed within the alert's max lag) and rejected signals end without a fill, not lost.
    ended = statuses.get("expired", 0) + statuses.get("rejected", 0)
    return {"to_fill": to_fill, "lost": len(wanted) - len(done) - ended, "doubled": sum(1 for r in done if r[4] > 1),
            "statuses": dict(statuses), "last_fill_at": last_fill}


def _when(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---- the run -----------------------------------------------------------------------------------------------

def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def summary(tally: Tally, elapsed: float) -> dict[str, Any]:
    lat = tally.latencies
    return {"answered": len(lat), "codes": {str(k): v for k, v in sorted(tally.codes.items())},
            "per_s": round(len(lat) / elapsed, 1),
            "ack_ms": {"p50": ms(percentile(lat, 50)), "p99": ms(percentile(lat, 99)),
                       "max": ms(max(lat, default=float("nan")))},
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def with_target(name: str, case: Callable[[Target], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"traderd-floor-{name}-") as tmp:
        target = start_target(name, Path(tmp))
        try:
            cpu_before = cpu_seconds(target.process.pid)
            result = asyncio.run(case(target))
            result["receiver_cpu_s"] = round(cpu_seconds(target.process.pid) - cpu_before, 2)
            result["receiver_peak_rss_mb"] = round(peak_rss_mb(target.process.pid), 1)
        finally:
            target.stop()
    return result


def closed_case(connections: int, seconds: float) -> Callable[[Target], Awaitable[dict[str, Any]]]:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts(f"closed{connections}")
        await post(target.port, target.path, alerts.next())  # warm-up, not counted
        tally, elapsed = await closed_loop(target, alerts, connections, seconds)
        result = summary(tally, elapsed)
        if target.name == "traderd":
            result.update(_fill_summary(target, tally, within=60))
            # Accepted is not filled: the rate at which signals reached the broker, start to last fill.
            filled = len(tally.accepted) - result["lost"]
            result["filled_per_s"] = round(filled / max(elapsed, result["last_fill_at"] - tally.started_at), 1)
        return result
    return case


def open_case(rate: float, seconds: float) -> Callable[[Target], Awaitable[dict[str, Any]]]:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts("open")
        await post(target.port, target.path, alerts.next())
        tally, elapsed = await open_loop(target, alerts, rate, seconds)
        result = {"rate": rate, "seconds": seconds, **summary(tally, elapsed)}
        if target.name == "traderd":
            result.update(_fill_summary(target, tally, within=240))
        return result
    return case


def burst_case(count: int) -> Callable[[Target], Awaitable[dict[str, Any]]]:
    async def case(target: Target) -> dict[str, Any]:
        alerts = Alerts("burst")
        await post(target.port, target.path, alerts.next())
        tally, elapsed = await open_loop(target, alerts, count, 1.0)
        result = {"alerts": count, **summary(tally, elapsed)}
        if target.name == "traderd":
            result.update(_fill_summary(target, tally, within=30))
            result["last_fill_after_last_alert_ms"] = ms(result.pop("last_fill_at") - tally.last_sent_at)
        return result
    return case


def _fill_summary(target: Target, tally: Tally, within: float) -> dict[str, Any]:
    found = fills_of(target.state, tally.accepted, within)
    return {"signal_to_fill_ms": {"p50": ms(percentile(found["to_fill"], 50)),
                                  "p99": ms(percentile(found["to_fill"], 99)),
                                  "max": ms(max(found["to_fill"], default=float("nan")))},
            "lost": found["lost"], "doubled": found["doubled"], "statuses": found["statuses"],
            "last_fill_at": found["last_fill_at"]}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=FLOORS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--closed-seconds", type=float, default=10.0, help="seconds of each closed-loop case")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop alerts per second")
    parser.add_argument("--open-seconds", type=float, default=60.0, help="seconds of the open-loop case")
    parser.add_argument("--burst", type=int, default=200, help="alerts in the one-second burst")
    parser.add_argument("--only", choices=("traderd", *FLOORS), action="append", help="run only these receivers")
    parser.add_argument("--json", type=Path, help="where to write the results (default bench/results/floor-*.json)")
    args = parser.parse_args()
    if args.serve:
        serve_floor(args.serve, args.port, args.state)
        return 0

    names = args.only or ["bare", "commit", "group", "traderd"]
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "load_avg_at_start": os.getloadavg()[0],
        "cases": {},
    }
    cases = results["cases"]
    for connections in (1, 16):
        for name in names:
            key = f"closed_{connections}conn/{name}"
            cases[key] = with_target(name, closed_case(connections, args.closed_seconds))
            print(key, json.dumps(cases[key]), flush=True)
    for name in [n for n in names if n in ("group", "traderd")]:
        key = f"open_{args.rate:g}per_s/{name}"
        cases[key] = with_target(name, open_case(args.rate, args.open_seconds))
        print(key, json.dumps(cases[key]), flush=True)
    if "traderd" in names:
        key = f"burst_{args.burst}/traderd"
        cases[key] = with_target("traderd", burst_case(args.burst))
        cases[key]["note"] = "single-account alerts (one order each)"
        print(key, json.dumps(cases[key]), flush=True)
    results["ratios"] = ratios(cases, names, args)
    results["targets"] = targets(cases, args)
    print(json.dumps({"ratios": results["ratios"], "targets": results["targets"]}, indent=2))
    out = args.json or ROOT / "bench" / "results" / f"floor-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    bad = [c for c in cases.values() if c.get("lost") or c.get("doubled")]
    return 1 if bad else 0


def ratios(cases: dict[str, Any], names: list[str], args: argparse.Namespace) -> dict[str, Any]:
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
    key = f"open_{args.rate:g}per_s"
    if "group" in names:
        ours, theirs = cases[f"{key}/traderd"], cases[f"{key}/group"]
        out[f"{key}/traderd_over_group"] = {"ack_p50": ratio(ours["ack_ms"]["p50"], theirs["ack_ms"]["p50"]),
                                            "ack_p99": ratio(ours["ack_ms"]["p99"], theirs["ack_ms"]["p99"])}
    return out


def targets(cases: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The issue's targets against what this run measured (None: the case was not run)."""
    def get(key: str, *path: str) -> Any:
        value: Any = cases.get(key)
        for part in path:
            value = None if value is None else value.get(part)
        return value

    open_key = f"open_{args.rate:g}per_s/traderd"
    measured = {
        "filled_per_s_16conn (>= 1000)": get("closed_16conn/traderd", "filled_per_s"),
        "ack_p50_ms_1conn (< 1.5)": get("closed_1conn/traderd", "ack_ms", "p50"),
        f"open_{args.rate:g}_ack_p99_ms (<= 2)": get(open_key, "ack_ms", "p99"),
        f"open_{args.rate:g}_signal_to_fill_p99_ms (<= 5)": get(open_key, "signal_to_fill_ms", "p99"),
        f"burst_{args.burst}_last_fill_after_last_alert_ms (<= 1000)":
            get(f"burst_{args.burst}/traderd", "last_fill_after_last_alert_ms"),
    }
    return measured


if __name__ == "__main__":
    sys.exit(main())
