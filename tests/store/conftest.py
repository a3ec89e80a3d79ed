"""Store test fixtures: the same suite on SQLite and, when TRADERD_TEST_POSTGRES_URL is set, PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from daemon.domain import (
    Action,
    Fill,
    Intent,
    Order,
    OrderStatus,
    OrderType,
    Side,
)
from daemon.store.database import normalize_url
from daemon.store.repository import Store

D = Decimal
PG_URL = os.environ.get("TRADERD_TEST_POSTGRES_URL", "")
T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
STORE_TABLES = {
    "kv_state",
    "managed_exits",
    "signals",
    "orders",
    "fills",
    "positions",
    "account_snapshots",
    "violations",
    "audit_log",
    "account_controls",
    "outbox",
    "leases",
    "time_exits",
}


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not PG_URL, reason="PostgreSQL store tests need TRADERD_TEST_POSTGRES_URL (see .ci/run)"
                ),
            ],
        ),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A fresh, empty database: a SQLite file under tmp_path, or a new PostgreSQL schema per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state/traderd.db"  # the state/ directory does not exist yet
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(normalize_url(PG_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(normalize_url(PG_URL)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.open()
    yield s
    s.close()


def intent(key: str, account: str = "acct1", signal_id: str | None = None, **kw: Any) -> Intent:
    fields: dict[str, Any] = {"action": Action.BUY, "symbol": "AAPL", "quantity": D("10")} | kw
    return Intent(signal_id=signal_id or f"sig_{key}", dedup_key=key, account=account, **fields)


def order(broker_id: str, coid: str, account: str = "acct1", **kw: Any) -> Order:
    fields: dict[str, Any] = {
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": D("10"),
        "order_type": OrderType.MARKET,
        "status": OrderStatus.NEW,
    } | kw
    return Order(broker_order_id=broker_id, client_order_id=coid, account=account, **fields)


def fill(fill_id: str, side: Side, qty: str, price: str, **kw: Any) -> Fill:
    fields: dict[str, Any] = {
        "broker_order_id": "b1",
        "client_order_id": "c1",
        "account": "acct1",
        "symbol": "AAPL",
        "filled_at": T0,
    } | kw
    return Fill(fill_id=fill_id, side=side, quantity=D(qty), price=D(price), **fields)


def run_in_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results
