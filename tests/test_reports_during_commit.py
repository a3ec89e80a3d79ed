"""A broker report that arrives while a signal's outcome is being committed is written too, not dropped.

While other accounts have signals running, a signal's outcome is committed off the event loop, and the loop
keeps serving the broker's reports meanwhile. Reports that arrive during a signal wait to be written with
its outcome; one that arrives after that list was taken (here: while another process holds SQLite's write
lock and the commit waits for it) must still reach the store once the lock is free.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.domain import Action, Intent, SignalStatus
from tests.conftest import SECRET, alert, client_for, settled, wait_until
from tests.test_order_safety_brokers import wait_async


async def test_a_fill_reported_during_the_outcome_commit_is_recorded(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={"paper": {"paper": {"starting_cash": "100000"}},
                                          "other": {"paper": {"starting_cash": "100000"}}})
    broker = daemon.brokers["paper"]
    async with client_for(daemon) as client:
        response = await client.post(f"/webhook/tradingview/{SECRET}",
                                     json=alert(id="rest", account="paper", order_type="limit", limit_price="90",
                                                quantity="3"))
        assert response.status_code == 202, response.text
    resting = await settled(daemon, response.json()["signal_id"])
    assert resting.status is SignalStatus.EXECUTED, resting.reason
    assert [o.quantity for o in await broker.open_orders()] == [Decimal(3)]

    now = datetime.now(UTC)
    for account in ("paper", "other"):  # two accounts at once: their outcomes go to the commit thread
        daemon.store.record_signal(Intent(
            signal_id=f"sig_{account}", dedup_key="id:market", account=account, action=Action.BUY, symbol="AAPL",
            quantity=Decimal(1), price=Decimal(100), received_at=now, expires_at=now + timedelta(minutes=5)))

    database = Path(daemon.settings.database_url.removeprefix("sqlite:///"))
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write: the outcome's commit waits for it
        assert daemon.engine.feed(["paper", "other"]) == 2

        async def bought() -> Any:
            return any(p.symbol == "AAPL" and p.quantity == 1 for p in await broker.positions()) or None

        await wait_async(bought, within=1.5, every=0.005)
        assert daemon.store.get_signal("sig_paper").status is SignalStatus.PENDING  # still waiting to commit
        # The resting buy limit fills now: its report comes in while the outcome above waits for the lock.
        await broker.observe_price("AAPL", Decimal("89"), datetime.now(UTC))
    finally:
        other.execute("ROLLBACK")
        other.close()

    record = await settled(daemon, "sig_paper")
    assert record.status is SignalStatus.EXECUTED, record.reason
    assert (await settled(daemon, "sig_other")).status is SignalStatus.EXECUTED

    def both_fills() -> Any:
        fills = daemon.store.fills("paper")
        return fills if sorted(f.quantity for f in fills) == [Decimal(1), Decimal(3)] else None

    fills = await wait_until(both_fills)
    assert {f.client_order_id for f in fills} == {record.client_order_id, resting.client_order_id}
    stored = {o.client_order_id: o for o in daemon.store.orders("paper")}
    assert stored[resting.client_order_id].status.value == "filled"

