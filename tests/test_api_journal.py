"""The API at scale and the trade journal: OpenAPI description, cursor paging, the indexed signal lookup,
`traderd export` and /api/fills.csv, through the real daemon, the real store and the real CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from openapi_spec_validator import validate
from sqlalchemy import create_engine, event, text

from daemon.domain import Action, Fill, Intent, Order, OrderStatus, OrderType, Side, SignalStatus, client_order_id
from daemon.store.database import alembic_config
from daemon.store.repository import Store
from tests.conftest import SECRET, alert, client_for, settled
from tests.openapi_check import check

URL = f"/webhook/tradingview/{SECRET}"
T0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
TRADENOTE = ["Account", "T/D", "S/D", "Currency", "Type", "Side", "Symbol", "Qty", "Price", "Exec Time", "Comm",
             "SEC", "TAF", "NSCC", "Nasdaq", "ECN Remove", "ECN Add", "Gross Proceeds", "Net Proceeds",
             "Clr Broker", "Liq", "Note"]


def order(n: int, account: str = "paper", coid: str | None = None, **extra: Any) -> Order:
    values: dict[str, Any] = dict(broker_order_id=f"b{n}", client_order_id=coid or f"c{n}", account=account,
                                  symbol="AAPL", side=Side.BUY, quantity=Decimal(1), order_type=OrderType.MARKET,
                                  status=OrderStatus.FILLED, created_at=T0 + timedelta(seconds=n // 3))
    return Order(**(values | extra))


def fill(n: int, side: Side, quantity: str, price: str, at: datetime, commission: str = "1", symbol: str = "AAPL",
         account: str = "paper") -> Fill:
    return Fill(fill_id=f"f{n}", broker_order_id=f"b{n}", client_order_id=f"c{n}", account=account, symbol=symbol,
                side=side, quantity=Decimal(quantity), price=Decimal(price), commission=Decimal(commission),
                filled_at=at)


async def export(*cmd: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60,
                                   cwd=Path(__file__).parent.parent)


async def walk(client: httpx.AsyncClient, path: str, key: str) -> tuple[list[dict[str, Any]], int]:
    """Every item of a paged list, following `next`; and how many pages it took."""
    items, pages, link = [], 0, path
    while link is not None:
        answer = await client.get(link)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items += body[key]
        pages += 1
        link = body["next"]
        assert pages < 100
    return items, pages


async def test_openapi_document_is_served_valid_and_describes_every_route(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    async with client_for(daemon) as client:
        served = (await client.get("/api/openapi.json")).json()
    validate(served)  # a valid OpenAPI 3.1 document
    assert served["openapi"] == "3.1.0"
    routes = {resource.canonical for resource in daemon.web_app().router.resources()}
    described = {path for path in served["paths"]}
    missing = {r for r in routes if r.startswith(("/api/", "/healthz", "/webhook/"))} - described
    assert not missing, f"routes without a description: {sorted(missing)}"
    assert "401" in served["paths"]["/api/orders"]["get"]["responses"]


def test_an_answer_outside_the_description_fails_the_check() -> None:
    request = httpx.Request("GET", "http://127.0.0.1:1/api/orders")
    with pytest.raises(AssertionError, match="outside the OpenAPI description"):
        check(httpx.Response(200, json={"orders": [{"symbol": 5}], "next": None}, request=request))
    with pytest.raises(AssertionError, match="outside the OpenAPI description"):
        check(httpx.Response(418, json={"error": "teapot", "detail": "no"}, request=request))
    check(httpx.Response(200, json={"orders": [], "next": None}, request=request))


async def test_orders_fills_and_signals_page_past_the_old_caps(start_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await start_daemon()
    store: Store = daemon.store
    for n in range(1203):  # ties on created_at (3 per second) must not lose or repeat a row
        store.upsert_order(order(n))
    for n in range(5004):
        store.record_fill(fill(n, Side.BUY if n % 2 == 0 else Side.SELL, "1", "100", T0 + timedelta(seconds=n // 2)))
    for n in range(1002):
        store.record_signal(Intent(signal_id=f"sig{n}", dedup_key=f"k{n}", account="paper", action=Action.BUY,
                                   symbol="AAPL", quantity=Decimal(1)))
    async with client_for(daemon) as client:
        orders, pages = await walk(client, "/api/orders?limit=1000", "orders")
        assert len(orders) == 1203 and pages == 2
        assert len({o["broker_order_id"] for o in orders}) == 1203
        keys = [(o["created_at"], int(o["broker_order_id"][1:])) for o in orders]
        assert keys == sorted(keys, key=lambda k: (k[0], k[1]), reverse=True)  # newest first, ties by arrival
        fills, pages = await walk(client, "/api/fills?limit=5000", "fills")
        assert len({f["fill_id"] for f in fills}) == 5004 and pages == 2
        small, pages = await walk(client, "/api/fills?limit=97&since=2026-11-02T15:00:10Z", "fills")
        assert len(small) == 2 * (5004 // 2 - 10) and pages == -(-len(small) // 97)
        signals, pages = await walk(client, "/api/signals?limit=500&account=paper", "signals")
        assert [s["signal_id"] for s in signals] == [f"sig{n}" for n in reversed(range(1002))] and pages == 3
        first = (await client.get("/api/orders?limit=2")).json()
        assert first["next"].startswith("/api/orders?") and "limit=2" in first["next"]
        bad = await client.get("/api/orders?after=bm90LWEtY3Vyc29y")
        assert bad.status_code == 400 and bad.json()["error"] == "bad_query"
        crossed = await client.get(f"/api/signals?after={first['next'].split('after=')[1]}")
        assert crossed.status_code == 400


def _order_plans(store: Store, run: Any) -> list[str]:
    """EXPLAIN QUERY PLAN of every statement on `orders` that `run()` issues."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM orders" in statement and statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(store.engine, "before_cursor_execute", record)
    plans = []
    with store.engine.connect() as conn:
        for statement, parameters in seen:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            plans.append(" / ".join(str(row[-1]) for row in rows))
    return plans


def _signal_with_legs(store: Store, n: int, account: str = "paper") -> str:
    intent = Intent(signal_id=f"s{n}", dedup_key=f"k{n}", account=account, action=Action.BUY, symbol="AAPL",
                    quantity=Decimal(1))
    store.record_signal(intent)
    coid = client_order_id(account, intent.dedup_key)
    entry = order(3 * n, account, coid)
    legs = [order(3 * n + i, account, coid + leg, side=Side.SELL, status=OrderStatus.NEW,
                  parent_order_id=entry.broker_order_id) for i, leg in ((1, "-tp"), (2, "-sl"))]
    store.finish_signal(intent.signal_id, SignalStatus.EXECUTED, None, entry, reports=legs)
    return intent.signal_id


def test_signal_lookup_finds_legs_by_index_not_by_scan(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/s.sqlite3")
    store.open()
    ids = [_signal_with_legs(store, n) for n in range(50)]
    _signal_with_legs(store, 50, account="other")  # same dedup key space, other account: not mixed in
    records: list[Any] = []
    plans = _order_plans(store, lambda: records.append(store.get_signal(ids[7])))
    assert {o.client_order_id[32:] for o in records[0].orders} == {"", "-tp", "-sl"}
    assert plans and all("SCAN orders" not in plan for plan in plans), plans
    assert any("ix_orders_account_root" in plan for plan in plans), plans
    store.close()


def test_migration_backfills_the_root_of_existing_orders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0003")
        coid = client_order_id("paper", "k1")
        for i, (cid, sid) in enumerate([(coid, "s1"), (coid + "-tp", None), ("close-AAPL-3", None)]):
            conn.execute(text(
                "INSERT INTO orders (account, broker_order_id, client_order_id, signal_id, symbol, side, quantity,"
                " order_type, status, filled_quantity, time_in_force, created_at, updated_at) VALUES ('paper', :b,"
                " :c, :s, 'AAPL', 'buy', '1', 'market', 'filled', '1', 'day', :t, :t)"), {"b": f"b{i}", "c": cid,
                                                                                        "s": sid, "t": T0})
        conn.execute(text(
            "INSERT INTO signals (signal_id, account, dedup_key, source, status, intent_json, received_at,"
            " updated_at, client_order_id) VALUES ('s1', 'paper', 'k1', 'api', 'executed', :i, :t, :t, :c)"),
            {"i": Intent(signal_id="s1", dedup_key="k1", account="paper", action=Action.BUY, symbol="AAPL",
                         quantity=Decimal(1)).model_dump_json(), "t": T0, "c": coid})
    engine.dispose()
    store = Store(url)
    store.open()  # migrates to head
    with store.engine.connect() as conn:
        roots = dict(conn.execute(text("SELECT broker_order_id, client_order_root FROM orders")).all())
    assert roots == {"b0": coid, "b1": coid, "b2": "close-AAPL-3"}
    record = store.get_signal("s1")
    assert record is not None and sorted(o.broker_order_id for o in record.orders) == ["b0", "b1"]
    store.close()


def test_round_trips_label_flips_and_split_fees(tmp_path: Path) -> None:
    from daemon.store import journal

    store = Store(f"sqlite:///{tmp_path}/j.sqlite3")
    store.open()
    store.record_fill(fill(1, Side.BUY, "10", "100", T0, "1"))
    store.record_fill(fill(2, Side.BUY, "10", "110", T0 + timedelta(minutes=1), "1"))  # avg 105
    store.record_fill(fill(3, Side.SELL, "30", "120", T0 + timedelta(minutes=5), "3"))  # close 20, short 10
    store.record_fill(fill(4, Side.BUY, "10", "115", T0 + timedelta(minutes=9), "1"))  # cover
    store.record_fill(fill(5, Side.BUY, "2", "4000", T0, "2", symbol="ES"), Decimal(50))  # still open
    executions, trips = journal.replay(store.journal_fills("paper"))
    assert [(e.fill.fill_id, e.label, e.quantity, e.commission) for e in executions if e.fill.symbol == "AAPL"] == [
        ("f1", "B", 10, 1), ("f2", "B", 10, 1), ("f3", "S", 20, 2), ("f3", "SS", 10, 1), ("f4", "BC", 10, 1)]
    rows = [t.row(journal.ZoneInfo("America/New_York")) for t in trips]
    long, short, still_open = rows
    assert long | {} == long and (long["side"], long["quantity"], long["entry_price"], long["exit_price"]) == (
        "long", "20", "105", "120")
    assert (long["gross_pnl"], long["fees"], long["net_pnl"], long["duration_seconds"]) == ("300.00", "4.00",
                                                                                             "296.00", 300)
    assert (short["side"], short["entry_price"], short["exit_price"], short["gross_pnl"], short["fees"]) == (
        "short", "120", "115", "50.00", "2.00")
    assert short["duration_seconds"] == 240 and short["entry_time"] == "2026-11-02T10:05:00-05:00"
    assert still_open["symbol"] == "ES" and still_open["exit_time"] is None and still_open["net_pnl"] == "-2.00"
    store.close()


async def test_fills_csv_and_cli_export_of_a_webhook_round_trip(start_daemon, make_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(accounts={"paper": {"paper": {"commission_per_unit": "0.5"}}})
    daemon = await start_daemon(settings)
    async with client_for(daemon) as client:
        for n, (action, price) in enumerate([("buy", "100"), ("sell", "110")]):
            answer = await client.post(URL, json=alert(id=f"rt{n}", action=action, quantity="10", price=price))
            await settled(daemon, answer.json()["signal_id"])
        answer = await client.get("/api/fills.csv?account=paper")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(answer.text)))
        assert rows[0] == TRADENOTE
        assert [(r[5], r[6], r[7], r[8], r[10], r[17], r[18]) for r in rows[1:]] == [
            ("B", "AAPL", "10", "100", "5.00", "-1000.00", "-1005.00"),
            ("S", "AAPL", "10", "110", "5.00", "1100.00", "1095.00")]
        assert all(re.fullmatch(r"\d\d/\d\d/\d{4}", r[1]) and re.fullmatch(r"\d\d:\d\d:\d\d", r[9])
                   for r in rows[1:])
        assert (await client.get("/api/fills.csv?since=yesterday")).status_code == 400
    await daemon.stop()  # the CLI reads the store on its own, as an operator would after hours
    config = tmp_path / "traderd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{settings.daemon.state_dir}"\n'
                      '[accounts.paper]\nbroker = "paper"\n')
    cmd = [sys.executable, "-m", "daemon.cli", "export", "trades", "--config", str(config), "--since",
           "2000-01-01", "--format", "json", "--account", "paper"]
    done = await export(*cmd)
    assert done.returncode == 0, done.stderr
    (trade,) = json.loads(done.stdout)["trades"]
    assert (trade["side"], trade["quantity"], trade["entry_price"], trade["exit_price"]) == ("long", "10", "100",
                                                                                            "110")
    assert (trade["gross_pnl"], trade["fees"], trade["net_pnl"], trade["fills"]) == ("100.00", "10.00", "90.00", 2)
    done = await export(*cmd[:4], "fills", *cmd[5:10], "csv")
    assert done.returncode == 0 and done.stdout.splitlines()[0].split(",") == TRADENOTE, done.stderr
    bad = await export(*cmd[:8], "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr
