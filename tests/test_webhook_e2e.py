"""End-to-end: TradingView webhooks over HTTP into a running daemon, asserting what the store and paper account hold."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from daemon.domain import OrderStatus, SignalStatus
from tests.conftest import SECRET, alert, client_for, settled

URL = f"/webhook/tradingview/{SECRET}"


async def position(daemon, symbol: str, account: str = "paper") -> Decimal:  # type: ignore[no-untyped-def]
    for p in await daemon.brokers[account].positions():
        if p.symbol == symbol:
            return p.quantity
    return Decimal(0)


async def test_alert_becomes_a_paper_fill(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="a1"))
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted" and body["signal_id"].startswith("sig_")
    record = await settled(daemon, body["signal_id"])
    assert record.status is SignalStatus.EXECUTED
    assert [o.status for o in record.orders] == [OrderStatus.FILLED]
    assert record.fills[0].price == Decimal("100") and record.fills[0].quantity == Decimal("10")
    assert await position(daemon, "AAPL") == Decimal("10")
    assert [p.quantity for p in daemon.store.positions("paper")] == [Decimal("10")]


async def test_secret_in_body_and_text_plain(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        as_json = await client.post("/webhook/tradingview", json=alert(id="b1", secret=SECRET))
        as_text = await client.post("/webhook/tradingview", content=json.dumps(alert(id="b2", secret=SECRET)),
                                    headers={"Content-Type": "text/plain; charset=utf-8"})
    assert (as_json.status_code, as_text.status_code) == (202, 202)
    await settled(daemon, as_text.json()["signal_id"])
    assert await position(daemon, "AAPL") == Decimal("20")
    # The secret is never stored with the signal.
    with daemon.store.engine.connect() as conn:
        raw = conn.exec_driver_sql("SELECT raw_json FROM signals").fetchall()
    assert raw and all(SECRET not in (row[0] or "") for row in raw)


@pytest.mark.parametrize(
    ("path", "content", "headers", "status", "code"),
    [
        (URL, b"{not json", {"Content-Type": "application/json"}, 400, "bad_json"),
        (URL, b"[1, 2]", {"Content-Type": "application/json"}, 400, "bad_json"),
        (URL, json.dumps(alert(quantity="NaN")).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(quantity="-3")).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(action="hold")).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(quantiy="5")).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(order_type="limit")).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(quantity=None)).encode(), {}, 422, "invalid_field"),
        (URL, json.dumps(alert(account="nope")).encode(), {}, 422, "unknown_account"),
        ("/webhook/tradingview/wrong-token", json.dumps(alert()).encode(), {}, 401, "bad_secret"),
        ("/webhook/tradingview", json.dumps(alert(secret="wrong")).encode(), {}, 401, "bad_secret"),
        ("/webhook/tradingview", json.dumps(alert()).encode(), {}, 401, "bad_secret"),
        (URL, b"ticker=AAPL", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        (URL, b"{" + b" " * 20_000 + b"}", {"Content-Type": "application/json"}, 413, "body_too_large"),
        (URL, json.dumps(alert(time=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())).encode(), {},
         422, "stale"),
        (URL, json.dumps(alert(time=(datetime.now(UTC) - timedelta(seconds=30)).isoformat(), max_lag="10")
                         ).encode(), {}, 422, "stale"),
        # An hour ahead: still beyond the allowed clock skew however long after collection the test runs.
        (URL, json.dumps(alert(time=(datetime.now(UTC) + timedelta(hours=1)).isoformat())).encode(), {},
         422, "bad_time"),
    ],
)
async def test_refusals_change_nothing(start_daemon, path, content, headers, status, code) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        response = await client.post(path, content=content, headers=headers or {"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert SECRET not in response.text
    assert daemon.store.unfinished_signals() == []
    assert daemon.store.orders() == []
    assert await daemon.brokers["paper"].positions() == []


async def test_disallowed_source_ip(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(webhook={"allowed_ips": ["52.89.214.238", "10.0.0.0/8"]})
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert())
        forged = await client.post(URL, json=alert(), headers={"X-Forwarded-For": "52.89.214.238"})
    assert (response.status_code, response.json()["error"]) == (403, "forbidden_ip")
    assert forged.status_code == 403  # X-Forwarded-For is ignored unless trust_forwarded_for is set
    assert daemon.store.orders() == []


async def test_forwarded_for_behind_own_proxy(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(webhook={"allowed_ips": ["52.89.214.238"], "trust_forwarded_for": True})
    async with client_for(daemon) as client:
        ok = await client.post(URL, json=alert(id="p1"), headers={"X-Forwarded-For": "52.89.214.238"})
        spoofed = await client.post(URL, json=alert(id="p2"),
                                    headers={"X-Forwarded-For": "52.89.214.238, 198.51.100.7"})
    assert ok.status_code == 202
    assert spoofed.status_code == 403


async def test_four_identical_posts_make_one_order(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        answers = await asyncio.gather(*(client.post(URL, json=alert(id="tv-42")) for _ in range(4)))
        no_id = [await client.post(URL, json=alert(ticker="MSFT")) for _ in range(4)]
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 200, 202]
    ids = {r.json()["signal_id"] for r in answers}
    assert len(ids) == 1
    assert [r.json()["status"] for r in answers if r.status_code == 200] == ["duplicate"] * 3
    assert [r.status_code for r in no_id] == [202, 200, 200, 200]
    await settled(daemon, ids.pop())
    await settled(daemon, no_id[0].json()["signal_id"])
    assert len(daemon.store.orders()) == 2
    assert await position(daemon, "AAPL") == Decimal("10")
    assert await position(daemon, "MSFT") == Decimal("10")


async def test_target_position_converges(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    steps = [("5", "5"), ("2", "2"), ("-1", "-1"), ("-1", "-1"), ("0", "0")]
    async with client_for(daemon) as client:
        for n, (target, expected) in enumerate(steps):
            body = {"ticker": "AAPL", "action": "sell", "target_position": target, "price": "50", "id": f"t{n}"}
            response = await client.post(URL, json=body)
            assert response.status_code == 202
            record = await settled(daemon, response.json()["signal_id"])
            assert record.status is SignalStatus.EXECUTED
            assert await position(daemon, "AAPL") == Decimal(expected)
    sides = [(o.side.value, o.quantity) for o in reversed(daemon.store.orders())]
    assert sides == [("buy", Decimal(5)), ("sell", Decimal(3)), ("sell", Decimal(3)), ("buy", Decimal(1))]


async def test_bracket_children_and_exit(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        entry = await client.post(URL, json=alert(id="br1", take_profit="110", stop_loss="95"))
        await settled(daemon, entry.json()["signal_id"])
        open_orders = (await client.get("/api/orders", params={"open": "true"})).json()["orders"]
        kinds = sorted((o["order_type"], o["side"], o["limit_price"] or o["stop_price"]) for o in open_orders)
        assert [(k, s, Decimal(p)) for k, s, p in kinds] == [("limit", "sell", Decimal(110)),
                                                             ("stop", "sell", Decimal(95))]
        assert {o["oco_group"] for o in open_orders} == {open_orders[0]["oco_group"]}
        # The market crosses the take-profit: the TP fills, the SL is cancelled.
        await daemon.brokers["paper"].observe_price("AAPL", Decimal("111"), datetime.now(UTC))
        assert await position(daemon, "AAPL") == 0
        statuses = {o["order_type"]: o["status"] for o in (await client.get("/api/orders")).json()["orders"]
                    if o["symbol"] == "AAPL" and o["order_type"] != "market"}
    assert statuses == {"limit": "filled", "stop": "cancelled"}
    assert daemon.store.positions("paper") == []


async def test_exit_closes_and_cancels_brackets(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        first = await client.post(URL, json=alert(id="x1", stop_loss="90"))
        await settled(daemon, first.json()["signal_id"])
        exit_ = await client.post(URL, json={"ticker": "AAPL", "action": "exit", "price": "101", "id": "x2"})
        await settled(daemon, exit_.json()["signal_id"])
        nothing = await client.post(URL, json={"ticker": "AAPL", "action": "exit", "id": "x3"})
        record = await settled(daemon, nothing.json()["signal_id"])
    assert await position(daemon, "AAPL") == 0
    assert await daemon.brokers["paper"].open_orders() == []
    assert record.status is SignalStatus.EXECUTED and "no AAPL position" in (record.reason or "")
    pnl = daemon.store.fills_with_pnl("paper", datetime.now(UTC) - timedelta(hours=1))
    assert sum(p for _, p in pnl) == Decimal("10")  # bought 10 @ 100, sold 10 @ 101


async def test_risk_limit_rejects_without_an_order(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={"paper": {"risk": {"max_order_quantity": "5", "max_notional": "2000"}}})
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(id="r1", quantity="50"))
        record = await settled(daemon, response.json()["signal_id"])
        outcome = (await client.get(f"/api/signals/{record.signal_id}")).json()
    assert response.status_code == 202
    assert record.status is SignalStatus.REJECTED
    assert "exceeds the limit 5" in record.reason and "notional 5,000" in record.reason
    assert outcome["status"] == "rejected"
    assert {v.rule for v in daemon.store.violations("paper")} == {"max_order_quantity", "max_notional"}
    assert daemon.store.orders() == []


async def test_signal_routing_by_ticker_and_account(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={"paper": {"symbols": ["AAPL"]}, "futures": {"symbols": ["ES1!"]}})
    async with client_for(daemon) as client:
        es = await client.post(URL, json=alert(ticker="CME_MINI:ES1!", quantity="1", price="5000", id="f1"))
        named = await client.post(URL, json=alert(ticker="MSFT", account="futures", id="f2"))
        unrouted = await client.post(URL, json=alert(ticker="MSFT", id="f3"))
    assert es.json()["account"] == "futures" and named.json()["account"] == "futures"
    assert unrouted.status_code == 422 and unrouted.json()["error"] == "unknown_account"
    await settled(daemon, es.json()["signal_id"])
    assert await position(daemon, "ES1!", "futures") == 1
    assert await position(daemon, "ES1!", "paper") == 0


async def test_late_resend_of_accepted_signal_is_duplicate_not_stale(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    fired = (datetime.now(UTC) - timedelta(seconds=20)).isoformat()
    async with client_for(daemon) as client:
        first = await client.post(URL, json=alert(id="late", time=fired, max_lag="30"))
        await settled(daemon, first.json()["signal_id"])
        # The same signal arriving when it would now be too old: TradingView must hear "duplicate".
        resent = await client.post(URL, json=alert(id="late", time=fired, max_lag="10"))
        fresh_stale = await client.post(URL, json=alert(id="other", time=fired, max_lag="10"))
    assert first.status_code == 202
    assert resent.status_code == 200 and resent.json()["status"] == "duplicate"
    assert resent.json()["signal_id"] == first.json()["signal_id"]
    assert fresh_stale.status_code == 422 and fresh_stale.json()["error"] == "stale"
    assert len(daemon.store.orders()) == 1
