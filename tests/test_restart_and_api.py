"""Restart with pending signals, the control API and its auth, pause/resume/flatten, health and metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokers.paper.broker import PaperBroker
from daemon.domain import Action, Intent, OrderRequest, Side, SignalStatus, client_order_id
from daemon.store.repository import Store
from tests.conftest import SECRET, alert, client_for, settled

URL = f"/webhook/tradingview/{SECRET}"


def intent(n: int, *, received: datetime, lag: float = 60, **fields: object) -> Intent:
    base: dict[str, object] = {
        "signal_id": f"sig_restart{n}", "dedup_key": f"id:restart{n}", "account": "paper", "action": Action.BUY,
        "symbol": "AAPL", "quantity": Decimal(1), "price": Decimal(100), "received_at": received,
        "expires_at": received + timedelta(seconds=lag),
    }
    base.update(fields)
    return Intent(**base)  # type: ignore[arg-type]


async def test_restart_runs_pending_expires_stale_and_finds_submitted(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    now = datetime.now(UTC)
    # The daemon "crashed" after committing these signals and before executing them.
    store = Store(settings.database_url)
    store.open()
    store.record_signal(intent(1, received=now))
    store.record_signal(intent(2, received=now - timedelta(minutes=10)))
    submitted = intent(3, received=now, quantity=Decimal(2))
    store.record_signal(submitted)
    coid = client_order_id("paper", submitted.dedup_key)
    store.set_signal_status(submitted.signal_id, SignalStatus.SUBMITTING, client_order_id=coid)
    store.close()
    # ...and the order of signal 3 had reached the broker before the crash.
    broker = PaperBroker("paper", settings.accounts["paper"].section("paper"),
                         settings.daemon.state_dir / "paper" / "paper.json")
    await broker.connect()
    await broker.place_order(OrderRequest(client_order_id=coid, account="paper", symbol="AAPL", side=Side.BUY,
                                          quantity=Decimal(2), reference_price=Decimal(100)))
    await broker.close()

    daemon = await start_daemon(settings)
    first = await settled(daemon, "sig_restart1")
    stale = await settled(daemon, "sig_restart2")
    found = await settled(daemon, "sig_restart3")
    assert first.status is SignalStatus.EXECUTED
    assert stale.status is SignalStatus.EXPIRED and "expired" in stale.reason
    assert found.status is SignalStatus.EXECUTED and "found at the broker" in found.reason
    positions = await daemon.brokers["paper"].positions()
    assert [(p.symbol, p.quantity) for p in positions] == [("AAPL", Decimal(3))]  # 1 + 2, nothing doubled
    assert len(await daemon.brokers["paper"].fills()) == 2
    # Reconciliation at start-up recorded the fill the store had missed.
    assert sorted(f.quantity for f in daemon.store.fills("paper")) == [Decimal(1), Decimal(2)]


async def test_state_survives_restart(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    daemon = await start_daemon(settings)
    async with client_for(daemon) as client:
        accepted = await client.post(URL, json=alert(id="keep", quantity="7"))
        await settled(daemon, accepted.json()["signal_id"])
        await client.post("/api/pause", json={"account": "paper"})
    await daemon.stop()
    again = await start_daemon(settings)
    async with client_for(again) as client:
        duplicate = await client.post(URL, json=alert(id="keep", quantity="7"))
        positions = (await client.get("/api/positions")).json()["positions"]
        status = (await client.get("/api/status")).json()
    assert duplicate.status_code == 200
    assert [(p["symbol"], p["quantity"]) for p in positions] == [("AAPL", "7")]
    assert status["accounts"][0]["paused"] is True
    assert again.secret == daemon.secret == SECRET


async def test_generated_secret_is_stable(make_settings, start_daemon) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(webhook={"secret": None})
    first = await start_daemon(settings)
    token = first.webhook_url().rsplit("/", 1)[1]
    await first.stop()
    second = await start_daemon(settings)
    assert second.webhook_url().rsplit("/", 1)[1] == token == second.secret and len(token) >= 24
    assert (settings.daemon.state_dir / "webhook_secret").stat().st_mode & 0o777 == 0o600


async def test_api_requires_bearer_token(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(api={"token": "api-token-xyz"})
    async with client_for(daemon) as anonymous, client_for(daemon, "api-token-xyz") as authorised, \
            client_for(daemon, "wrong") as wrong:
        for path in ("/api/status", "/api/positions", "/api/orders", "/api/fills", "/api/pnl", "/api/accounts"):
            assert (await anonymous.get(path)).status_code == 401
            assert (await wrong.get(path)).status_code == 401
            assert (await authorised.get(path)).status_code == 200, path
        assert (await anonymous.post("/api/flatten", json={"account": "all"})).status_code == 401
        # Webhooks, health and metrics do not use the API token.
        assert (await anonymous.post(URL, json=alert(id="tok"))).status_code == 202
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/metrics")).status_code == 200
    assert daemon.store.audit_log() == []  # refused control calls did nothing


async def test_pause_blocks_entries_but_not_exits(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        await settled(daemon, (await client.post(URL, json=alert(id="p1"))).json()["signal_id"])
        assert (await client.post("/api/pause", json={"account": "paper", "actor": "test"})).json() == {
            "paused": ["paper"]}
        blocked = await settled(daemon, (await client.post(URL, json=alert(id="p2"))).json()["signal_id"])
        partial = await client.post(URL, json={"ticker": "AAPL", "action": "sell", "quantity": "4", "price": "100",
                                               "id": "p3"})
        reduced = await settled(daemon, partial.json()["signal_id"])
        await client.post("/api/resume", json={"account": "all"})
        resumed = await settled(daemon, (await client.post(URL, json=alert(id="p4"))).json()["signal_id"])
        bad = await client.post("/api/pause", json={"account": "nope"})
    assert blocked.status is SignalStatus.REJECTED and "paused" in blocked.reason
    assert reduced.status is SignalStatus.EXECUTED
    assert resumed.status is SignalStatus.EXECUTED
    assert bad.status_code == 404 and bad.json()["error"] == "unknown_account"
    assert [p.quantity for p in await daemon.brokers["paper"].positions()] == [Decimal(16)]
    assert [e.action for e in reversed(daemon.store.audit_log())] == ["pause", "resume"]


async def test_flatten_through_api_is_reported_and_idempotent(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={"other": {}})
    async with client_for(daemon) as client:
        for n, (ticker, account) in enumerate([("AAPL", "paper"), ("MSFT", "paper"), ("TSLA", "other")]):
            body = alert(id=f"f{n}", ticker=ticker, account=account)
            await settled(daemon, (await client.post(URL, json=body)).json()["signal_id"])
        limit = alert(id="f9", order_type="limit", limit_price="90", account="paper")
        await settled(daemon, (await client.post(URL, json=limit)).json()["signal_id"])
        result = (await client.post("/api/flatten", json={"account": "all", "request_id": "r1"})).json()
        again = (await client.post("/api/flatten", json={"account": "all", "request_id": "r1"})).json()
        pnl = (await client.get("/api/pnl", params={"period": "today"})).json()
    by_account = {r["signal_id"]: r for r in result["results"]}
    assert all(r["status"] == "executed" for r in by_account.values())
    paper = by_account["flat_r1_paper"]
    assert len(paper["report"]["cancelled"]) == 1 and len(paper["report"]["closing"]) == 2
    assert "1 orders cancelled" in paper["detail"] and "AAPL sell 10 @ 100" in paper["detail"]
    assert [r["status"] for r in again["results"]] == ["executed", "executed"]
    for name in ("paper", "other"):
        assert await daemon.brokers[name].positions() == []
        assert await daemon.brokers[name].open_orders() == []
    assert len([o for o in daemon.store.orders() if o.client_order_id.startswith("close")]) == 3
    assert pnl["total"]["realized"] == "0.00" and sum(a["fills"] for a in pnl["accounts"]) == 6


async def test_health_and_metrics(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        await client.post(URL, json=alert(id="m1"))
        await client.post(URL, json=alert(id="m1"))
        await client.post(URL, content=b"nope", headers={"Content-Type": "application/json"})
        await settled(daemon, daemon.store.signal_exists("paper", "id:m1"))
        health = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text
    assert health.status_code == 200 and health.json()["ready"] is True
    assert health.json()["checks"]["broker:paper"] is True
    assert 'traderd_webhooks_total{outcome="accepted"} 1.0' in metrics
    assert 'traderd_webhooks_total{outcome="duplicate"} 1.0' in metrics
    assert 'traderd_webhooks_total{outcome="bad_json"} 1.0' in metrics
    assert 'traderd_fills_total{account="paper"} 1.0' in metrics
    assert "traderd_webhook_ack_seconds_bucket" in metrics
    assert 'traderd_orders_total{account="paper",status="filled"} 1.0' in metrics


async def test_api_bad_queries(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        assert (await client.get("/api/pnl", params={"period": "year"})).status_code == 400
        assert (await client.get("/api/orders", params={"limit": "-1"})).status_code == 400
        assert (await client.get("/api/positions", params={"account": "ghost"})).status_code == 404
        assert (await client.get("/api/signals/sig_missing")).status_code == 404
        assert (await client.post("/api/flatten", content=b"{", headers={"Content-Type": "application/json"})
                ).status_code == 400
    assert daemon.store.audit_log() == []


async def test_risk_endpoint_and_lock_reset(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon(accounts={
        "paper": {"risk": {"max_position": "50", "max_order_quantity": "20"}},
        "topstep": {"funded": {"preset": "topstep_50k_combine"},
                    "paper": {"starting_cash": "50000", "multipliers": {"ES": "50"}}},
    })
    async with client_for(daemon) as client:
        body = alert(id="rk1", account="paper", quantity="10")
        await settled(daemon, (await client.post(URL, json=body)).json()["signal_id"])
        risk = (await client.get("/api/risk")).json()["accounts"]
        only = (await client.get("/api/risk", params={"account": "topstep"})).json()["accounts"]
        reset = await client.post("/api/risk/reset", json={"account": "topstep", "actor": "ops"})
        no_rules = await client.post("/api/risk/reset", json={"account": "paper"})
        everyone = await client.post("/api/risk/reset", json={"account": "all"})
    paper = {row["name"]: row for row in risk[0]["limits"]}
    assert paper["max_position"]["used"].startswith("10") and paper["max_position"]["left"].startswith("40")
    assert "max_order_quantity" in paper and "funded" not in risk[0]
    assert [a["account"] for a in only] == ["topstep"]
    names = {row["name"] for row in only[0]["limits"]}
    assert {"daily_loss_limit", "max_loss"} <= names and only[0]["funded"]
    assert reset.status_code == 200 and reset.json()["account"] == "topstep"
    assert no_rules.status_code == 404 and everyone.status_code == 400
    assert [e.action for e in daemon.store.audit_log()][:1] == ["reset_lock"] or daemon.store.audit_log()


async def test_periodic_reconciliation_records_and_announces_missed_fills(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    broker = daemon.brokers["paper"]
    heard: list[object] = []

    async def lost(report: object) -> None:  # the report never reaches the engine (e.g. a dropped stream)
        heard.append(report)

    broker.set_report_handler(lost)
    await broker.place_order(OrderRequest(client_order_id="manual-1", account="paper", symbol="MSFT", side=Side.BUY,
                                          quantity=Decimal(3), reference_price=Decimal(400)))
    broker.set_report_handler(daemon.engine.report_handler("paper"))
    assert heard and daemon.store.fills("paper") == []
    await daemon.reconcile_all()
    await daemon.reconcile_all()  # a second pass finds nothing new and announces nothing twice
    assert [(f.symbol, f.quantity) for f in daemon.store.fills("paper")] == [("MSFT", Decimal(3))]
    assert [(p.symbol, p.quantity) for p in daemon.store.positions("paper")] == [("MSFT", Decimal(3))]
    fills = [e for e in daemon.events.recent if e.kind == "fill"]
    assert len(fills) == 1 and "MSFT" in fills[0].summary
