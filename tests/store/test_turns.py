"""The process's SQLite writers take turns in the order they asked, and each is woken when its turn comes."""

from __future__ import annotations

import threading
import time

from daemon.store.turns import Turns


def _wait_until(condition, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_writers_enter_in_the_order_they_asked() -> None:
    turns, entered = Turns(), []

    def writer(name: str) -> None:
        with turns:
            entered.append(name)

    turns.__enter__()  # a writer holds the turn; three more queue behind it, one after another
    threads = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=writer, args=(name,))
        thread.start()
        threads.append(thread)
        queued = len(threads)
        _wait_until(lambda queued=queued: len(turns._waiting) == queued)
    assert entered == []  # nobody enters while the turn is held
    turns.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    assert entered == ["first", "second", "third"]
    with turns:  # free again: taken at once
        entered.append("later")
    assert entered[-1] == "later"


def test_a_writer_that_fails_passes_the_turn_on() -> None:
    turns = Turns()
    try:
        with turns:
            raise RuntimeError("the write failed")
    except RuntimeError:
        pass
    done = threading.Event()
    thread = threading.Thread(target=lambda: (turns.__enter__(), done.set(), turns.__exit__(None, None, None)))
    thread.start()
    assert done.wait(10)
    thread.join(10)
