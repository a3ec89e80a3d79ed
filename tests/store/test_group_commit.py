"""The group commit on a real database: concurrent new signals share transactions, each caller learns of its
own write only once it is committed, a bad write fails only its own caller, and close() commits what is queued."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest

from daemon.domain import SignalStatus
from daemon.store.commits import GroupCommit
from daemon.store.repository import Store
from tests.store.conftest import intent


def held_commit(store: Store) -> tuple[GroupCommit, list[int], Any]:
    """A GroupCommit over the store's own writer whose first transaction waits for `release()`, so the
    submissions made meanwhile queue up, as a burst does behind an fsync. Counts the transactions it runs."""
    gate = threading.Event()
    sizes: list[int] = []
    @contextmanager
    def durable() -> Any:
        gate.wait(10)
        # the store's durable write transactions, exactly as the daemon uses them
        with store._prepared_write(durable=True) as conn:
            sizes.append(1)
            yield conn

    return GroupCommit(durable, durable), sizes, gate.set


def test_a_burst_shares_transactions_and_every_caller_gets_its_own_answer(store: Store) -> None:
    commits, transactions, release = held_commit(store)
    rows = [intent(f"k{i}") for i in range(200)]
    futures: list[Future[Any]] = []
    try:
        for one in rows:
            futures.append(commits.submit(lambda conn, one=one: store._intake.write_signal(
                conn, _row(one))))
        futures.append(commits.submit(lambda conn: store._intake.write_signal(conn, _row(intent(
            "k7", signal_id="sig_again")))))  # the same alert again, in the same burst
        release()
        answers = [f.result(timeout=30) for f in futures]
    finally:
        commits.close()
    assert answers[:200] == [(f"sig_k{i}", True) for i in range(200)]
    assert answers[200] == ("sig_k7", False)  # a duplicate gets the first one's id, writes nothing
    assert len(transactions) < 20  # 201 writes, a handful of commits
    assert len(store.signals_page(limit=1000).items) == 200


def test_a_bad_write_fails_only_its_own_caller(store: Store) -> None:
    store.record_signal(intent("taken"))
    commits, _, release = held_commit(store)
    try:
        good = [commits.submit(lambda conn, i=i: store._intake.write_signal(conn, _row(intent(f"g{i}"))))
                for i in range(5)]
        bad = commits.submit(lambda conn: store._intake.write_signal(  # another alert under a used signal id
            conn, _row(intent("other-key", signal_id="sig_taken"))))
        more = [commits.submit(lambda conn, i=i: store._intake.write_signal(conn, _row(intent(f"h{i}"))))
                for i in range(5)]
        release()
        with pytest.raises(ValueError, match="already used by another signal"):
            bad.result(timeout=30)
        assert [f.result(timeout=30)[1] for f in good + more] == [True] * 10
    finally:
        commits.close()
    stored = {s.signal_id for s in store.signals_page(limit=100).items}
    assert stored == {"sig_taken"} | {f"sig_{p}{i}" for p in "gh" for i in range(5)}


def test_close_commits_what_is_queued(store: Store) -> None:
    commits, _, release = held_commit(store)
    futures = [commits.submit(lambda conn, i=i: store._intake.write_signal(conn, _row(intent(f"q{i}"))))
               for i in range(20)]
    release()
    commits.close()
    assert all(f.done() and f.result()[1] for f in futures)
    assert len(store.signals_page(limit=100).items) == 20


def test_store_submit_signal_is_durable_and_idempotent(store: Store) -> None:
    first = store.submit_signal(intent("s1")).result(timeout=30)
    again = store.submit_signal(intent("s1", signal_id="sig_other")).result(timeout=30)
    assert first == ("sig_s1", True) and again == ("sig_s1", False)
    record = store.get_signal("sig_s1")
    assert record is not None and record.status is SignalStatus.PENDING


def _row(one: Any) -> dict[str, Any]:
    from daemon.domain import utcnow
    from daemon.store.intake import signal_row

    return signal_row(one, SignalStatus.PENDING, utcnow())
