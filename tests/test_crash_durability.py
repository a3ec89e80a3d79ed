"""kill -9 of a real daemon at random points under load, 100 times over one store: no accepted signal is lost,
no order doubled. Each start is a fork of a process that has already imported the daemon (the start-up then
takes a fraction of a second instead of the interpreter's seconds), then the same `main(["run"])` as the
`traderd` command; the kill lands while alerts are being accepted, committed, executed and filled."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # 100 daemon starts and kills

ROOT = Path(__file__).resolve().parent.parent
CYCLES = int(os.environ.get("TRADERD_CRASH_CYCLES", "100"))
IN_FLIGHT = 8
WITHIN = 30.0  # every wait on the daemon is bounded by this

# Imports the daemon once, then forks one daemon per line read: {"env": {...}, "log": path} -> prints its pid.
ZYGOTE = """
import json, os, signal, sys
from daemon.cli.main import main
import daemon.app  # noqa: F401  (everything `run` needs, imported before any fork)
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel when they die
for line in sys.stdin:
    order = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        out = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.environ.clear()
        os.environ.update(order["env"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        try:
            code = main(["run"])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemons:
    """Starts daemons on one state directory as forks of the zygote, and kills them."""

    def __init__(self, state: Path, port: int) -> None:
        self.state, self.port = state, port
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}
        self.env = env | {"TRADERD_DAEMON__STATE_DIR": str(state), "TRADERD_WEBHOOK__PORT": str(port),
                          "TRADERD_DAEMON__LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
        self.zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=ROOT, env=self.env, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def start(self) -> int:
        assert self.zygote.stdin is not None and self.zygote.stdout is not None
        self.zygote.stdin.write(json.dumps({"env": self.env, "log": str(self.state / "daemon.log")}) + "\n")
        self.zygote.stdin.flush()
        pid = int(self.zygote.stdout.readline())
        deadline = time.monotonic() + WITHIN
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return pid
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"the daemon did not become ready: {self.log_tail()}")

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + WITHIN
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, f"daemon {pid} survived kill -9"
            time.sleep(0.005)

    def stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + WITHIN
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, "the daemon did not stop on SIGTERM"
            time.sleep(0.02)

    def close(self) -> None:
        if self.zygote.stdin is not None:
            self.zygote.stdin.close()
        try:
            self.zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.zygote.kill()
            self.zygote.wait(timeout=10)

    def log_tail(self) -> str:
        path = self.state / "daemon.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


async def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """One alert on a fresh connection; (0, b"") when the daemon died under it."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(head + body)
                answer = await reader.read(-1)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return 0, b""
    if answer[:5] != b"HTTP/":
        return 0, b""
    return int(answer[9:12]), answer.partition(b"\r\n\r\n")[2]


async def load_until_killed(daemons: Daemons, path: str, pid: int, cycle: int, kill_after: float,
                            resend: list[str], accepted: dict[str, str], unanswered: set[str]) -> None:
    """Alerts from IN_FLIGHT senders (first the ones left unanswered by the last kill), kill -9 after
    `kill_after` seconds, then let every sender see its connection die."""
    todo = list(resend) + [f"c{cycle}-{n}" for n in range(10_000)]
    killed = False

    async def sender() -> None:
        while todo and not killed:
            alert_id = todo.pop(0)
            body = json.dumps({"ticker": "AAPL", "action": "buy", "quantity": "1", "price": "100",
                               "id": alert_id}).encode()
            status, answer = await post(daemons.port, path, body)
            if status == 202:
                accepted[alert_id] = json.loads(answer)["signal_id"]
                unanswered.discard(alert_id)
            elif status == 200:  # a resend of one that was committed before the kill
                unanswered.discard(alert_id)
            else:
                assert status in (0, 503), (status, answer)
                unanswered.add(alert_id)

    senders = [asyncio.create_task(sender()) for _ in range(IN_FLIGHT)]
    await asyncio.sleep(kill_after)
    killed = True
    await asyncio.to_thread(daemons.kill, pid)
    await asyncio.wait_for(asyncio.gather(*senders), WITHIN)


def test_kill_9_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("TRADERD_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    daemons = Daemons(tmp_path, free_port())
    accepted: dict[str, str] = {}  # alert id -> signal id, for every 202
    unanswered: set[str] = set()  # sent, no answer seen: may or may not have been committed
    try:
        pid = daemons.start()
        path = f"/webhook/tradingview/{(tmp_path / 'webhook_secret').read_text().strip()}"
        for cycle in range(CYCLES):
            if cycle:
                pid = daemons.start()
            resend = sorted(unanswered)[:IN_FLIGHT]
            asyncio.run(load_until_killed(daemons, path, pid, cycle, rng.uniform(0.0, 0.4), resend, accepted,
                                          unanswered))
        pid = daemons.start()  # the last start resumes whatever the last kill left unfinished
        db = sqlite3.connect(f"file:{tmp_path / 'traderd.db'}?mode=ro", uri=True)
        deadline = time.monotonic() + 60
        while db.execute("SELECT COUNT(*) FROM signals WHERE status IN ('pending', 'submitting')").fetchone()[0]:
            assert time.monotonic() < deadline, "signals left unfinished after the last restart"
            time.sleep(0.1)
        held = httpx.get(f"http://127.0.0.1:{daemons.port}/api/positions", timeout=10).json()["positions"]
        daemons.stop(pid)
        stored = dict(db.execute("SELECT signal_id, status FROM signals").fetchall())
        orders_per_coid = db.execute("SELECT client_order_id, COUNT(*) FROM orders GROUP BY account, "
                                     "client_order_id HAVING COUNT(*) > 1").fetchall()
        fills_per_coid = db.execute("SELECT client_order_id, COUNT(*) FROM fills GROUP BY account, "
                                    "client_order_id HAVING COUNT(*) > 1").fetchall()
        executed = db.execute("SELECT COUNT(*) FROM signals s JOIN orders o ON o.account = s.account "
                              "AND o.client_order_id = s.client_order_id WHERE s.status = 'executed'").fetchone()[0]
        ledger = db.execute("SELECT quantity FROM positions WHERE symbol = 'AAPL'").fetchone()
        db.close()
    finally:
        daemons.close()
    context = f"seed {seed}; {len(accepted)} accepted; log: {daemons.log_tail()[-800:]}"
    assert len(accepted) > CYCLES, context  # the kills landed under load, not before it
    lost = [s for s in accepted.values() if s not in stored]
    assert lost == [], context
    unfinished = {s: stored[s] for s in accepted.values() if stored[s] not in ("executed", "expired")}
    assert unfinished == {}, context
    assert orders_per_coid == [] and fills_per_coid == [], context
    # Every executed signal bought one share, once: at the broker and on the store's ledger alike.
    assert [(p["symbol"], p["quantity"]) for p in held] == [("AAPL", str(executed))], context
    assert ledger is not None and int(float(ledger[0])) == executed, context
