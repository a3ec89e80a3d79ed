"""End-to-end on crypto: webhook -> risk -> CcxtBroker -> Binance stand-in -> fill -> /api/positions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.ccxt.broker import CcxtBroker
from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standins.binance_api import BinanceStandIn

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def standin() -> AsyncIterator[BinanceStandIn]:
    async with BinanceStandIn() as stand:
        yield stand
    stand.assert_no_violations()


def crypto_account(standin: BinanceStandIn, **risk: Any) -> dict[str, Any]:
    api = f"{standin.url}/api/v3"
    return {"broker": "ccxt", "risk": risk, "ccxt": {
        "exchange": "binance", "api_key": standin.api_key, "secret": standin.secret, "sandbox": True,
        "api_urls": {"public": api, "private": api, "v1": f"{standin.url}/api/v1"}, "timeout_seconds": 2,
        "poll_interval_seconds": 0.2, "rate_limit_per_minute": 60000, "weight_throttle": False,
        "stream_url": standin.ws_url,
    }}


async def test_webhook_to_binance_fill_and_position(start_daemon, standin: BinanceStandIn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"crypto": crypto_account(standin)}))
    assert isinstance(daemon.brokers["crypto"], CcxtBroker)
    async with client_for(daemon) as client:
        body = alert(id="cx-1", account="crypto", ticker="BINANCE:BTCUSDT", quantity="0.01", price="60000")
        response = await client.post(URL, json=body)
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [(o.symbol, o.status) for o in record.orders] == [("BTCUSDT", OrderStatus.FILLED)]
        assert standin.book.by_client("BTCUSDT", record.orders[0].client_order_id) is not None

        fills = await wait_until(lambda: daemon.store.fills("crypto"), within=15)  # polled from myTrades
        assert [(f.symbol, f.quantity, f.price, f.commission) for f in fills] == [
            ("BTCUSDT", Decimal("0.01"), 60000, Decimal("0.6"))]
        positions = (await client.get("/api/positions", params={"account": "crypto"})).json()["positions"]
        assert [(p["symbol"], Decimal(p["quantity"]), Decimal(p["average_price"])) for p in positions] == [
            ("BTCUSDT", Decimal("0.00999"), 60000)]

        await daemon.reconcile_all()  # the same fill under the same id: nothing doubled
        assert len(daemon.store.fills("crypto")) == 1

        exit_body = alert(id="cx-2", account="crypto", ticker="BINANCE:BTCUSDT", action="exit", quantity=None,
                          price="60500")
        standin.set_price("BTCUSDT", Decimal("60500"))
        response = await client.post(URL, json=exit_body)
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert [(o.side.value, o.quantity) for o in record.orders] == [("sell", Decimal("0.00999"))]
        positions = (await client.get("/api/positions", params={"account": "crypto"})).json()["positions"]
        assert positions == []


async def test_risk_rejection_sends_nothing_to_the_exchange(start_daemon, standin: BinanceStandIn,  # type: ignore[no-untyped-def]
                                                            tmp_path: Path) -> None:
    account = crypto_account(standin, max_order_quantity="0.005")
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"crypto": account}))
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="cx-3", account="crypto", ticker="BTCUSDT", quantity="0.01"))
        record = await settled(daemon, response.json()["signal_id"])
    assert record.status is SignalStatus.REJECTED
    assert standin.count("POST", "/api/v3/order") == 0 and standin.book.orders == {}


async def test_dollar_amount_buys_the_lot_step_fraction(start_daemon, standin: BinanceStandIn,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"crypto": crypto_account(standin)}))
    async with client_for(daemon) as client:
        body = alert(id="cx-usd", account="crypto", ticker="BINANCE:ETHUSDT", quantity="250",
                     quantity_type="dollar_amount", price="3000")
        response = await client.post(URL, json=body)
        assert response.status_code == 202, response.text
        record = await settled(daemon, response.json()["signal_id"])
        assert record.status is SignalStatus.EXECUTED, record.reason
        # 250 USDT / 3000 = 0.08333..., rounded down to ETHUSDT's step 0.0001
        assert [(o.symbol, o.quantity, o.status) for o in record.orders] == [
            ("ETHUSDT", Decimal("0.0833"), OrderStatus.FILLED)]
        fills = await wait_until(lambda: daemon.store.fills("crypto"), within=10)
        assert [(f.symbol, f.quantity) for f in fills] == [("ETHUSDT", Decimal("0.0833"))]

        small = alert(id="cx-usd-small", account="crypto", ticker="BINANCE:BTCUSDT", quantity="3",
                      quantity_type="dollar_amount", price="60000")
        response = await client.post(URL, json=small)
        record = await settled(daemon, response.json()["signal_id"])
    # 3 USDT is 0.00005 BTC, a whole lot step, but below the 5 USDT minimum notional: refused with the numbers
    assert record.status is SignalStatus.FAILED
    assert "order value 3 USDT (0.00005 x 60000) is below the exchange's minimum notional 5" in (record.reason or "")
    assert standin.count("POST", "/api/v3/order") == 1 and all(o["symbol"] == "ETHUSDT"
                                                               for o in standin.book.orders.values())
