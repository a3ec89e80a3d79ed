"""End-to-end on Alpaca: webhook -> risk -> AlpacaBroker -> stand-in -> fill (stream) -> position at /api/positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.alpaca.broker import AlpacaBroker
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standins.alpaca_api import AlpacaStandIn
from tests.test_alpaca_adapter import alpaca_running

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    async with alpaca_running() as stand:
        yield stand


def alpaca_account(standin: AlpacaStandIn, **risk: Any) -> dict[str, Any]:
    return {"broker": "alpaca", "risk": risk, "alpaca": {
        "key_id": standin.key_id, "secret_key": standin.secret_key, "base_url": standin.base_url,
        "timeout_seconds": 2, "rate_limit_per_minute": 6000, "poll_interval_seconds": 60,
    }}


async def test_webhook_to_alpaca_fill_and_position(start_daemon, standin: AlpacaStandIn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    standin.set_price("AAPL", Decimal("187.5"))
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"stocks": alpaca_account(standin)}))
    broker = daemon.brokers["stocks"]
    assert isinstance(broker, AlpacaBroker) and broker.stream is not None
    await wait_until(broker.stream.healthy, within=10)
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="al-1", account="stocks", quantity="10", price="187.5"))
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [o.status for o in record.orders] == [OrderStatus.FILLED]
        placed = standin.order_by_client(record.orders[0].client_order_id)
        assert placed is not None and len(standin.orders) == 1

        # polling is 60 s (600 s while streaming): the fill can only have come by the stream
        fills = await wait_until(lambda: daemon.store.fills("stocks"), within=10)
        assert [(f.symbol, f.quantity, f.price) for f in fills] == [("AAPL", 10, Decimal("187.5"))]
        positions = (await client.get("/api/positions", params={"account": "stocks"})).json()["positions"]
        assert [(p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions] == [
            ("AAPL", 10, Decimal("187.5"))]

        # reconciliation reads the same fill under the same id: nothing new, nothing doubled
        await daemon.reconcile_all()
        assert len(daemon.store.fills("stocks")) == 1
        assert [(p.symbol, p.quantity) for p in daemon.store.positions("stocks")] == [("AAPL", 10)]


async def test_risk_rejection_sends_nothing_to_alpaca(start_daemon, standin: AlpacaStandIn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    account = alpaca_account(standin, max_order_quantity="5")
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"stocks": account}))
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="al-2", account="stocks", quantity="10"))
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
    assert record.status is SignalStatus.REJECTED
    assert standin.count("POST", "/v2/orders") == 0 and standin.orders == {}
