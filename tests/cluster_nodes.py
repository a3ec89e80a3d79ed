"""Several real `traderd run` processes on one PostgreSQL database, for the ownership, failover and sharding tests.

`fresh_database()` makes an empty database on the server of TRADERD_TEST_POSTGRES_URL (NOTIFY is per
database, so tests do not hear each other) and drops it afterwards. `Node` is one daemon subprocess with its
own state directory, port and `cluster.name`; `toml()` writes the configuration every node shares.
The Alpaca stand-in every node trades on runs in a process of its own (`tests.cluster_broker`); `Load` posts
signals at a steady rate the way a reverse proxy with two upstreams would. `bench/failover.py` uses them too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from daemon.store.database import normalize_url
from tests.cluster_broker import AlpacaProcess

PG_URL = os.environ.get("TRADERD_TEST_POSTGRES_URL", "")
SECRET = "cluster-secret-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def fresh_database() -> Iterator[str]:
    name = f"traderd_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)  # strings and lists of strings read the same in TOML


def toml(config: dict[str, Any], prefix: str = "") -> str:
    """A nested dict as TOML (tables for dicts, inline values otherwise)."""
    plain = [f"{key} = {_value(v)}" for key, v in config.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix else []) + plain
    for key, v in config.items():
        if isinstance(v, dict):
            lines += ["", toml(v, f"{prefix}.{key}" if prefix else key)]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """One daemon process: `start()`, `kill(sig)`, `health()`, and its log when something goes wrong."""

    def __init__(self, name: str, tmp: Path, config: dict[str, Any]) -> None:
        self.name = name
        self.port = free_port()
        self.dir = tmp / name
        self.dir.mkdir(parents=True, exist_ok=True)
        merged = {**config, "daemon": {"state_dir": str(self.dir / "state"), "log_level": "INFO",
                                       "reconcile_interval_seconds": 3600, "shutdown_grace_seconds": 3,
                                       **config.get("daemon", {})},
                  "webhook": {**config.get("webhook", {}), "host": "127.0.0.1", "port": self.port, "secret": SECRET},
                  "cluster": {**config.get("cluster", {}), "name": name}}
        self.config = self.dir / "traderd.toml"
        self.config.write_text(toml(merged) + "\n")
        self.log = self.dir / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/webhook/tradingview/{SECRET}"

    def start(self) -> Node:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADERD_", "NOTIFY_", "WATCHDOG_"))}
        env["PYTHONUNBUFFERED"] = "1"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=ROOT)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    async def health(self) -> dict[str, Any] | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return dict((await client.get(f"{self.base}/healthz")).json())
        except (httpx.HTTPError, ValueError):
            return None

    async def wait_ready(self, within: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited: {self.tail()}")
            found = await self.health()
            if found is not None and found.get("ready"):
                return found
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready within {within} s: {self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def held(nodes: list[Node]) -> dict[str, list[str]]:
    """Accounts each live node says it executes (its /healthz)."""
    found: dict[str, list[str]] = {}
    for node in nodes:
        if node.alive():
            health = await node.health()
            found[node.name] = list(health["accounts"]) if health else []
    return found


async def until(predicate: Any, within: float, every: float = 0.2) -> Any:
    """Await `predicate()` (sync or async) until truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


def alpaca_account(stand: AlpacaProcess, base_url: str | None = None) -> dict[str, Any]:
    return {"broker": "alpaca", "alpaca": {
        "key_id": stand.key_id, "secret_key": stand.secret_key, "base_url": base_url or stand.base_url,
        "timeout_seconds": 2, "rate_limit_per_minute": 60000, "poll_interval_seconds": 60}}


def body(n: int, account: str = "stocks") -> dict[str, Any]:
    return {"ticker": "AAPL", "action": "buy" if n % 2 == 0 else "sell", "quantity": "1", "price": "100",
            "account": account, "id": f"load-{n}"}


class Load:
    """A reverse proxy's view: signals at a steady rate, round robin over the nodes, the next node on failure.

    The sender keeps to its schedule (`rate` per second from the start): when the event loop was held up it
    sends every signal that has fallen due at once, and `behind` says by how much it was late at worst.
    aiohttp's client, because it costs a fraction of httpx's CPU per request at this rate."""

    def __init__(self, nodes: list[Node], rate: float) -> None:
        self.nodes, self.rate = nodes, rate
        self.accepted: dict[str, str] = {}  # dedup key -> signal id (202, or 200 for a resend of an accepted one)
        self.refused: list[tuple[int, str]] = []
        self.unanswered = 0
        self.sent = 0
        self.started_at = self.stopped_at = 0.0
        self.behind = 0.0  # seconds: the furthest the sender fell behind its schedule
        self.answer_times: list[float] = []  # seconds from the first try to the 2xx, per accepted signal
        self._stop = asyncio.Event()

    async def _one(self, session: aiohttp.ClientSession, n: int) -> None:
        began = time.monotonic()
        for attempt in range(6):
            node = self.nodes[(n + attempt) % len(self.nodes)]
            try:
                async with session.post(node.url, json=body(n)) as response:
                    status, text = response.status, await response.text()
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            if status in (200, 202):
                self.accepted[f"id:load-{n}"] = json.loads(text)["signal_id"]  # the stored dedup key
                self.answer_times.append(time.monotonic() - began)
            else:
                self.refused.append((status, text))
            return
        self.unanswered += 1

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session:
            tasks: set[asyncio.Task[None]] = set()
            self.started_at = start = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                due = int((now - start) * self.rate) + 1  # signals due by now
                if due - 1 > self.sent:
                    self.behind = max(self.behind, now - (start + self.sent / self.rate))
                while self.sent < due:
                    task = asyncio.create_task(self._one(session, self.sent))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    self.sent += 1
                await asyncio.sleep(max(0.0, start + self.sent / self.rate - time.monotonic()))
            self.stopped_at = time.monotonic()
            await asyncio.gather(*tasks)

    def achieved(self) -> float:
        """Signals accepted per second over the time the load ran."""
        return len(self.accepted) / max(self.stopped_at - self.started_at, 1e-9)

    def summary(self) -> str:
        times = sorted(self.answer_times) or [0.0]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return (f"{self.sent} signals posted over {self.stopped_at - self.started_at:.1f} s at {self.rate:g}/s, "
                f"{len(self.accepted)} accepted ({self.achieved():.0f}/s), the sender at most {self.behind:.2f} s "
                f"behind its schedule, answers p50 {times[len(times) // 2] * 1000:.0f} ms / p99 {p99 * 1000:.0f} ms")

    def stop(self) -> None:
        self._stop.set()
