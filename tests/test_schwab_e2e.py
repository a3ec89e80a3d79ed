"""End-to-end on Schwab: webhook -> risk -> SchwabBroker -> stand-in -> fill (polling) -> /api/positions; and an
expired login seen by the trader (alert, /api/status, /healthz) with entries refused and nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.schwab.broker import SchwabBroker
from daemon.domain import Event, OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standin_fixtures import schwab_running
from tests.standins.schwab_api import ACCOUNT_NUMBER, BASE, SchwabStandin
from tests.test_schwab_adapter import login

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def stand() -> AsyncIterator[SchwabStandin]:
    async with schwab_running() as standin:
        yield standin


def schwab_account(stand: SchwabStandin, **risk: Any) -> dict[str, Any]:
    return {"broker": "schwab", "risk": risk, "schwab": {
        "app_key": stand.app_key, "app_secret": stand.app_secret, "base_url": stand.url + BASE,
        "oauth_url": stand.url + "/v1/oauth", "account_number": ACCOUNT_NUMBER, "timeout_seconds": 2,
        "rate_limit_per_minute": 6000, "order_rate_limit_per_minute": 6000, "poll_interval_seconds": 0.1,
    }}


async def test_webhook_to_schwab_fill_and_position(start_daemon, stand: SchwabStandin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    login(stand, state, account="schwab1")
    stand.set_price("AAPL", "187.5")
    daemon = await start_daemon(settings_for(state, accounts={"schwab1": schwab_account(stand)}))
    assert isinstance(daemon.brokers["schwab1"], SchwabBroker)
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="sw-1", account="schwab1", quantity="10", price="187.5"))
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [o.status for o in record.orders] == [OrderStatus.FILLED]
        assert len(stand.orders_for("AAPL")) == 1

        fills = await wait_until(lambda: daemon.store.fills("schwab1"), within=15)  # heard by polling
        assert [(f.symbol, f.quantity, f.price) for f in fills] == [("AAPL", 10, Decimal("187.5"))]
        positions = (await client.get("/api/positions", params={"account": "schwab1"})).json()["positions"]
        assert [(p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions] == [
            ("AAPL", 10, Decimal("187.5"))]
        await daemon.reconcile_all()  # the same fill under the same id: nothing doubled
        assert len(daemon.store.fills("schwab1")) == 1
        assert (await client.get("/healthz")).json()["checks"]["broker:schwab1"] is True


async def test_expired_login_is_told_and_refuses_entries(start_daemon, stand: SchwabStandin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    login(stand, state, account="schwab1", issued_at=datetime.now(UTC) - timedelta(days=7) + timedelta(hours=5))
    daemon = await start_daemon(settings_for(state, accounts={"schwab1": schwab_account(stand)}))
    events: list[Event] = list(daemon.events.recent)
    daemon.events.subscribe(events.append)
    warned = [e for e in events if e.kind == "broker" and "expires in 5 h" in e.summary]
    assert len(warned) == 1 and warned[0].account == "schwab1"  # the 6 h warning, as a chat alert
    async with client_for(daemon) as client:
        first = await client.post(URL, json=alert(id="sw-2", account="schwab1", quantity="10"))
        assert (await settled(daemon, first.json()["signal_id"])).status is SignalStatus.EXECUTED

        stand.revoke_refresh_tokens()  # the login ends
        stand.expire_access_tokens()
        response = await client.post(URL, json=alert(id="sw-3", account="schwab1", quantity="5"))
        assert response.status_code == 202, response.text  # accepted and recorded: nothing lost
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.FAILED and "traderd auth schwab --account schwab1" in (record.reason or "")
        assert any("LOGIN EXPIRED" in e.summary for e in events if e.kind == "broker")
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["checks"]["broker:schwab1"] is False
        [row] = [a for a in (await client.get("/api/status")).json()["accounts"] if a["account"] == "schwab1"]
        assert row["connected"] is False and "login of account schwab1 has expired" in row["error"]
    assert len(stand.orders_for("AAPL")) == 1 and stand.book.positions["AAPL"][0] == 10
