"""An account's worker survives an unexpected error raised while it runs one signal, and runs the next one.

End to end on the Alpaca stand-in: the broker answers a 200 whose body is not the list the API promises,
so the adapter itself fails with a plain Python error (not a broker error the executor handles), and it
does so in the exit check that follows a signal, after its outcome is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until
from tests.standins.alpaca_api import AlpacaStandIn
from tests.standins.deviations import ALPACA, ALPACA_MALFORMED
from tests.test_alpaca_adapter import alpaca_running
from tests.test_alpaca_e2e import alpaca_account

URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def standin() -> AsyncIterator[AlpacaStandIn]:
    async with alpaca_running(tolerated=ALPACA + ALPACA_MALFORMED) as stand:
        yield stand


async def test_a_worker_goes_on_after_an_unexpected_error(  # type: ignore[no-untyped-def]
    start_daemon, standin: AlpacaStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="traderd.engine")
    standin.set_price("AAPL", Decimal("100"))
    standin.set_price("MSFT", Decimal("50"))
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"stocks": alpaca_account(standin)}))
    broker = daemon.brokers["stocks"]
    assert broker.stream is not None
    await wait_until(broker.stream.healthy, within=15)
    async with client_for(daemon) as client:

        async def send(**fields: str) -> object:
            response = await client.post(URL, json=alert(account="stocks", **fields))
            assert response.status_code == 202, response.text
            return await settled(daemon, response.json()["signal_id"])

        entry = await send(id="wk-1", quantity="2", take_profit="110", stop_loss="90")
        assert entry.status is SignalStatus.EXECUTED, entry.reason  # type: ignore[attr-defined]
        await wait_until(lambda: len([o for o in daemon.store.orders("stocks", open_only=True)
                                      if o.parent_order_id]) == 2, within=15)

        # A partial exit shrinks the position under its resting exits, so the worker checks them once the
        # signal's outcome is recorded: that check reads the open orders, and gets an answer it cannot read
        # (every read of them does from here on; the next signal does not read them).
        standin.inject("status", count=10_000, method="GET", path="/v2/orders", status=200)
        partial = await send(id="wk-2", action="exit", quantity="1")
        assert partial.status is SignalStatus.EXECUTED, partial.reason  # type: ignore[attr-defined]

        # The same account's next signal, queued behind that check, still runs to its fill, and the watchdog
        # sees a live worker.
        after = await send(id="wk-3", ticker="NASDAQ:MSFT", quantity="3", price="50")
        assert after.status is SignalStatus.EXECUTED, after.reason  # type: ignore[attr-defined]
        assert [o.status for o in after.orders] == [OrderStatus.FILLED]  # type: ignore[attr-defined]
        assert ("MSFT", Decimal(3)) in [(p.symbol, p.quantity) for p in await broker.positions()]
        assert daemon.engine.alive()
        health = await client.get("/healthz")
        assert health.status_code == 200, health.text
        assert health.json()["checks"]["engine"] is True
    # The error was the worker's to survive: it came out of the exit check after the signal, not out of
    # the signal's execution (which records such an error as the signal's failure).
    assert "ended with an error" in caplog.text and "TypeError" in caplog.text
