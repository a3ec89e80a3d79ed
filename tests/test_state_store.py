"""StateStore: JSON documents survive a reopen, and a read-then-write holds its own beside the commit thread."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session as OrmSession

from daemon.domain import utcnow
from daemon.store.prepared import Prepared
from daemon.store.repository import Store
from daemon.store.state import StateStore
from daemon.store.tables import KvRow


def test_documents_round_trip_and_survive_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    store.open()
    state = StateStore(store)
    assert state.get("funded", "acct") is None
    state.put("funded", "acct", {"floor": "48000.00", "locked": False})
    state.put("funded", "acct", {"floor": "48500.00", "locked": True})
    state.put("strategy", "sma", {"bars": 20})
    store.close()
    again = Store(url)
    again.open()
    state = StateStore(again)
    assert state.get("funded", "acct") == {"floor": "48500.00", "locked": True}
    assert state.all("strategy") == {"sma": {"bars": 20}}
    state.delete("strategy", "sma")
    assert state.all("strategy") == {}
    again.close()


def _commit_thread_write(store: Store, key: str) -> Future[Any]:
    """One write on the store's group commit (its own thread and connection), as intake makes them."""
    row = {"namespace": "commits", "key": key, "value_json": "{}", "updated_at": utcnow()}
    statement = Prepared(insert(KvRow.__table__), store.engine.dialect, list(row))  # type: ignore[attr-defined]
    return store.commits.submit(lambda conn: conn.execute(statement, row), durable=False)


def test_read_then_write_holds_its_own_beside_the_commit_thread(tmp_path: Path) -> None:
    """A put reads its row, then writes it. The commit thread commits in between, deterministically (at the
    put's flush, when its read is done and its write not yet sent) and at random (a thread that keeps
    committing while puts run): every put lands, none fails with "database is locked"."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.open()
    state = StateStore(store)
    submitted: list[Future[Any]] = []
    me = threading.get_ident()

    def commit_meanwhile(session: Any, *_: Any) -> None:
        if threading.get_ident() != me:
            return
        future = _commit_thread_write(store, f"between-{len(submitted)}")
        submitted.append(future)
        with contextlib.suppress(FutureTimeout):
            # A put that began IMMEDIATE holds the write lock: this commit waits for it, so give up on it
            # here and let the put go on; a put that began deferred would meet a commit made meanwhile.
            future.result(timeout=0.3)

    try:
        state.put("counter", "between", {"n": 0})
        event.listen(OrmSession, "before_flush", commit_meanwhile)
        try:
            for n in range(1, 6):
                assert state.get("counter", "between") == {"n": n - 1}
                state.put("counter", "between", {"n": n})
        finally:
            event.remove(OrmSession, "before_flush", commit_meanwhile)

        stop = threading.Event()

        def keep_committing() -> None:
            i = 0
            while not stop.is_set():
                submitted.append(_commit_thread_write(store, f"beside-{i}"))
                submitted[-1].result(timeout=10)
                i += 1

        writer = threading.Thread(target=keep_committing, name="keep-committing")
        writer.start()
        try:
            state.put("counter", "beside", {"n": 0})
            for _ in range(200):
                current = state.get("counter", "beside")
                assert current is not None
                state.put("counter", "beside", {"n": current["n"] + 1})
        finally:
            stop.set()
            writer.join(15)
        assert not writer.is_alive()

        assert state.get("counter", "between") == {"n": 5}
        assert state.get("counter", "beside") == {"n": 200}
        for future in submitted:
            future.result(timeout=10)  # every commit-thread write landed as well
        assert len(state.all("commits")) == len(submitted) > 5
    finally:
        store.close()
