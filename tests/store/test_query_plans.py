"""The reads made per signal and by the periodic jobs find their rows by index: their cost does not grow with history.

Each read below is a real call of the code that makes it (the exit guard, the PDT rule's fill source, the
reconciler, the P&L report, the recovery feed, ...) against a store holding years of old rows; the SQL it
really sent is captured and explained. On SQLite each must be planned on the index named here (never a scan
of a history table), and the work it does must stay flat when the history grows from 1,000 to 50,000 rows
per table. On PostgreSQL (with TRADERD_TEST_POSTGRES_URL) each must read a few hundred rows at most, none
of a history table sequentially.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config.chat import AlertSettings
from daemon.chat.outbox import Outbox
from daemon.domain import Action, Intent
from daemon.events import EventBus
from daemon.exit_follow import ExitFollower
from daemon.exit_guard import ExitGuard
from daemon.history import equity_curve, recent_signals
from daemon.queries import account_period_start
from daemon.reconcile import FILL_OVERLAP, Reconciler
from daemon.risk.account_rules import pdt_window_start
from daemon.risk.wiring import build_risk_engine
from daemon.store.feed import SignalFeed
from daemon.store.repository import Store
from tests.conftest import settings_for
from tests.store.history import (
    HOT,
    LIVE_ENTRY,
    LIVE_FILLS,
    LIVE_ORDERS,
    NOW,
    QUIET,
    capture,
    seed_history,
    seed_live,
)

HISTORY_TABLES = ("signals", "orders", "fills", "violations", "account_snapshots", "outbox", "time_exits",
                  "managed_exits")
TODAY = account_period_start("today", NOW, "America/New_York", False)

Read = Callable[[Store], Any]


def _known_signal(store: Store) -> Any:
    """The webhook's dedup: a resent alert is looked up, and inserting it again changes nothing."""
    again = Intent(signal_id="s_resent", dedup_key="old8", account="acct1", action=Action.BUY, symbol="AAPL")
    assert store.signal_exists(HOT, "old8") == "s_old8"
    assert store.record_signal(again) == ("s_old8", False)


def _exit_guard(store: Store) -> Any:
    guard = ExitGuard(store=store, brokers={}, events=EventBus(), exclusive=lambda account: asyncio.Lock())
    return guard.has_exits(HOT, "AAPL")


def _pdt_fills(tmp_path: Path) -> Read:
    settings = settings_for(tmp_path, accounts={HOT: {"paper": {}, "pdt": {"mode": "legacy"}}})

    def read(store: Store) -> Any:
        rows = build_risk_engine(settings, store, lambda: NOW).describe(HOT, {})
        assert rows
        return store.fills(HOT, since=pdt_window_start(NOW))  # what the rule counted, for the row check

    return read


def _newest_fill(store: Store) -> Any:
    reconciler = Reconciler(store=store, events=EventBus(), engine=None)  # type: ignore[arg-type]
    reconciler.continue_from_store(HOT)  # where an adopted account's fill check starts
    return store.fills(HOT, limit=1)


def _adopted(store: Store) -> Any:
    """What an owner runs when it adopts an account on a shared store (and the cluster's feed re-reads)."""
    feed = SignalFeed(store)
    return feed.intents([signal_id for _, signal_id in feed.unfinished_ids([HOT])])


def _take_profit_filled(store: Store) -> Any:
    """The exit follower's question before a ladder's break-even: did this entry's take-profit fill?"""
    follower = ExitFollower(store=store, brokers={}, events=EventBus(), exclusive=lambda account: asyncio.Lock())
    assert follower._take_profit_filled(HOT, LIVE_ENTRY) is True
    return store.child_orders(HOT, LIVE_ENTRY)


def _signals_next_page(store: Store) -> Any:
    """`GET /api/signals?account=` and its next page (a cursor below the newest)."""
    first = store.signals_page(HOT, limit=100)
    assert first.next is not None
    return [*first.items, *store.signals_page(HOT, after=first.next, limit=100).items]


def _outbox(store: Store) -> Any:
    outbox = Outbox(store, {"telegram": ["1"]}, AlertSettings())
    assert outbox.pending_count() == 1
    return [*outbox.pending(limit=1), *outbox.pending("telegram", limit=200)]


# name -> (the real call, the index SQLite must plan it on, how many rows it returns at NOW)
def hot_reads(tmp_path: Path) -> dict[str, tuple[Read, str, int | None]]:
    return {
        "webhook dedup": (_known_signal, "sqlite_autoindex_signals_2", None),
        "signal by id": (lambda s: [s.get_signal("s_old8")], "sqlite_autoindex_signals_1", 1),
        "exit guard open orders": (lambda s: [_exit_guard(s)], "ix_orders_status_account", 1),
        "open orders": (lambda s: s.orders(HOT, open_only=True), "ix_orders_status_account", LIVE_ORDERS),
        "open orders page": (lambda s: s.orders_page(HOT, open_only=True).items, "ix_orders_status_account",
                             LIVE_ORDERS),
        "pdt window fills": (_pdt_fills(tmp_path), "ix_fills_account_filled_at", LIVE_FILLS),
        "reconcile newest fill": (_newest_fill, "ix_fills_account_filled_at", 1),
        "reconcile fill ids": (lambda s: s.fill_ids(HOT, NOW - timedelta(hours=2) - FILL_OVERLAP),
                               "ix_fills_account_filled_at", LIVE_FILLS),
        "pnl fills": (lambda s: s.fills_with_pnl(HOT, TODAY), "ix_fills_account_filled_at", LIVE_FILLS),
        "pnl by day": (lambda s: s.pnl_by_day(HOT, TODAY), "ix_fills_account_filled_at", 1),
        "positions": (lambda s: s.positions(HOT), "sqlite_autoindex_positions_1", 0),
        "latest snapshot": (lambda s: [s.latest_snapshot(HOT)], "ix_account_snapshots_account_as_of", 1),
        "recovery at start": (lambda s: s.unfinished_signals(), "ix_signals_status_account", 1),
        "adopted account's signals": (_adopted, "ix_signals_status_account", 1),
        "armed time exits": (lambda s: s.time_exits(armed_only=True), "ix_time_exits_status_due", 1),
        "position countdowns": (lambda s: s.time_exits(HOT), "ix_time_exits_status_due", 1),
        "managed exit rules": (lambda s: s.active_exit_rules(HOT), "ix_managed_exits_account_status", 1),
        "status page equity": (lambda s: equity_curve(s, HOT, TODAY).marks, "ix_fills_account_filled_at",
                               LIVE_FILLS),
        "status page signals": (lambda s: recent_signals(s, 15), "SCAN signals", 15),  # newest 15 by key
        "take-profit legs of an entry": (_take_profit_filled, "ix_orders_account_parent", 2),
        "signals of an account": (lambda s: s.signals_page(HOT, limit=100).items, "ix_signals_account_seq", 100),
        "signals of an account, next page": (_signals_next_page, "ix_signals_account_seq", 200),
        "signals of a quiet account": (lambda s: s.signals_page(QUIET, limit=100).items, "ix_signals_account_seq",
                                       3),
        "signals of a group": (lambda s: s.signals_page([HOT, "acct2", "@grp"], limit=100).items,
                               "ix_signals_account_seq", 100),
        "violations of an account": (lambda s: s.violations(HOT, 100), "ix_violations_account_at", 100),
        "violations": (lambda s: s.violations(None, 100), "ix_violations_at", 100),
        "alert backlog": (_outbox, "ix_outbox_status_transport", 2),
    }


READ_NAMES = sorted(hot_reads(Path()).keys())
# Reads PostgreSQL's planner must serve from the named index whatever its statistics say: without it each
# would read far more than the row budget (another cheaper path, such as the primary key walked backwards
# for an account holding a quarter of the signals, is its choice elsewhere).
PG_INDEXES = {"take-profit legs of an entry": "ix_orders_account_parent",
              "signals of a quiet account": "ix_signals_account_seq"}
BOUNDED_SCANS = {"status page signals", "violations"}  # an index read newest first, stopped by its LIMIT


def _sqlite_plan(store: Store, statement: str, parameters: Any) -> list[str]:
    with store.engine.connect() as conn:
        return [str(row[3]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()]


def _pg_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _pg_nodes(child))]


def _pg_rows_read(store: Store, statement: str, parameters: Any) -> tuple[int, list[str], set[str]]:
    """(rows the scans of the executed plan read, history tables read sequentially, indexes it scanned);
    rolled back after."""
    with store.engine.connect() as conn, conn.begin() as transaction:
        found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()
        transaction.rollback()
    scans = [node for node in _pg_nodes(found[0]["Plan"]) if "Scan" in node["Node Type"]]
    read = sum(node["Actual Rows"] * node["Actual Loops"] + node.get("Rows Removed by Filter", 0)
               + node.get("Rows Removed by Index Recheck", 0) for node in scans)
    return read, [node["Relation Name"] for node in scans
                  if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in HISTORY_TABLES], {
        str(node["Index Name"]) for node in scans if "Index Name" in node}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One SQLite store with 50,000 old rows per history table, shared by the plan checks (they only read)."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('plans')}/traderd.db")
    store.open()
    seed_history(store, 50_000)
    seed_live(store)
    yield store
    store.close()


@pytest.mark.parametrize("name", READ_NAMES)
def test_sqlite_plans_each_hot_read_on_its_index(seeded: Store, tmp_path: Path, name: str) -> None:
    read, index, rows = hot_reads(tmp_path)[name]
    with capture(seeded) as captured:
        result = read(seeded)
    if rows is not None:
        assert len(result) == rows
    assert captured.reads, "the call sent no query"
    plans = [_sqlite_plan(seeded, sql, params) for sql, params in captured.reads]
    assert any(index in line for plan in plans for line in plan), plans
    for plan in plans:
        scans = [line for line in plan if line.startswith("SCAN ") and line.split()[1] in HISTORY_TABLES]
        assert not scans or name in BOUNDED_SCANS, (scans, plans)


def test_hot_reads_cost_stays_flat_as_history_grows(tmp_path: Path) -> None:
    """The SQLite steps each read takes, with 1,000 and then 50,000 old rows per table: about the same."""
    store = Store(f"sqlite:///{tmp_path}/traderd.db")
    store.open()
    reads = hot_reads(tmp_path)
    try:
        seed_history(store, 1_000)
        seed_live(store)
        small = {}
        for name, (read, _, _) in reads.items():
            with capture(store) as captured:
                read(store)
            small[name] = captured.steps
        seed_history(store, 49_000, first=1_000)
        grown = {}
        for name, (read, _, _) in reads.items():
            with capture(store) as captured:
                read(store)
            grown[name] = captured.steps
    finally:
        store.close()
    # A scan of one table would take about 50 times the steps; a B-tree one level deeper adds a few.
    too_costly = {name: (small[name], grown[name]) for name in reads if grown[name] > 1.5 * small[name] + 200}
    assert not too_costly, too_costly
    assert all(steps > 0 for steps in small.values()), small


def test_postgres_reads_few_rows_and_no_history_table_sequentially(store_url: str, tmp_path: Path) -> None:
    """With 20,000 old rows per table (5,000 of them the account's), each read's scans touch a few rows."""
    if not store_url.startswith("postgresql"):
        pytest.skip("the SQLite plans are checked above")
    store = Store(store_url)
    store.open()
    try:
        seed_history(store, 20_000)
        seed_live(store)
        with store.engine.begin() as conn:  # the statistics autovacuum keeps on a live database
            conn.exec_driver_sql("ANALYZE")
        costly = {}
        for name, (read, _, _) in hot_reads(tmp_path).items():
            with capture(store) as captured:
                read(store)
            indexes: set[str] = set()
            for sql, params in captured.reads:
                rows, sequential, used = _pg_rows_read(store, sql, params)
                indexes |= used
                if rows > 500 or sequential:
                    costly[name] = (rows, sequential, sql)
            if name in PG_INDEXES and PG_INDEXES[name] not in indexes:
                costly[name] = (0, [], f"planned on {sorted(indexes)}, not {PG_INDEXES[name]}")
        assert not costly, costly
    finally:
        store.close()
