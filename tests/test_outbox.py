"""Tests the durable alert outbox on a real SQLite store: intake that never raises, packing, pacing, retries.

The transport is a small recording sender (standing in for Telegram/Discord); everything else is the
project's own code: `Outbox`, `Dispatcher`, `RateGate`, `pack`, the store and its migrations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.chat import AlertSettings
from daemon.chat.alerts import Alert
from daemon.chat.outbox import Dispatcher, FloodLimits, Outbox, RateGate, pack
from daemon.domain import Event
from daemon.store.repository import Store
from daemon.store.tables import OutboxRow


class Permanent(Exception):
    pass


class RetryLater(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"429 retry after {seconds}")
        self.seconds = seconds


class RecordingSender:
    transport = "telegram"

    def __init__(self, max_chars: int = 4096) -> None:
        self.max_chars = max_chars
        self.sent: list[tuple[str, str, bool]] = []
        self.fail: list[Exception] = []

    def length(self, text: str) -> int:
        return len(text)

    async def send(self, chat: str, text: str, silent: bool) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append((chat, text, silent))

    def retry_after(self, exc: BaseException) -> float | None:
        return exc.seconds if isinstance(exc, RetryLater) else None

    def permanent(self, exc: BaseException) -> bool:
        return isinstance(exc, Permanent)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'outbox.db'}")
    s.open()
    yield s
    s.close()


def fill(n: int) -> Event:
    return Event(kind="fill", account="paper", summary=f"buy {n} AAPL @ 100")


def outbox_for(store: Store, **levels: str) -> Outbox:
    settings = AlertSettings(levels=levels)  # type: ignore[arg-type]
    return Outbox(store, {"telegram": ["-500", "100"], "discord": ["200"]}, settings)


def test_levels_per_type_and_transport(store: Store) -> None:
    settings = AlertSettings(levels={"fill": "silent"}, discord={"fill": "off"})
    outbox = Outbox(store, {"telegram": ["100"], "discord": ["200"]}, settings)
    outbox.publish(fill(1))
    outbox.publish(Event(kind="order", account="paper", summary="buy 1 AAPL market -> new"))  # off by default
    outbox.publish(Event(kind="signal_rejected", account="paper", summary="x"))  # told by its violation
    rows = outbox.rows()
    assert [(r.transport, r.chat, r.kind, r.silent) for r in rows] == [("telegram", "100", "fill", True)]
    with pytest.raises(ValueError, match="unknown alert type"):
        AlertSettings(levels={"fills": "on"})  # type: ignore[dict-item]


def test_intake_never_raises_and_keeps_order(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'late.db'}")
    outbox = outbox_for(store)
    outbox.publish(fill(1))  # store not open yet: kept in memory
    outbox.publish(fill(2))
    assert outbox.pending_count() == 6
    store.open()
    try:
        outbox.publish(fill(3))
        texts = [r.text for r in outbox.pending("telegram") if r.chat == "100"]
        assert [t.split(": ")[1] for t in texts] == ["buy 1 AAPL @ 100", "buy 2 AAPL @ 100", "buy 3 AAPL @ 100"]
        assert outbox.pending_count() == 9
    finally:
        store.close()


def rows_of(texts: list[str], silent: bool = False) -> list[OutboxRow]:
    now = datetime.now(UTC)
    return [OutboxRow(id=i + 1, transport="telegram", chat="1", kind="fill", text=t, silent=silent,
                      created_at=now, next_attempt_at=now) for i, t in enumerate(texts)]


def test_pack_fits_the_limit_and_cuts_a_giant() -> None:
    sender = RecordingSender(max_chars=100)
    ids, text, silent = pack(rows_of(["a" * 40, "b" * 40, "c" * 40], silent=True), sender)
    assert ids == [1, 2] and text == "a" * 40 + "\n" + "b" * 40 and silent
    ids, text, _ = pack(rows_of(["x" * 500, "y"]), sender)
    assert ids == [1] and len(text) <= 100 and text.endswith("(cut short)")
    mixed = rows_of(["a", "b"])
    mixed[0].silent = True
    assert pack(mixed, sender)[2] is False  # one loud alert makes the message loud


def test_rate_gate_flood_limits() -> None:
    gate = RateGate(FloodLimits())
    gate.record("100", 0.0)
    assert gate.wait("100", 0.5) == pytest.approx(0.5) and gate.wait("200", 0.5) == 0
    for i in range(20):
        gate.record("-500", 100.0 + i * 1.0)
    assert gate.wait("-500", 120.0) == pytest.approx(40.0)  # 20 a minute to a group
    busy = RateGate(FloodLimits())
    for i in range(30):
        busy.record(str(i), 200.0)
    assert busy.wait("999", 200.1) == pytest.approx(0.9)  # 30 a second overall


async def test_dispatcher_coalesces_retries_and_keeps_order(store: Store) -> None:
    outbox = outbox_for(store)
    sender = RecordingSender()
    sender.fail = [ConnectionError("down")]
    dispatcher = Dispatcher(outbox, sender, linger=0)
    for n in range(1, 4):
        outbox.publish(fill(n))
    await dispatcher.deliver_once()  # chat -500 fails, chat 100 goes
    assert [chat for chat, _, _ in sender.sent] == ["100"]
    [failed] = {r.attempts for r in outbox.pending("telegram")}
    assert failed == 1 and len(outbox.pending("telegram")) == 3
    assert outbox.pending("telegram")[0].next_attempt_at > datetime.now(UTC)  # backing off
    for n in range(4, 6):
        outbox.publish(fill(n))
    outbox.restart()  # as after a restart: due now
    dispatcher.gate = RateGate()  # (a failed attempt counts against the flood limit too)
    await dispatcher.deliver_once()
    group = [text for chat, text, _ in sender.sent if chat == "-500"]
    assert len(group) == 1 and [line.split()[-4] for line in group[0].splitlines()] == ["1", "2", "3", "4", "5"]
    await asyncio.sleep(1.05)
    await dispatcher.deliver_once()
    assert not outbox.pending("telegram") and outbox.pending("discord")
    private = [line.split()[-4] for chat, text, _ in sender.sent if chat == "100" for line in text.splitlines()]
    assert private == ["1", "2", "3", "4", "5"] and len([c for c, _, _ in sender.sent if c == "100"]) == 2


async def test_retry_after_and_permanent_errors(store: Store) -> None:
    outbox = Outbox(store, {"telegram": ["100"]}, AlertSettings())
    sender = RecordingSender()
    dispatcher = Dispatcher(outbox, sender, linger=0)
    outbox.publish(fill(1))
    sender.fail = [RetryLater(7)]
    await dispatcher.deliver_once()
    [row] = outbox.pending()
    wait = (row.next_attempt_at - datetime.now(UTC)).total_seconds()
    assert 6 < wait <= 7 and not sender.sent
    sender.fail = [Permanent("chat not found")] * 3
    for _ in range(3):
        outbox.restart()
        dispatcher.gate = RateGate()
        await dispatcher.deliver_once()
    [dead] = outbox.rows()
    assert dead.status == "dead" and dead.attempts == 3 and "chat not found" in (dead.last_error or "")


async def test_dispatcher_task_drains_then_stops(store: Store) -> None:
    outbox = Outbox(store, {"telegram": ["100"]}, AlertSettings())
    sender = RecordingSender()
    dispatcher = Dispatcher(outbox, sender, linger=0.05)
    dispatcher.start()
    outbox.add(Alert(kind="daemon", text="traderd started"))
    for n in range(1, 6):
        outbox.publish(fill(n))
    await dispatcher.stop(drain_seconds=3)
    assert not outbox.pending() and sum(text.count("\n") + 1 for _, text, _ in sender.sent) == 6
    assert len(sender.sent) <= 3
    assert all(r.status == "sent" and r.sent_at is not None for r in outbox.rows())
    assert outbox.rows()[0].sent_at - outbox.rows()[0].created_at < timedelta(seconds=5)  # type: ignore[operator]
