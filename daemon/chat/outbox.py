"""Durable outbox of alerts: events become committed rows at once; one dispatcher per transport delivers them.

Trading never waits on chat. `Outbox.publish` is the event-bus subscriber: it turns an event into an alert
(`daemon.chat.alerts`) and inserts one row per destination chat in one short transaction; it never raises (if the
store cannot take the row it is kept in memory and written at the next chance) and never awaits.

A `Dispatcher` per transport drains the rows in order, per chat: it takes every pending alert of a chat
and packs them into as few messages as the transport's length limit allows (a burst of fills becomes one
message instead of thirty), and sends at most one message per chat per second, 20 a minute to a group chat
and 30 a second overall (Telegram's flood limits; Discord gets the same pacing). A failed send leaves the
rows pending with exponential backoff (or the transport's 429 `retry_after`), so later alerts of that chat
wait behind them and order is kept; errors the transport calls permanent give up after three attempts
(the row is kept as `dead`, with the error). While a chat is down (a send failed and rows wait out their
backoff) the dispatcher asks it every `probe_seconds` whether it answers again (`Sender.probe`: getMe, the
Discord gateway endpoint); when it does, the waiting rows are due at once, so alerts arrive seconds after
an outage ends rather than at the end of the backoff. Pending rows survive a restart and are delivered after start.
An alert with a picture (the daily chart) goes alone, as a photo with its text as the caption; after
`IMAGE_ATTEMPTS` failed tries the picture is dropped and the text is delivered like any other alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, update
from sqlmodel import Session, col, select

from config.chat import AlertSettings
from daemon.chat.alerts import Alert, alert_for
from daemon.domain import Event, utcnow
from daemon.store.repository import Store
from daemon.store.tables import OutboxRow

log = logging.getLogger("traderd.outbox")
PERMANENT_ATTEMPTS = 3
IMAGE_ATTEMPTS = 3
KEEP_SENT = timedelta(days=7)


class Sender(Protocol):
    """A chat transport as the dispatcher sees it (adapters live in `daemon.chat.runtime`)."""

    transport: str
    max_chars: int  # limit of `length(text)` for one message

    def length(self, text: str) -> int: ...
    async def send(self, chat: str, text: str, silent: bool) -> None: ...
    async def send_photo(self, chat: str, image: bytes, caption: str, silent: bool) -> None: ...
    def retry_after(self, exc: BaseException) -> float | None: ...
    def permanent(self, exc: BaseException) -> bool: ...
    async def probe(self) -> bool: ...  # whether the chat answers (never raises)


@dataclass
class FloodLimits:
    per_chat_seconds: float = 1.0
    group_per_minute: int = 20
    overall_per_second: int = 30


@dataclass
class RateGate:
    """When the next message to a chat may go, under `FloodLimits` (monotonic seconds)."""

    limits: FloodLimits = field(default_factory=FloodLimits)
    _last: dict[str, float] = field(default_factory=dict)
    _group: dict[str, deque[float]] = field(default_factory=dict)
    _all: deque[float] = field(default_factory=deque)

    def wait(self, chat: str, now: float) -> float:
        waits = [self._last.get(chat, -1e9) + self.limits.per_chat_seconds - now]
        sent = self._group.get(chat)
        if chat.startswith("-") and sent and len(sent) >= self.limits.group_per_minute:
            waits.append(sent[-self.limits.group_per_minute] + 60 - now)
        if len(self._all) >= self.limits.overall_per_second:
            waits.append(self._all[-self.limits.overall_per_second] + 1 - now)
        return max(0.0, *waits)

    def record(self, chat: str, now: float) -> None:
        self._last[chat] = now
        self._group.setdefault(chat, deque(maxlen=self.limits.group_per_minute)).append(now)
        self._all.append(now)
        while len(self._all) > self.limits.overall_per_second:
            self._all.popleft()


def pack(rows: Sequence[OutboxRow], sender: Sender) -> tuple[list[int], str, bool]:
    """The longest run of `rows` (from the first) that fits one message: (ids, text, silent)."""
    ids: list[int] = []
    parts: list[str] = []
    for row in rows:
        if row.image is not None and parts:
            break  # a picture goes alone
        candidate = "\n".join([*parts, row.text])
        if parts and sender.length(candidate) > sender.max_chars:
            break
        parts.append(row.text)
        assert row.id is not None
        ids.append(row.id)
        if row.image is not None:
            break
    text = "\n".join(parts)
    if sender.length(text) > sender.max_chars:  # one alert alone too long: cut it
        while text and sender.length(text + "\n(cut short)") > sender.max_chars:
            text = text[: max(0, len(text) - max(10, len(text) // 20))]
        text += "\n(cut short)"
    silent = all(row.silent for row in rows[: len(ids)])
    return ids, text, silent


class Outbox:
    """The table and the event subscriber. `destinations`: transport -> chat ids that receive alerts."""

    def __init__(
        self,
        store: Store,
        destinations: Mapping[str, Sequence[str]],
        settings: AlertSettings,
        clock: Callable[[], datetime] = utcnow,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.store = store
        self.redact = redact  # the log redaction: an alert may quote a broker's error text
        self.destinations = {t: list(chats) for t, chats in destinations.items() if chats}
        self.settings = settings
        self.clock = clock
        self.suppress: Callable[[Event], bool] = lambda event: False
        self._unsaved: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._wakers: dict[str, asyncio.Event] = {}

    # ---- intake (sync, never raises) -------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Event-bus subscriber."""
        try:
            if self.suppress(event):
                return
            alert = alert_for(event)
        except Exception:
            log.exception("could not make an alert of a %s event", event.kind)
            return
        if alert is not None:
            self.add(alert)

    def add(self, alert: Alert, only: Iterable[str] | None = None) -> int:
        """Queue `alert` for every destination whose level for its type is not `off`; returns rows queued."""
        wanted = set(only) if only is not None else None
        now = self.clock()
        rows: list[dict[str, Any]] = []
        text = self.redact(alert.text)
        for transport, chats in self.destinations.items():
            if wanted is not None and transport not in wanted:
                continue
            level = self.settings.level(transport, alert.kind)
            if level == "off":
                continue
            for chat in chats:
                rows.append({"transport": transport, "chat": chat, "kind": alert.kind, "text": text,
                             "silent": level == "silent", "status": "pending", "attempts": 0,
                             "created_at": alert.at, "next_attempt_at": now, "image": alert.image})
        if not rows:
            return 0
        self._unsaved.extend(rows)
        self.flush()
        for transport in {row["transport"] for row in rows}:
            waker = self._wakers.get(transport)
            if waker is not None:
                waker.set()
        return len(rows)

    def flush(self) -> bool:
        """Write alerts kept in memory (the store was not open, or failed); True when none is left."""
        if not self._unsaved:
            return True
        batch = list(self._unsaved)
        # Not durable (no wait for the disk flush, still safe from a crash of the process): this runs on the
        # event loop, and an alert is news of an event, not a promise made to the outside world.
        try:
            with self.store.writing(durable=False) as session:
                session.execute(insert(OutboxRow), batch)
        except Exception as exc:
            log.warning("outbox: %d alert(s) kept in memory, the store did not take them: %s", len(batch), exc)
            return False
        for _ in batch:
            self._unsaved.popleft()
        return True

    def waker(self, transport: str) -> asyncio.Event:
        return self._wakers.setdefault(transport, asyncio.Event())

    # ---- reading and marking ---------------------------------------------------------------------

    def pending(self, transport: str | None = None, limit: int = 1000) -> list[OutboxRow]:
        stmt = select(OutboxRow).where(OutboxRow.status == "pending")
        if transport is not None:
            stmt = stmt.where(OutboxRow.transport == transport)
        with Session(self.store.engine, expire_on_commit=False) as session:
            return list(session.exec(stmt.order_by(col(OutboxRow.id)).limit(limit)).all())

    def pending_count(self) -> int:
        try:
            with Session(self.store.engine) as session:
                stmt = select(func.count()).select_from(OutboxRow).where(OutboxRow.status == "pending")
                return int(session.exec(stmt).one()) + len(self._unsaved)
        except Exception:
            return len(self._unsaved)

    def rows(self, transport: str | None = None) -> list[OutboxRow]:
        """Every row, oldest first (for tests and diagnostics)."""
        stmt = select(OutboxRow).order_by(col(OutboxRow.id))
        if transport is not None:
            stmt = stmt.where(OutboxRow.transport == transport)
        with Session(self.store.engine, expire_on_commit=False) as session:
            return list(session.exec(stmt).all())

    def _update(self, ids: Sequence[int], **values: Any) -> None:
        with self.store.writing(durable=False) as session:
            session.execute(update(OutboxRow).where(col(OutboxRow.id).in_(ids)).values(**values))

    def mark_sent(self, ids: Sequence[int]) -> None:
        self._update(ids, status="sent", sent_at=self.clock(), last_error=None)

    def mark_failed(self, rows: Sequence[OutboxRow], error: str, retry_at: datetime, give_up: bool) -> None:
        with self.store.writing(durable=False) as session:
            for row in rows:
                session.execute(
                    update(OutboxRow).where(col(OutboxRow.id) == row.id).values(
                        attempts=row.attempts + 1, last_error=error[:500], next_attempt_at=retry_at,
                        status="dead" if give_up else "pending",
                    )
                )

    def drop_image(self, row: OutboxRow, error: str) -> None:
        """Fall back to text: the row stays pending, due now, with a fresh attempt count and without its picture."""
        assert row.id is not None
        self._update([row.id], image=None, attempts=0, last_error=error[:500], next_attempt_at=self.clock())

    def due_now(self, transport: str) -> None:
        """Pending rows of `transport` may go now (the chat answers again after an outage)."""
        with self.store.writing(durable=False) as session:
            session.execute(update(OutboxRow).where(col(OutboxRow.status) == "pending",
                                                    col(OutboxRow.transport) == transport)
                            .values(next_attempt_at=self.clock()))

    def restart(self) -> None:
        """At start: pending rows are due now (whatever backoff they had), old delivered rows go."""
        now = self.clock()
        with self.store.writing(durable=False) as session:
            session.execute(update(OutboxRow).where(col(OutboxRow.status) == "pending").values(next_attempt_at=now))
            session.execute(delete(OutboxRow).where(col(OutboxRow.status) == "sent",
                                                    col(OutboxRow.sent_at) < now - KEEP_SENT))


class Dispatcher:
    """Delivers one transport's pending rows; see the module docstring for the rules."""

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        *,
        limits: FloodLimits | None = None,
        max_backoff: float = 10.0,
        probe_seconds: float = 2.0,
        linger: float = 0.25,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.transport = sender.transport
        self.gate = RateGate(limits or FloodLimits())
        self.max_backoff = max_backoff
        self.probe_seconds = probe_seconds
        self.linger = linger
        self.sent_messages = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-{self.transport}")

    async def stop(self, drain_seconds: float) -> None:
        """Deliver what can go within `drain_seconds`, then stop (the rest stays pending for next start)."""
        deadline = time.monotonic() + drain_seconds
        while time.monotonic() < deadline and self._has_work(deadline):
            self.outbox.waker(self.transport).set()
            await asyncio.sleep(0.05)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2)

    def _has_work(self, deadline: float) -> bool:
        """Pending rows that could still go before `deadline` (not parked behind a long backoff)."""
        try:
            rows = self.outbox.pending(self.transport, limit=200)
        except Exception:
            return False
        horizon = self.outbox.clock() + timedelta(seconds=max(0.0, deadline - time.monotonic()))
        return any(row.next_attempt_at <= horizon for row in rows)

    async def _run(self) -> None:
        waker = self.outbox.waker(self.transport)
        while not self._stopping:
            waker.clear()
            try:
                self.outbox.flush()
                pause = await self.deliver_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox dispatcher for %s failed; retrying", self.transport)
                pause = 1.0
            if pause <= 0:
                continue
            down = self.last_error is not None and pause > self.probe_seconds
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waker.wait(), self.probe_seconds if down else pause)
            if waker.is_set() and self.linger:
                await asyncio.sleep(self.linger)  # let a burst gather into one message
            elif down and await self._probe():
                log.info("%s answers again; delivering the alerts that waited", self.transport)
                self.outbox.due_now(self.transport)

    async def _probe(self) -> bool:
        try:
            return await self.sender.probe()
        except Exception:
            return False

    async def deliver_once(self) -> float:
        """Send at most one message per chat that may send now; returns how long to wait before the next pass
        (0: go on at once)."""
        rows = self.outbox.pending(self.transport)
        by_chat: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_chat.setdefault(row.chat, []).append(row)
        now, mono = self.outbox.clock(), time.monotonic()
        next_pass = 1.0
        sent_any = False
        for chat, chat_rows in by_chat.items():
            due_in = (chat_rows[0].next_attempt_at - now).total_seconds()
            wait = max(due_in, self.gate.wait(chat, mono))
            if wait > 0:
                next_pass = min(next_pass, wait)
                continue
            ids, text, silent = pack(chat_rows, self.sender)
            batch = chat_rows[: len(ids)]
            image = batch[0].image
            try:
                if image is not None:
                    await self.sender.send_photo(chat, image, text, silent)
                else:
                    await self.sender.send(chat, text, silent)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(batch, exc)
                continue
            finally:
                # Counted from when the answer came back: the chat service saw this message no later than that,
                # so the next one reaches it at least the spacing later however slow this request was.
                self.gate.record(chat, time.monotonic())
            self.outbox.mark_sent(ids)
            self.sent_messages += 1
            self.last_error = None
            sent_any = True
            if len(ids) < len(chat_rows):
                next_pass = min(next_pass, self.gate.limits.per_chat_seconds)
        return 0.0 if sent_any and len(rows) >= 1000 else max(0.01, next_pass)

    def _failed(self, batch: Sequence[OutboxRow], exc: BaseException) -> None:
        attempts = batch[0].attempts + 1
        if batch[0].image is not None and attempts >= IMAGE_ATTEMPTS:
            log.warning("%s: the picture of alert %s failed %d times (%s); sending its text instead",
                        self.transport, batch[0].id, attempts, exc)
            self.outbox.drop_image(batch[0], f"picture dropped: {type(exc).__name__}: {exc}")
            return
        retry_after = self.sender.retry_after(exc)
        give_up = self.sender.permanent(exc) and attempts >= PERMANENT_ATTEMPTS
        delay = retry_after if retry_after is not None else min(self.max_backoff, 2.0 ** min(attempts - 1, 16))
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.warning("%s alert to %s not delivered (attempt %d): %s; %s", self.transport, batch[0].chat, attempts,
                    self.last_error, "giving up" if give_up else f"retrying in {delay:.1f} s")
        self.outbox.mark_failed(batch, self.last_error, self.outbox.clock() + timedelta(seconds=delay), give_up)
