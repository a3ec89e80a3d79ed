"""End-to-end on Tradovate: webhook -> risk -> TradovateBroker -> stand-in -> fill -> position at /api/positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.symbols import normalize
from brokers.tradovate.broker import TradovateBroker
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standin_fixtures import tradovate_fronts, tradovate_running
from tests.standins.tradovate_api import TradovateStandin

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def tv() -> AsyncIterator[TradovateStandin]:
    async with tradovate_running() as standin:
        yield standin


def tradovate_account(tv: TradovateStandin) -> dict[str, Any]:
    return {
        "broker": "tradovate",
        "risk": {"max_position": "2"},
        "tradovate": {
            "username": "trader", "password": "tv-password", "cid": 8, "sec": "tv-secret",
            "device_id": "e2e-device", "base_url": tv.url, "account_spec": "DEMO7001",
            "timeout_seconds": 2, "rate_limit_per_minute": 6000, "poll_interval_seconds": 0.05,
        },
    }


async def test_webhook_to_tradovate_fill_and_position(start_daemon, tv: TradovateStandin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(tmp_path / "state", accounts={"tv": tradovate_account(tv)})
    daemon = await start_daemon(settings)
    broker = daemon.brokers["tv"]
    assert isinstance(broker, TradovateBroker) and broker.healthy()
    async with client_for(daemon) as client:
        health = (await client.get("/healthz")).json()
        response = await client.post(URL, json=alert(id="tv-1", account="tv", ticker="CME_MINI:ES1!", quantity="1",
                                                     price="6000"))
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [o.status for o in record.orders] == [OrderStatus.FILLED]

        # the stand-in holds exactly one automated order carrying the signal's client order id
        [placed] = [body for _, path, body in tv.calls if path == "/v1/order/placeorder"]
        assert placed["isAutomated"] is True and placed["symbol"] == normalize("ES1!")
        assert tv.orders_with_clordid(placed["clOrdId"]) == [int(record.orders[0].broker_order_id)]

        # the fill arrives by polling and lands in the store
        fills = await wait_until(lambda: daemon.store.fills("tv"), within=15)
        assert [(f.symbol, f.quantity, f.price) for f in fills] == [("ES1!", 1, Decimal(6000))]
        positions = (await client.get("/api/positions", params={"account": "tv"})).json()["positions"]
        assert [(p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions] == [
            ("ES1!", 1, Decimal(6000))]
        assert [(p.symbol, p.quantity) for p in daemon.store.positions("tv")] == [("ES1!", 1)]

        # risk sees the broker's position under the signal's ticker: 1 + 2 > max_position 2
        too_big = await client.post(URL, json=alert(id="tv-2", account="tv", ticker="ES1!", quantity="2"))
        assert (await settled(daemon, too_big.json()["signal_id"])).status is SignalStatus.REJECTED
        # ... and an exit without quantity closes exactly that position
        exit_ = await client.post(URL, json=alert(id="tv-3", account="tv", ticker="ES1!", action="exit",
                                                  quantity=None))
        assert (await settled(daemon, exit_.json()["signal_id"])).status is SignalStatus.EXECUTED
        assert (await client.get("/api/positions", params={"account": "tv"})).json()["positions"] == []
    assert tv.count("/order/placeorder") == 2
    assert health["ready"] is True and health["checks"]["broker:tv"] is True


async def test_tradovate_down_at_start_is_reported_then_reconnects(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tv = await TradovateStandin().start()
    tradovate_fronts(tv)
    port = tv.port
    await tv.stop()  # the broker is down when the daemon starts
    account = tradovate_account(tv)
    account["tradovate"]["max_retries"] = 0
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"tv": account}))
    try:
        async with client_for(daemon) as client:
            health = await client.get("/healthz")
            assert health.status_code == 503 and health.json()["checks"]["broker:tv"] is False
            [told] = [e for e in daemon.events.recent if e.kind == "broker" and e.account == "tv"]
            assert "tradovate is unreachable at http://127.0.0.1" in told.summary
            await tv.start(port=port)  # the broker comes back; the periodic job reconnects
            await daemon.reconcile_all()
            assert (await client.get("/healthz")).status_code == 200
            assert any(e.summary == "broker reconnected" for e in daemon.events.recent if e.account == "tv")
    finally:
        await tv.stop()
    tv.assert_no_violations()
