"""One daemon per state directory: a second `traderd run` on the same SQLite store refuses, naming the first."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from daemon.app import Daemon
from daemon.ownership.lockfile import AlreadyRunning, LockFile
from tests.cluster_nodes import Node, until


async def test_second_daemon_on_the_same_state_dir_refuses(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings()
    first = Daemon(settings)
    await first.start()
    try:
        second = Daemon(settings)
        with pytest.raises(AlreadyRunning, match=rf"pid {os.getpid()}\b.*{re.escape(str(settings.daemon.state_dir))}"):
            await second.start()
        assert first.ready and first.store.ping()  # the refusal changed nothing for the running one
    finally:
        await first.stop()
    again = Daemon(settings)  # the lock went with the first daemon
    await again.start()
    await again.stop()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A daemon killed with -9 leaves no stale lock: the kernel drops a flock with its process."""
    lock = tmp_path / "traderd.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from daemon.ownership.lockfile import LockFile;"
        f"LockFile(Path({str(lock)!r})).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=rf"pid {holder.pid}\b"):
            LockFile(lock).acquire()
    finally:
        holder.kill()
        holder.wait(10)
    mine = LockFile(lock)
    mine.acquire()
    assert lock.read_text().strip() == str(os.getpid())
    mine.release()


@pytest.mark.slow
async def test_traderd_run_twice_on_one_state_dir(tmp_path: Path) -> None:
    config = {"accounts": {"paper": {}}}
    first = Node("first", tmp_path, config).start()
    try:
        await first.wait_ready()
        # The same state directory under another port: the second process must refuse and leave.
        second = Node("second", tmp_path, config)
        second.config.write_text(first.config.read_text().replace(str(first.port), str(second.port)))
        second.start()
        assert second.process is not None
        code = await until(lambda: second.process.poll() is not None and second.process.returncode, 30)
        assert code == 1
        output = second.log.read_text()
        assert f"another traderd (pid {first.pid}) is running on {first.dir / 'state'}" in output
        assert "Traceback" not in output
        health = await first.health()
        assert health is not None and health["ready"] and health["role"] == "active"
    finally:
        first.stop()


def test_release_and_check_on_sqlite(tmp_path: Path) -> None:
    """`traderd release` has nothing to hand over on SQLite, and `check` says cluster options do nothing there."""
    config = tmp_path / "traderd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[cluster]\ncapacity = 3\n[accounts.paper]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADERD_")}

    def traderd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon.cli", *args, "--config", str(config)], env=env,
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)

    released = traderd("release", "paper")
    assert released.returncode == 1 and "nothing to release: on SQLite" in released.stderr
    unknown = traderd("release", "nope")
    assert unknown.returncode == 2 and "unknown account 'nope'" in unknown.stderr
    checked = traderd("check")
    assert checked.returncode == 0
    assert "cluster.accounts and cluster.capacity have no effect on SQLite" in checked.stdout
