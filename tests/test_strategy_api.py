"""Control API for strategies: GET /api/strategies, POST /api/strategies/{name}/pause|resume, on a real daemon.

The daemon runs the shipped SMA crossover on the shipped 5-minute sample bars (its clock moved to just after
a bar on which SMA3 crosses above SMA5, so start-up acts on it) and a strategy file that fails in `on_bar`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.settings import Settings
from daemon.app import Daemon
from daemon.domain import utcnow
from daemon.store.state import StateStore
from tests.conftest import client_for

TOKEN = "api-token-for-strategy-tests"
SAMPLE_5M = Path(__file__).resolve().parents[1] / "strategies" / "data" / "sample_5m.csv"
CROSS_UP = datetime(2024, 11, 22, 10, 40, tzinfo=ZoneInfo("America/New_York"))
BROKEN = """
from strategies.base import Strategy

class Flaky(Strategy):
    def on_bar(self, bar, history, position):
        raise ZeroDivisionError("boom")
"""


def shifted(at: datetime) -> Callable[[], datetime]:
    offset = at - utcnow()
    return lambda: utcnow() + offset


@pytest.fixture
async def daemon(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Daemon]:
    (tmp_path / "flaky.py").write_text(BROKEN)
    common = {"account": "paper", "symbol": "AAPL", "timeframe": "5m", "data": str(SAMPLE_5M), "max_lag_seconds": 600}
    settings = make_settings(api={"token": TOKEN}, strategies={
        "aapl_sma": {"strategy": "sma_cross", "params": {"fast": 3, "slow": 5}, **common},
        "flaky": {"strategy": str(tmp_path / "flaky.py"), **common},
    })
    running = Daemon(settings, clock=shifted(CROSS_UP + timedelta(seconds=3)))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_list_shows_state_error_and_last_signal(daemon: Daemon) -> None:
    async with client_for(daemon, TOKEN) as client:
        answer = await client.get("/api/strategies")
    assert answer.status_code == 200
    rows = {row["name"]: row for row in answer.json()["strategies"]}
    sma = rows["aapl_sma"]
    assert (sma["status"], sma["strategy"], sma["account"], sma["symbol"], sma["timeframe"]) == (
        "running", "sma_cross", "paper", "AAPL", "5m")
    assert sma["last_bar_end"] == "2024-11-22T15:40:00Z" and sma["last_signal"] == "target 1"
    assert rows["flaky"]["status"] == "disabled" and "ZeroDivisionError: boom" in rows["flaky"]["error"]


async def test_pause_resume_reenable_and_audit(daemon: Daemon, tmp_path: Path) -> None:
    async with client_for(daemon, TOKEN) as client:
        paused = await client.post("/api/strategies/aapl_sma/pause", json={"actor": "ops-script"})
        assert paused.status_code == 200 and paused.json()["strategy"]["status"] == "paused"
        assert StateStore(daemon.store).get("strategy", "aapl_sma")["paused"] is True  # type: ignore[index]
        resumed = await client.post("/api/strategies/aapl_sma/resume")  # no body: fine
        assert resumed.status_code == 200 and resumed.json()["strategy"]["status"] == "running"

        (tmp_path / "flaky.py").write_text("import not_a_module_anywhere\n")
        still = await client.post("/api/strategies/flaky/resume")
        assert still.status_code == 409 and still.json()["error"] == "still_disabled"
        assert "not_a_module_anywhere" in still.json()["detail"]
        (tmp_path / "flaky.py").write_text(BROKEN.replace('raise ZeroDivisionError("boom")', "return []"))
        fixed = await client.post("/api/strategies/flaky/resume")
        assert fixed.status_code == 200
        assert (fixed.json()["strategy"]["status"], fixed.json()["strategy"]["error"]) == ("running", None)
    audit = [(e.actor, e.action, e.target, e.ok) for e in reversed(daemon.store.audit_log())]
    actions = [a for a in audit if a[1].startswith("strategy")]
    assert [a[1:] for a in actions] == [
        ("strategy_pause", "aapl_sma", True), ("strategy_resume", "aapl_sma", True),
        ("strategy_resume", "flaky", False), ("strategy_resume", "flaky", True)]
    assert actions[0][0] == "ops-script" and actions[1][0].startswith("api:")


async def test_unknown_name_is_404_and_changes_nothing(daemon: Daemon) -> None:
    before = [s.model_dump() for s in daemon.strategies.status()]
    async with client_for(daemon, TOKEN) as client:
        for action in ("pause", "resume"):
            answer = await client.post(f"/api/strategies/nope/{action}")
            assert answer.status_code == 404
            body: dict[str, Any] = answer.json()
            assert body["error"] == "unknown_strategy" and "aapl_sma, flaky" in body["detail"]
        bad = await client.post("/api/strategies/aapl_sma/pause", content=b"not json",
                                headers={"Content-Type": "application/json"})
        assert bad.status_code == 400
    assert [s.model_dump() for s in daemon.strategies.status()] == before
    assert not [e for e in daemon.store.audit_log() if e.action.startswith("strategy")]


async def test_bearer_token_required(daemon: Daemon) -> None:
    async with client_for(daemon) as anonymous, client_for(daemon, "wrong") as wrong:
        for client in (anonymous, wrong):
            assert (await client.get("/api/strategies")).status_code == 401
            assert (await client.post("/api/strategies/aapl_sma/pause")).status_code == 401
    assert daemon.strategies.status()[0].status == "running"


async def test_no_strategies_configured(make_settings: Callable[..., Settings]) -> None:
    plain = Daemon(make_settings())
    await plain.start()
    try:
        async with client_for(plain) as client:
            assert (await client.get("/api/strategies")).json() == {"strategies": []}
            answer = await client.post("/api/strategies/any/pause")
            assert answer.status_code == 404 and answer.json()["detail"] == "no strategy 'any'; strategies: none"
    finally:
        await plain.stop()
