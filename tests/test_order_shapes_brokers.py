"""End-to-end on the broker stand-ins: relative exits become the prices each broker rests, sizing by risk."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from daemon.domain import SignalStatus
from tests.conftest import client_for, settings_for, settled, wait_until
from tests.test_order_safety_brokers import URL, Venue, held, send, started, venue, wait_async  # noqa: F401


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
                                          if o.parent_order_id], within=15)
    prices = sorted((o.limit_price or o.stop_price) for o in exits)
    expected = [Decimal("5998"), Decimal("6003")] if futures else [Decimal("98"), Decimal("105")]
    assert prices == expected
    assert await held(daemon) == (2 if futures else 125)
    assert {o.quantity for o in exits} == {2 if futures else 125}


async def test_traderspost_and_key_value_bodies(start_daemon, venue: Venue, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # TradersPost bodies name no account: this one is routed by its ticker.
    account = venue.account | {"symbols": [venue.ticker]}
    daemon = await start_daemon(settings_for(tmp_path / "state", accounts={"acct": account}))
    traderspost = {"ticker": venue.ticker, "action": "buy", "sentiment": "bullish", "quantity": 1,
                   "orderType": "market", "signalPrice": float(venue.price), "timeInForce": "day",
                   "takeProfit": {"amount": 5}, "stopLoss": {"type": "stop", "percent": 1},
                   "extras": {"strategy": "ema", "comment": "tp body"}}
    pairs = f"ticker={venue.ticker}\naction=exit\nid=kv-1\n"
    async with client_for(daemon) as client:
        response = await client.post(URL, json=traderspost)
        assert response.status_code == 202, response.text
        entry = await settled(daemon, response.json()["signal_id"])
        assert entry.status is SignalStatus.EXECUTED, entry.reason
        exits = await wait_until(lambda: [o for o in daemon.store.orders("acct", open_only=True)
                                          if o.parent_order_id], within=15)
        assert sorted(o.limit_price or o.stop_price for o in exits) == [venue.price * Decimal("0.99"),
                                                                       venue.price + 5]
        closed = await client.post(URL, content=pairs.encode(), headers={"Content-Type": "text/plain"})
        assert closed.status_code == 202, closed.text
        assert (await settled(daemon, closed.json()["signal_id"])).status is SignalStatus.EXECUTED

        async def flat() -> bool:
            return await held(daemon) == 0 and await daemon.brokers["acct"].open_orders() == []

        await wait_async(flat)
