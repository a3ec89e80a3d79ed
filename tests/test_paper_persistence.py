"""Tests of the paper broker's files: restarts, history, crashes, corrupt files, journal rotation, migration."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from brokers.paper import ledger as paper_ledger
from brokers.paper.broker import PaperBroker, PaperStateError
from config.brokers import PaperSettings
from daemon.domain import OrderStatus
from tests.test_paper_broker import T0, Clock, Collector, D, make, req

STATE, JOURNAL, ROTATED = "paper.json", "paper.json.history.jsonl", "paper.json.history.1.jsonl"


def files_in(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def test_stop_limit_becomes_a_limit_and_survives_restart(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("sl", "buy", 1, stop=D(105), limit=D("105.5"), reference_price=D(100)))
    await b.observe_price("AAPL", D(106), T0)  # stop hit, but above the limit: rests as a limit
    [resting] = await b.open_orders()
    assert resting.status is OrderStatus.NEW

    restarted = make(tmp_path)
    await restarted.connect()
    await restarted.observe_price("AAPL", D("104.9"), T0)  # the stop was hit before the restart: the limit fills
    done = await restarted.find_order("sl")
    assert done is not None and done.status is OrderStatus.FILLED
    assert done.average_fill_price == D("104.9")


async def test_state_survives_restart(tmp_path: Path) -> None:
    b = make(tmp_path, multipliers={"ES": D(50)})
    await b.connect()
    assert (tmp_path / "paper.json").exists()
    await b.place_order(req("a", "buy", 10, reference_price=D(100)))
    await b.place_order(req("e", "sell", 2, symbol="ES1!", reference_price=D(5000)))
    await b.place_order(req("l", "buy", 1, limit=D(90)))
    # no close(): the state was written after each mutation
    again = make(tmp_path, multipliers={"ES": D(50)})
    await again.connect()
    assert await again.positions() == await b.positions()
    assert await again.account_state() == await b.account_state()  # same clock time, same numbers
    assert await again.open_orders() == await b.open_orders()
    assert await again.fills() == await b.fills()
    nxt = await again.place_order(req("b", "sell", 1, reference_price=D(100)))
    assert nxt.broker_order_id == "P4"  # the counter continued
    await again.close()

    third = make(tmp_path, multipliers={"ES": D(50)})
    await third.connect()
    assert (await third.find_order("b")) == nxt
    assert len({f.fill_id for f in await third.fills()}) == 3
    raw = json.loads((tmp_path / "paper.json").read_text())
    assert raw["book"]["cash"] == str((await third.account_state()).cash)  # Decimals as strings
    assert files_in(tmp_path) == [STATE, JOURNAL]  # no temp files left behind


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "paper.json"
    path.write_text('{"version": 1, "account": "paper-1", "next_or')
    b = make(tmp_path)
    with pytest.raises(PaperStateError, match=str(path)):
        await b.connect()
    assert path.read_text().endswith("next_or")  # left as it was
    with pytest.raises(PaperStateError):
        await b.place_order(req("a", "buy", 1, reference_price=D(1)))


async def test_state_file_of_another_account_is_refused(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.close()
    other = PaperBroker("someone-else", PaperSettings(), tmp_path / "paper.json")
    with pytest.raises(PaperStateError, match="is for account 'paper-1'"):
        await other.connect()


async def test_history_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    b = make(tmp_path, clock)
    await b.connect()
    for n in range(3000):
        clock.tick()
        await b.place_order(req(f"o{n}", "buy" if n % 2 == 0 else "sell", 1, reference_price=D(100 + n % 3)))
    first, state, fills = await b.find_order("o0"), await b.account_state(), await b.fills()
    assert first is not None and first.status is OrderStatus.FILLED
    # no close(): a crash now loses nothing
    again = make(tmp_path, clock)
    await again.connect()
    assert await again.find_order("o0") == first
    reports = Collector()
    again.set_report_handler(reports)
    assert await again.place_order(req("o0", "buy", 1, reference_price=D(500))) == first  # not placed again
    assert reports.reports == []
    assert await again.account_state() == state
    assert await again.fills() == fills and len(fills) == 3000
    since = await again.fills(T0 + timedelta(seconds=2999))
    assert [f.client_order_id for f in since] == ["o2998", "o2999"]
    assert (await again.place_order(req("new", "buy", 1, reference_price=D(100)))).broker_order_id == "P3001"
    await again.close()
    assert len((tmp_path / JOURNAL).read_text().splitlines()) == 3001  # one line per mutation
    assert (tmp_path / STATE).stat().st_size < 2000  # the state file holds the live state only


async def test_a_torn_last_journal_line_is_cut_off(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("a", "buy", 2, reference_price=D(100)))
    await b.place_order(req("l", "buy", 1, limit=D(90)))
    before = (await b.account_state(), await b.open_orders(), await b.fills())
    journal = tmp_path / JOURNAL
    intact = journal.read_bytes()
    with journal.open("ab") as handle:
        handle.write(b'{"seq":3,"next_order":4,"cash":"1')  # the process died in the middle of a write
    again = make(tmp_path)
    await again.connect()
    assert (await again.account_state(), await again.open_orders(), await again.fills()) == before
    assert journal.read_bytes() == intact
    sold = await again.place_order(req("b", "sell", 2, reference_price=D(101)))
    third = make(tmp_path)
    await third.connect()
    assert await third.find_order("b") == sold
    assert await third.positions() == []
    assert [o.client_order_id for o in await third.open_orders()] == ["l"]


async def test_resting_bracket_entry_survives_restart(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("br", "sell", 4, limit=D(50), reference_price=D(48), take_profit=D(45), stop_loss=D(52)))
    again = make(tmp_path)  # replays the journal on top of the state file written at connect
    await again.connect()
    await again.observe_price("AAPL", D(50), T0)
    assert sorted(o.client_order_id for o in await again.open_orders()) == ["br-sl", "br-tp"]


async def test_corrupt_or_incomplete_journal_is_a_clear_error(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    for cid in "abc":
        await b.place_order(req(cid, "buy", 1, reference_price=D(10)))
    journal = tmp_path / JOURNAL
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join([lines[0], '{"seq": 2, "garbage": true}\n', lines[2]]))
    with pytest.raises(PaperStateError, match=re.escape(f"paper journal {journal} (line 2) is corrupt")):
        await make(tmp_path).connect()
    journal.write_text(lines[0] + lines[2])  # a line went missing
    with pytest.raises(PaperStateError, match="jumps from line 1 to 3"):
        await make(tmp_path).connect()
    (tmp_path / STATE).unlink()
    with pytest.raises(PaperStateError, match=f"{tmp_path / STATE} is missing but its journal"):
        await make(tmp_path).connect()


async def test_journal_rotates_and_keeps_the_recent_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paper_ledger, "MAX_FILLS", 30)
    monkeypatch.setattr(paper_ledger, "MAX_FINISHED_ORDERS", 20)
    b = make(tmp_path)
    await b.connect()
    for n in range(100):
        await b.place_order(req(f"o{n}", "buy", 1, reference_price=D(10)))
    # a journal rotates once it alone holds the history kept in memory: after lines 30, 60 and 90
    assert files_in(tmp_path) == sorted([STATE, JOURNAL, ROTATED])
    assert len((tmp_path / JOURNAL).read_text().splitlines()) == 10
    assert len((tmp_path / ROTATED).read_text().splitlines()) == 30
    again = make(tmp_path)
    await again.connect()
    assert [f.client_order_id for f in await again.fills()] == [f"o{n}" for n in range(70, 100)]
    assert await again.fills() == await b.fills()
    assert await again.find_order("o80") == await b.find_order("o80")
    assert await again.find_order("o79") is None  # older than the 20 finished orders kept
    assert await again.account_state() == await b.account_state()
    [position] = await again.positions()
    assert position.quantity == D(100)


async def test_version_1_state_file_is_migrated(tmp_path: Path) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("a", "buy", 2, reference_price=D(100)))
    await b.place_order(req("l", "buy", 1, limit=D(90), take_profit=D(95)))
    await b.close()
    orders = [await b.find_order("a"), await b.find_order("l")]
    # the layout before the journal: every order and fill in the state file
    raw = json.loads((tmp_path / STATE).read_text())
    del raw["seq"]
    raw.update(version=1, orders=[o.model_dump(mode="json") for o in orders if o is not None])
    raw["book"]["fills"] = [f.model_dump(mode="json") for f in await b.fills()]
    (tmp_path / STATE).write_text(json.dumps(raw))
    (tmp_path / JOURNAL).unlink()
    for _ in range(2):  # migrated on the first load, read from the journal on the second
        again = make(tmp_path)
        await again.connect()
        assert await again.find_order("a") == orders[0]
        assert await again.open_orders() == await b.open_orders()
        assert await again.fills() == await b.fills()
        assert await again.account_state() == await b.account_state()
        assert json.loads((tmp_path / STATE).read_text())["version"] == 2
    await again.observe_price("AAPL", D(89), T0)
    assert [o.client_order_id for o in await again.open_orders()] == ["l-tp"]


async def test_journal_of_prices_only_rotates_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paper_ledger, "MAX_JOURNAL_LINES", 10)
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("a", "buy", 1, reference_price=D(10)))
    for n in range(24):
        await b.observe_price("AAPL", D(11 + n), T0)
    assert len((tmp_path / JOURNAL).read_text().splitlines()) == 5
    again = make(tmp_path)
    await again.connect()
    assert await again.positions() == await b.positions()
    assert (await again.positions())[0].market_price == D(34)


async def test_a_failed_journal_write_is_retried_by_the_next_mutation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = make(tmp_path)
    await b.connect()
    await b.place_order(req("a", "buy", 1, reference_price=D(10)))
    real_write = paper_ledger.os.write

    def full_disk(fd: int, data: bytes) -> int:
        monkeypatch.setattr(paper_ledger.os, "write", real_write)
        real_write(fd, bytes(data[:7]))  # part of the line made it
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paper_ledger.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        await b.place_order(req("b", "buy", 2, reference_price=D(10)))
    assert len((tmp_path / JOURNAL).read_text().splitlines()) == 1  # the partial line was taken back
    again = await b.place_order(req("b", "buy", 2, reference_price=D(10)))  # the retry finds it placed
    assert again.status is OrderStatus.FILLED and len(await b.fills()) == 2
    restarted = make(tmp_path)
    await restarted.connect()
    assert await restarted.find_order("b") == again
    assert await restarted.account_state() == await b.account_state()
