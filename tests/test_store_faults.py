"""Store faults under a running daemon: a full disk for two seconds during a burst, a write lock held by
another process. Accepted signals are executed once each when the store is back; /healthz recovers by itself;
a 503 reaches TradingView before it gives up (3 s)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from daemon.domain import SignalStatus
from tests.conftest import SECRET, alert, client_for, settled, wait_until

URL = f"/webhook/tradingview/{SECRET}"


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "6m") -> Iterator[Path]:
    """A tmpfs of `size` at `where` (needs CAP_SYS_ADMIN; the test is skipped without it)."""
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to `path` until the filesystem has no space left."""
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError as exc:
            assert exc.errno in (errno.ENOSPC, errno.EFBIG)
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError:
            pass


async def test_full_disk_during_a_burst_loses_nothing_doubles_nothing(start_daemon, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    with small_filesystem(tmp_path / "disk") as disk:
        daemon = await start_daemon(store={"url": f"sqlite:///{disk}/traderd.db"})
        filler = disk / "filler"
        async with client_for(daemon) as client:
            warm = [await client.post(URL, json=alert(id=f"warm-{i}", quantity="1")) for i in range(5)]
            assert {r.status_code for r in warm} == {202}

            async def post(i: int) -> tuple[int, httpx.Response]:
                await asyncio.sleep(i * 0.005)
                return i, await client.post(URL, json=alert(id=f"burst-{i}", quantity="1"))

            burst = [asyncio.create_task(post(i)) for i in range(400)]
            # The worker is held (as reconciliation holds it) while the first alerts are accepted and queued;
            # then the disk fills, and it executes them with every store write failing.
            async with daemon.engine.exclusive("paper"):
                await wait_until(lambda: daemon.engine.queue_depth("paper") >= 30, 10)
                await asyncio.to_thread(fill, filler)
            await asyncio.sleep(2.0)
            filler.unlink()
            answers = dict(await asyncio.gather(*burst))
            statuses = {r.status_code for r in answers.values()}
            refused = [i for i, r in answers.items() if r.status_code == 503]
            assert statuses <= {202, 503}, statuses
            # TradingView resends every 5xx: do so now the disk has room again.
            for i, response in list(answers.items()):
                if response.status_code == 503:
                    answers[i] = await client.post(URL, json=alert(id=f"burst-{i}", quantity="1"))
            assert {r.status_code for r in answers.values()} <= {200, 202}
            accepted = [r.json()["signal_id"] for r in answers.values() if r.status_code == 202]
            records = [await settled(daemon, signal_id, within=30) for signal_id in accepted]
            health = await wait_until(lambda: daemon.readiness()["engine"] and daemon.readiness()["store"], 10)
            assert health
            final = await client.get("/healthz")
        retried = [r for r in caplog.records if "store refused a write" in r.getMessage()]
        assert refused, "the fault never reached the webhook"
        assert retried, "the fault never reached a worker"
        assert final.status_code == 200, final.text
        assert [r.signal_id for r in records if r.status is not SignalStatus.EXECUTED] == []
        assert all(len(r.orders) == 1 for r in records)
        # Every burst signal traded exactly once: 5 warm-up + 400 burst shares, in the store and at the broker.
        held = {p.symbol: p.quantity for p in await daemon.brokers["paper"].positions()}
        assert held == {"AAPL": Decimal(405)}
        assert [(p.symbol, p.quantity) for p in daemon.store.positions("paper")] == [("AAPL", Decimal(405))]
        assert len(daemon.store.orders(limit=1000)) == 405
        await daemon.stop()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(30)
"""


async def test_a_write_locked_database_gets_503_before_tradingview_gives_up(start_daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    database = daemon.settings.database_url.removeprefix("sqlite:///")
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, database,
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        assert locker.stdout is not None
        assert (await asyncio.wait_for(locker.stdout.readline(), 10)).strip() == b"locked"
        async with client_for(daemon) as client:
            started = time.monotonic()
            response = await client.post(URL, json=alert(id="locked-1"))
            elapsed = time.monotonic() - started
        assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")
        assert elapsed < 3.0, elapsed  # TradingView waits 3 s
    finally:
        locker.kill()
        await asyncio.wait_for(locker.wait(), 5)
    async with client_for(daemon) as client:
        resent = await client.post(URL, json=alert(id="locked-1"))
    assert resent.status_code == 202
    assert (await settled(daemon, resent.json()["signal_id"])).status is SignalStatus.EXECUTED
