"""End-to-end with ProjectX: webhook -> risk -> ProjectXBroker -> stand-in gateway -> fill -> /api/positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settled, wait_until
from tests.standins.projectx_api import ProjectXStandin
from tests.test_projectx_adapter import contract_id, projectx_running

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def standin() -> AsyncIterator[ProjectXStandin]:
    async with projectx_running() as stand:
        yield stand


def px_account(standin: ProjectXStandin, **risk: Any) -> dict[str, Any]:
    return {"accounts": {"px": {
        "broker": "projectx",
        "projectx": {"username": "trader", "api_key": "px-api-key", "base_url": standin.url,
                     "poll_interval_seconds": 0.2, "timeout_seconds": 2, "rate_limit_per_minute": 1200},
        "risk": risk,
    }}}


def futures_alert(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ticker": "CME_MINI:ES1!", "action": "buy", "quantity": "1", "price": "6000",
                            "account": "px"}
    return alert(**(body | fields))


async def test_webhook_to_projectx_fill_and_position(start_daemon, standin: ProjectXStandin) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(**px_account(standin))
    async with client_for(daemon) as client:
        assert (await client.get("/healthz")).json()["checks"]["broker:px"] is True
        accepted = await client.post(URL, json=futures_alert(id="px-1"))
        assert accepted.status_code == 202
        record = await settled(daemon, accepted.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [(o.symbol, o.status) for o in record.orders] == [("ES1!", OrderStatus.FILLED)]
        # The fill arrives through the adapter's polling and lands in the store exactly once.
        fills = await wait_until(lambda: daemon.store.fills("px"), within=15)
        assert [(f.symbol, f.quantity, f.price) for f in fills] == [("ES1!", 1, Decimal("6000"))]
        positions = (await client.get("/api/positions", params={"account": "px"})).json()["positions"]
        assert [(p["symbol"], p["quantity"], p["stale"]) for p in positions] == [("ES1!", "1", False)]
        # Exit by ticker: the engine finds the position under the same symbol and closes it at the gateway.
        exited = await client.post(URL, json=futures_alert(id="px-2", action="exit", quantity=None))
        assert (await settled(daemon, exited.json()["signal_id"])).status is SignalStatus.EXECUTED
        assert (await client.get("/api/positions", params={"account": "px"})).json()["positions"] == []
    [place, _] = [body for _, path, body in standin.calls if path == "/api/Order/place"]
    assert place["contractId"] == contract_id(standin, "ES1!") and place["side"] == 0 and place["size"] == 1
    orders = [o for o in standin.broker.orders.values() if o.custom_tag == place["customTag"]]
    assert len(orders) == 1  # one order at the broker for one signal


async def test_risk_rejection_sends_nothing(start_daemon, standin: ProjectXStandin) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(**px_account(standin, max_order_quantity="1"))
    async with client_for(daemon) as client:
        accepted = await client.post(URL, json=futures_alert(id="px-big", quantity="3"))
        record = await settled(daemon, accepted.json()["signal_id"])
    assert record.status is SignalStatus.REJECTED
    assert standin.count("/api/Order/place") == 0


async def test_gateway_down_at_start_is_reported_and_recovers(start_daemon, standin: ProjectXStandin) -> None:  # type: ignore[no-untyped-def]
    port = standin.port
    await standin.stop()
    daemon = await start_daemon(**px_account(standin))
    async with client_for(daemon) as client:
        health = await client.get("/healthz")
        assert health.status_code == 503 and health.json()["checks"]["broker:px"] is False
        await standin.start(port)
        await daemon.reconcile_all()  # the periodic job reconnects
        assert (await client.get("/healthz")).json()["checks"]["broker:px"] is True
