"""The prepared-statement write path: what it stores equals what SQLAlchemy reads back, accepted signals are
committed durably and the rest not, and a connection lost under it is replaced (the write is retried)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from daemon.domain import OrderStatus, Side, SignalStatus
from daemon.store.repository import Store
from daemon.store.retry import is_transient
from tests.store.conftest import T0, D, fill, intent, order


def test_a_signal_written_by_prepared_statements_reads_back_exactly(store: Store) -> None:
    signal_id, new = store.record_signal(intent("exact"))
    placed = order("b1", "c1", status=OrderStatus.FILLED, filled_quantity=D("1.50"), average_fill_price=D("187.0500"),
                   created_at=T0)
    realized = store.finish_signal(signal_id, SignalStatus.EXECUTED, None, placed,
                                   fills=[(fill("f1", Side.BUY, "1.50", "187.0500"), D("1"))])
    record = store.get_signal(signal_id)
    assert new and realized == [D("0")]
    assert record is not None and record.status is SignalStatus.EXECUTED
    assert [(o.broker_order_id, o.filled_quantity, o.average_fill_price, o.created_at) for o in record.orders] == [
        ("b1", D("1.50"), D("187.0500"), T0)]
    assert str(record.orders[0].average_fill_price) == "187.0500"  # exact text, as the ORM stores it
    assert record.orders[0].created_at.tzinfo is not None
    assert [(f.fill_id, f.quantity, f.price) for f in record.fills] == [("f1", D("1.50"), D("187.0500"))]
    [position] = store.positions("acct1")
    assert (position.quantity, position.average_price) == (D("1.50"), D("187.0500"))


def test_a_known_fill_on_a_new_symbol_leaves_no_ledger_row(store: Store) -> None:
    assert store.record_fill(fill("f1", Side.BUY, "2", "10", symbol="MSFT")) == D("0")
    with store._prepared_write() as conn:  # the ledger row goes, as if a later edit had removed it
        conn._raw.execute("DELETE FROM positions WHERE symbol = 'MSFT'")
    assert store.record_fill(fill("f1", Side.BUY, "2", "10", symbol="MSFT")) is None
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM positions WHERE symbol = 'MSFT'")).scalar() == 0


def test_sqlite_commits_accepted_signals_to_disk_and_the_rest_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store(f"sqlite:///{tmp_path}/traderd.db")
    store.open()
    try:
        store.record_signal(intent("durable"))  # the durable kept connection of this thread
        store.upsert_order(order("b1", "c1"))  # the non-durable one
        levels = {durable: kept._connection().driver_connection.execute("PRAGMA synchronous").fetchone()[0]
                  for durable, kept in store._kept.items()}
    finally:
        store.close()
    assert levels == {True: 2, False: 1}  # FULL: waits for the disk; NORMAL: does not


@pytest.mark.postgres
def test_a_lost_connection_is_replaced_and_the_write_goes_through_on_retry(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("a SQLite file connection cannot be lost")
    store.upsert_order(order("b1", "c1"))
    kept = store._kept[False]._connection().driver_connection
    backend = kept.info.backend_pid
    with store.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        admin.commit()
    with pytest.raises(OperationalError) as lost:
        store.upsert_order(order("b2", "c2"))
    assert is_transient(lost.value)
    store.upsert_order(order("b2", "c2"))  # the retry, on a new connection
    assert store._kept[False]._connection().driver_connection.info.backend_pid != backend
    assert {o.broker_order_id for o in store.orders()} == {"b1", "b2"}
