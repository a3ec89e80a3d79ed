"""StateStore: JSON documents survive a reopen, on the same backends as the store's own tests."""

from __future__ import annotations

from pathlib import Path

from daemon.store.repository import Store
from daemon.store.state import StateStore


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
