"""End-to-end on the broker stand-ins: relative exits become the prices each broker rests, sizing by risk."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from daemon.domain import SignalStatus
from tests.conftest import client_for, wait_until
from tests.test_order_safety_brokers import Venue, held, send, started, venue  # noqa: F401 (fixture)


async def test_relative_exits_and_risk_sizing(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    daemon = await started(start_daemon, venue, tmp_path)
    futures = venue.ticker.endswith("!")
    # ES: 12 ticks = 3 points above, $100 per contract = 2 points below; AAPL: 5 % above, $2 below.
    take_profit = {"ticks": "12"} if futures else {"percent": "5"}
    stop_loss = {"dollars": "100"} if futures else {"dollars": "2"}
    # Risk 250 with the stop 2 ES points (100 $) or 2 $ away: 2 contracts / 125 shares.
    risk = "250"
    async with client_for(daemon) as client:
        record = await send(daemon, client, venue.body(action="buy", quantity=risk, id="rel-1",
                                                       quantity_type="risk_dollar_amount",
                                                       take_profit=take_profit, stop_loss=stop_loss))
        assert record.status is SignalStatus.EXECUTED, record.reason
        exits = await wait_until(lambda: [o for o in daemon.store.orders("acct", open_only=True)
                                          if o.parent_order_id], within=5)
    prices = sorted((o.limit_price or o.stop_price) for o in exits)
    expected = [Decimal("5998"), Decimal("6003")] if futures else [Decimal("98"), Decimal("105")]
    assert prices == expected
    assert await held(daemon) == (2 if futures else 125)
    assert {o.quantity for o in exits} == {2 if futures else 125}
