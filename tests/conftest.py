"""Shared fixtures: settings on a temp state dir, an in-process daemon on an ephemeral port, HTTP helpers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from config.settings import Settings
from daemon.app import Daemon
from tests.openapi_check import validating_hook

SECRET = "test-secret-0123456789abcdef"
POSTGRES_URL = os.environ.get("TRADERD_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their own settings; a developer's environment must not leak in."""
    for name in list(os.environ):
        if name.startswith("TRADERD_") and name != "TRADERD_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def settings_for(state_dir: Path, **extra: Any) -> Settings:
    base: dict[str, Any] = {
        "daemon": {"state_dir": state_dir, "reconcile_interval_seconds": 3600, "log_level": "WARNING"},
        "webhook": {"host": "127.0.0.1", "port": 0, "secret": SECRET},
        "accounts": {"paper": {"paper": {"starting_cash": "100000", "multipliers": {"ES": "50"}}}},
    }
    return Settings(**deep_merge(base, extra))


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**extra: Any) -> Settings:
        return settings_for(tmp_path / "state", **extra)

    return make


DaemonFactory = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(make_settings: Callable[..., Settings]) -> AsyncIterator[DaemonFactory]:
    """Start in-process daemons on ephemeral ports; all are stopped at teardown."""
    running: list[Daemon] = []

    async def start(settings: Settings | None = None, **extra: Any) -> Daemon:
        daemon = Daemon(settings or make_settings(**extra))
        await daemon.start()
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        await daemon.stop()


def client_for(daemon: Daemon, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # A burst of hundreds of requests queues for the client's own 100 connections: that wait is the client's,
    # so it gets a long bound; each request still gets 10 s from the daemon.
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}", timeout=httpx.Timeout(10, pool=60),
                             headers=headers,
                             event_hooks={"response": [validating_hook()]})


def alert(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ticker": "NASDAQ:AAPL", "action": "buy", "quantity": "10", "price": "100"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


async def wait_until(predicate: Callable[[], Any], within: float = 15.0, every: float = 0.01) -> Any:
    """Poll until `predicate()` is truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


async def settled(daemon: Daemon, signal_id: str, within: float = 15.0) -> Any:
    """The signal's record once its worker has finished with it."""

    def final() -> Any:
        record = daemon.store.get_signal(signal_id)
        if record is None or not record.status.is_final or daemon.engine.is_queued(record.account, signal_id):
            return None
        return record

    return await wait_until(final, within)
