"""Store: lifecycle, schema and migrations, signals, exact values, controls and reports (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, func, select
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from daemon.domain import (
    AccountState,
    Side,
    SignalStatus,
    Violation,
    client_order_id,
)
from daemon.history import equity_curve
from daemon.store.database import alembic_config, normalize_url
from daemon.store.feed import SignalFeed
from daemon.store.repository import Store
from daemon.store.tables import SignalRow
from tests.store.conftest import STORE_TABLES, T0, D, fill, intent, order, run_in_threads

# -- lifecycle and schema ----------------------------------------------------------------------------------


def test_url_normalization() -> None:
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_connection_settings(tmp_path: Any) -> None:
    s = Store(f"sqlite:///{tmp_path}/a/b/traderd.db")
    s.open()
    try:
        with s.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 2000  # a 503 before TradingView gives up
    finally:
        s.close()


def test_ping_and_close(store: Store) -> None:
    assert store.ping()
    store.close()
    assert not store.ping()


def _current_revision(url: str) -> str | None:
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def test_db_created_at_0001_reopens(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        Path(str(make_url(store_url).database)).parent.mkdir(parents=True)
    engine = create_engine(normalize_url(store_url))
    with engine.begin() as conn:  # a database as the first release left it
        command.upgrade(alembic_config(conn), "0001")
    engine.dispose()
    assert _current_revision(store_url) == "0001"

    s = Store(store_url)
    s.open()
    assert s.record_signal(intent("k1")) == ("sig_k1", True)
    s.close()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _current_revision(store_url) == head

    again = Store(store_url)  # an existing database at head opens without changes
    again.open()
    assert again.signal_exists("acct1", "k1") == "sig_k1"
    assert again.record_signal(intent("k1", signal_id="other")) == ("sig_k1", False)
    again.close()


def test_migrations_match_tables(store: Store) -> None:
    metadata = MetaData()
    for name in STORE_TABLES:
        SQLModel.metadata.tables[name].to_metadata(metadata)
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diffs == []


# -- signals -----------------------------------------------------------------------------------------------


def test_record_signal_dedup(store: Store) -> None:
    assert store.record_signal(intent("k1"), raw={"ticker": "AAPL"}) == ("sig_k1", True)
    store.set_signal_status("sig_k1", SignalStatus.EXECUTED, "done")
    assert store.record_signal(intent("k1", signal_id="sig_retry")) == ("sig_k1", False)
    record = store.get_signal("sig_k1")
    assert record is not None and record.status is SignalStatus.EXECUTED and record.reason == "done"
    assert store.get_signal("sig_retry") is None
    assert store.signal_exists("acct1", "k1") == "sig_k1"
    assert store.signal_exists("acct2", "k1") is None
    assert store.record_signal(intent("k1", account="acct2", signal_id="sig_k1_acct2")) == ("sig_k1_acct2", True)
    with pytest.raises(ValueError, match="already used"):
        store.record_signal(intent("k2", signal_id="sig_k1"))


def test_unfinished_signals_in_arrival_order(store: Store) -> None:
    # received_at deliberately out of order: arrival (insert) order is what counts
    for i, key in enumerate(["a", "b", "c", "d", "e"]):
        store.record_signal(intent(key, account=f"acct{i % 2}", received_at=T0 - timedelta(minutes=i)))
    store.set_signal_status("sig_b", SignalStatus.SUBMITTING, client_order_id="tdb")
    store.set_signal_status("sig_c", SignalStatus.EXECUTED)
    store.set_signal_status("sig_d", SignalStatus.REJECTED, "too big")
    unfinished = store.unfinished_signals()
    assert [(i.signal_id, st) for i, st in unfinished] == [
        ("sig_a", SignalStatus.PENDING),
        ("sig_b", SignalStatus.SUBMITTING),
        ("sig_e", SignalStatus.PENDING),
    ]
    assert unfinished[0][0] == intent("a", account="acct0", received_at=T0)


def _every_page(store: Store, accounts: Any, limit: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = store.signals_page(accounts, after=after, limit=limit)
        pages.append([s.signal_id for s in page.items])
        if page.next is None:
            return pages
        after = page.next


def test_signal_pages_of_an_account_and_of_a_group_newest_first(store: Store) -> None:
    for i in range(12):
        store.record_signal(intent(f"k{i}", account=f"acct{i % 3}"))
    assert _every_page(store, "acct1", 2) == [["sig_k10", "sig_k7"], ["sig_k4", "sig_k1"]]
    assert _every_page(store, ["acct2", "acct0", "acct2"], 3) == [
        ["sig_k11", "sig_k9", "sig_k8"], ["sig_k6", "sig_k5", "sig_k3"], ["sig_k2", "sig_k0"]]
    assert _every_page(store, None, 5) == [[f"sig_k{i}" for i in range(11, 6, -1)],
                                           [f"sig_k{i}" for i in range(6, 1, -1)], ["sig_k1", "sig_k0"]]
    assert _every_page(store, [], 5) == [[]]
    assert SignalFeed(store).unfinished_ids(["acct0", "acct2"]) == [
        (f"acct{i % 3}", f"sig_k{i}") for i in range(12) if i % 3 != 1]


def test_status_transitions(store: Store) -> None:
    store.record_signal(intent("k1"))
    before = store.get_signal("sig_k1")
    assert before is not None and before.status is SignalStatus.PENDING and before.client_order_id is None
    coid = client_order_id("acct1", "k1")
    store.set_signal_status("sig_k1", SignalStatus.SUBMITTING, client_order_id=coid)
    store.set_signal_status("sig_k1", SignalStatus.FAILED, "broker unavailable")
    after = store.get_signal("sig_k1")
    assert after is not None
    assert (after.status, after.reason, after.client_order_id) == (SignalStatus.FAILED, "broker unavailable", coid)
    assert after.updated_at >= before.updated_at and after.received_at == before.received_at
    assert after.intent == intent("k1", received_at=before.intent.received_at)
    with pytest.raises(KeyError):
        store.set_signal_status("nope", SignalStatus.EXECUTED)


def test_record_signal_concurrent_same_key(store_url: str) -> None:
    """Two writers (separate engines, like two processes) racing on the same keys leave one row per key."""
    stores = [Store(store_url), Store(store_url)]
    for s in stores:
        s.open()
    try:
        for k in range(10):

            def race(i: int, key: str = f"k{k}") -> tuple[str, bool]:
                return stores[i].record_signal(intent(key, signal_id=f"{key}_{i}"))

            results = run_in_threads(2, race)
            assert sorted(new for _, new in results) == [False, True]
            assert results[0][0] == results[1][0]
        with stores[0].engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(SignalRow)).scalar() == 10
    finally:
        for s in stores:
            s.close()


# -- exact values ------------------------------------------------------------------------------------------


EXACT = [D("0.1"), D("1.50"), D("-0.0000000001"), D("123456789012345.1234567890123"), D("1E-12"), D("100")]


def test_exact_decimal_round_trip(store: Store) -> None:
    for n, value in enumerate(EXACT):
        store.upsert_order(order(f"b{n}", f"c{n}", quantity=value, limit_price=value, average_fill_price=value))
        store.record_fill(fill(f"f{n}", Side.BUY, "1", str(abs(value)), symbol=f"S{n}", commission=value))
        store.set_position("acct9", f"S{n}", value, value)
    for n, value in enumerate(EXACT):
        o = store.order_by_client_id("acct1", f"c{n}")
        assert o is not None
        assert str(o.quantity) == str(o.limit_price) == str(o.average_fill_price) == str(value)
    fills = {f.fill_id: f for f in store.fills()}
    for n, value in enumerate(EXACT):
        assert str(fills[f"f{n}"].commission) == str(value) and str(fills[f"f{n}"].price) == str(abs(value))
    positions = {p.symbol: p for p in store.positions("acct9")}
    for n, value in enumerate(EXACT):
        assert str(positions[f"S{n}"].quantity) == str(value)
    state = AccountState(account="acct1", broker="paper", cash=D("100000.00"), equity=EXACT[3], fees=D("1.50"))
    store.record_snapshot(state)
    assert store.latest_snapshot("acct1") == state


def test_datetimes_come_back_aware_utc(store: Store) -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2024, 7, 1, 9, 15, 30, 123456, tzinfo=india)
    store.record_signal(intent("k1", received_at=at, expires_at=at + timedelta(minutes=5)))
    store.upsert_order(order("b1", "c1", created_at=at, updated_at=at))
    store.record_fill(fill("f1", Side.BUY, "1", "1", filled_at=at))
    store.record_violation(Violation(account="acct1", rule="r", detail="d", at=at))
    record = store.get_signal("sig_k1")
    assert record is not None
    got = store.order_by_client_id("acct1", "c1")
    assert got is not None
    values = [record.received_at, record.updated_at, got.created_at, got.updated_at]
    store.audit("me", "test")
    values += [store.fills()[0].filled_at, store.violations()[0].at, store.audit_log()[0].at]
    for value in values:
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert record.received_at == at and got.created_at == at and store.fills()[0].filled_at == at
    assert store.fills(since=at) and not store.fills(since=at + timedelta(microseconds=1))


# -- controls, audit, violations, snapshots, reports -------------------------------------------------------


def test_controls(store: Store) -> None:
    assert store.controls() == {}
    store.set_control("acct1", paused=True, reason="lunch", by="tg:42")
    store.set_control("acct1", locked=True, reason="daily loss limit", by="risk")
    store.set_control("acct1", paused=False, by="tg:42")  # still locked: the reason stays
    c = store.controls()["acct1"]
    assert (c.paused, c.locked, c.reason, c.updated_by) == (False, True, "daily loss limit", "tg:42")
    assert c.updated_at.tzinfo is not None
    store.set_control("acct1", locked=False, by="cli")  # nothing held any more: reason cleared
    store.set_control("acct2", paused=True, by="api")
    controls = store.controls()
    assert (controls["acct1"].locked, controls["acct1"].reason) == (False, None)
    assert controls["acct2"].paused and not controls["acct2"].locked


def test_audit_log(store: Store) -> None:
    store.audit("tg:42", "pause", "acct1")
    store.audit("discord:7", "flatten", "all", "request r1", ok=False)
    store.audit("cli", "resume")
    entries = store.audit_log()
    assert [(e.actor, e.action, e.target, e.ok) for e in entries] == [
        ("cli", "resume", None, True),
        ("discord:7", "flatten", "all", False),
        ("tg:42", "pause", "acct1", True),
    ]
    assert entries[1].detail == "request r1" and entries[0].at >= entries[1].at
    assert len(store.audit_log(limit=2)) == 2


def test_violations_and_snapshots(store: Store) -> None:
    v1 = Violation(account="acct1", rule="max_qty", detail="10 > 5", numbers={"limit": "5"}, at=T0, symbol="AAPL")
    v2 = Violation(account="acct2", rule="pdt", detail="4th day trade", at=T0 + timedelta(seconds=1))
    store.record_violation(v1)
    store.record_violation(v2)
    assert store.violations() == [v2, v1]
    assert store.violations("acct1") == [v1]
    assert store.violations(limit=1) == [v2]
    assert store.latest_snapshot("acct1") is None
    old = AccountState(account="acct1", broker="paper", cash=D(1), equity=D(1), as_of=T0)
    new = AccountState(account="acct1", broker="paper", cash=D(2), equity=D(2), as_of=T0 + timedelta(hours=1))
    store.record_snapshot(new)
    store.record_snapshot(old)  # recorded later but older: as_of decides
    assert store.latest_snapshot("acct1") == new


def test_equity_curve_of_a_past_window_below_many_later_fills(store: Store) -> None:
    """The chart of an earlier day keeps its fills however many came after the day it ends on."""
    day_end = T0 + timedelta(hours=1)
    store.record_fill(fill("early-buy", Side.BUY, "1", "100", filled_at=T0))
    store.record_fill(fill("early-sell", Side.SELL, "1", "101", filled_at=T0 + timedelta(minutes=30)))
    for n in range(600):
        side = Side.BUY if n % 2 == 0 else Side.SELL
        store.record_fill(fill(f"late{n}", side, "1", "100", filled_at=day_end + timedelta(minutes=n + 1)))
    curve = equity_curve(store, "acct1", T0 - timedelta(hours=1), until=day_end)
    assert [(m.at, m.side) for m in curve.marks] == [(T0, "buy"), (T0 + timedelta(minutes=30), "sell")]
    assert len(equity_curve(store, "acct1", T0 - timedelta(hours=1)).marks) == 500  # the newest, for the chart


def test_pnl_by_day_across_local_midnight(store: Store) -> None:
    # 2024-03-05 04:30 UTC is 23:30 on the 4th in New York (EST, UTC-5); 05:30 UTC is 00:30 on the 5th
    before = datetime(2024, 3, 5, 4, 30, tzinfo=UTC)
    after = datetime(2024, 3, 5, 5, 30, tzinfo=UTC)
    store.record_fill(fill("f1", Side.BUY, "2", "100", filled_at=before - timedelta(hours=2), commission=D("1")))
    store.record_fill(fill("f2", Side.SELL, "1", "103", filled_at=before, commission=D("0.50")))
    store.record_fill(fill("f3", Side.SELL, "1", "98", filled_at=after, commission=D("0.50")))
    store.record_fill(fill("g1", Side.SELL, "1", "10", account="acct2", filled_at=after))
    days = store.pnl_by_day(None, datetime(2024, 3, 1, tzinfo=UTC))
    assert [(d.day, d.account, d.realized, d.fees, d.fills) for d in days] == [
        (date(2024, 3, 4), "acct1", D("3"), D("1.50"), 2),
        (date(2024, 3, 5), "acct1", D("-2"), D("0.50"), 1),
        (date(2024, 3, 5), "acct2", D("0"), D("0"), 1),
    ]
    assert days[0].net == D("1.50")
    utc_days = store.pnl_by_day("acct1", datetime(2024, 3, 1, tzinfo=UTC), tz="UTC")
    assert [(d.day, d.fills) for d in utc_days] == [(date(2024, 3, 5), 3)]
    assert store.pnl_by_day("acct1", after + timedelta(seconds=1)) == []
