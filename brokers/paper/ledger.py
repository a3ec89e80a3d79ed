"""The paper broker's files: a write-ahead journal of changes and a checkpoint of the live state.

Files (`PaperLedger`) cost O(1) per mutation, whatever the history. Memory holds the live state and the last
`MAX_FINISHED_ORDERS` finished orders and `MAX_FILLS` fills. Each mutation appends one line to the journal
`<state file>.history.jsonl` (kept open, no fsync): a `PaperChange` with the absolute new values of what it
changed, its orders and its fills. The state file (`PaperState`) is a checkpoint of the live state as of
journal line `seq`, replaced atomically on connect (if lines were replayed), on close and when the journal
rotates (to `<state file>.history.1.jsonl`, once it alone holds the history kept in memory). Loading reads the state
file, then the journals: lines up to its `seq` only feed the history, later ones are replayed on top. A crash
can at worst cut the last line short (its reports were never sent); that is cut off on load. Anything else
unreadable raises `PaperStateError` naming the file. JSON with Decimals as strings; version-1 state files
(history inside) are migrated on load.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokers.base import BrokerError
from brokers.paper.book import BookState, PaperBook
from daemon.domain import Fill, Order

MAX_FINISHED_ORDERS = 5_000  # finished orders kept for idempotency and find_order; older ones are forgotten
MAX_FILLS = 20_000  # fills kept for fills(since)
MAX_JOURNAL_LINES = 100_000  # rotate anyway (say, only prices observed) to bound the disk


class PaperStateError(BrokerError):
    """The paper state file or its journal exists but cannot be used; money is never reset silently."""


class Bracket(BaseModel):
    """Exits to open when an entry fills."""

    model_config = ConfigDict(extra="forbid")

    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None


class PaperState(BaseModel):
    """The state file of one paper account: a checkpoint of its live state as of journal line `seq`."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1, 2] = 2  # 1: the whole history was in this file (moved to the journal on load)
    account: str
    seq: int = Field(default=0, ge=0)
    next_order: int = Field(ge=1)
    next_fill: int = Field(ge=1)
    orders: list[Order]  # the open ones (version 1: all)
    brackets: dict[str, Bracket]  # by entry broker order id, for entries that have not filled yet
    triggered: list[str]  # stop-limit orders whose stop has been hit (now resting limits)
    book: BookState


class PaperChange(BookState):
    """One journal line: what one mutation changed, as absolute new values (money, the holdings and last prices
    of the symbols it touched, its orders' latest versions), and its fills."""

    seq: int = Field(ge=0)
    next_order: int = Field(ge=1)
    next_fill: int = Field(ge=1)
    orders: list[Order] = Field(default_factory=list)
    brackets: dict[str, Bracket] = Field(default_factory=dict)  # of the open ones among `orders`
    triggered: list[str] = Field(default_factory=list)  # likewise
    fills: list[Fill] = Field(default_factory=list)


def read_state(path: Path, account: str) -> PaperState | None:
    """The saved state, or None if there is no file yet; anything unusable raises `PaperStateError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PaperStateError(f"cannot read paper state file {path}: {exc}") from exc
    try:
        state = PaperState.model_validate_json(text)
    except ValidationError as exc:
        raise _corrupt(f"paper state file {path}", exc) from exc
    if state.account != account:
        raise PaperStateError(f"paper state file {path} is for account {state.account!r}, not {account!r}")
    return state


def _corrupt(what: str, exc: ValidationError) -> PaperStateError:
    return PaperStateError(
        f"{what} is corrupt ({exc.error_count()} error(s), first: {exc.errors()[0]['msg']}); "
        "fix or move it away, it is not reset automatically"
    )


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically: a temp file in the same directory, then `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class PaperLedger:
    """Live state, bounded history and files of one paper account (see the module docstring).

    Not task-safe: the broker serialises calls. Orders change through `put`/`touch`, fills through
    `add_fill`, brackets and triggered only together with their order; then `commit`.
    """

    def __init__(self, account: str, book: PaperBook, path: Path) -> None:
        self.account, self.book, self.path = account, book, path
        self.journal_path = path.with_name(path.name + ".history.jsonl")
        self.rotated_path = path.with_name(path.name + ".history.1.jsonl")
        self.open: dict[str, Order] = {}  # by broker order id, in placement order
        self.done: OrderedDict[str, Order] = OrderedDict()  # finished, oldest first, bounded
        self.by_client: dict[str, str] = {}  # client order id -> broker order id, for `open` and `done`
        self.fills: deque[Fill] = deque(maxlen=MAX_FILLS)
        self.brackets: dict[str, Bracket] = {}
        self.triggered: set[str] = set()
        self.next_order = 1
        self.next_fill = 1
        self.seq = 0  # the last journal line written
        self._changed: dict[str, Order] = {}
        self._new_fills: list[Fill] = []
        self._fd: int | None = None
        self._end = 0  # the journal's length as this process wrote it
        self._counts = [0, 0, 0]  # lines, fills, finished orders in the current journal

    def get(self, broker_order_id: str) -> Order | None:
        return self.open.get(broker_order_id) or self.done.get(broker_order_id)

    def find(self, client_order_id: str) -> Order | None:
        oid = self.by_client.get(client_order_id)
        return None if oid is None else self.get(oid)

    def fills_since(self, since: datetime | None) -> list[Fill]:
        return list(self.fills) if since is None else [fill for fill in self.fills if fill.filled_at >= since]

    def put(self, order: Order) -> Order:
        self._store(order)
        self._changed[order.broker_order_id] = order
        return order

    def touch(self, order: Order) -> None:
        """Record that the order's bracket or triggered state changed."""
        self._changed[order.broker_order_id] = order

    def add_fill(self, fill: Fill) -> None:
        self.book.apply_fill(fill)
        self.fills.append(fill)
        self._new_fills.append(fill)

    def _store(self, order: Order) -> None:
        oid = order.broker_order_id
        self.by_client[order.client_order_id] = oid
        if order.status.is_open:
            self.open[oid] = order
            return
        self.open.pop(oid, None)
        self.done[oid] = order
        if len(self.done) > MAX_FINISHED_ORDERS:
            old_id, old = self.done.popitem(last=False)
            if self.by_client.get(old.client_order_id) == old_id:
                del self.by_client[old.client_order_id]

    # ---- files ------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Append what changed since the last commit to the journal as one line (nothing if nothing did)."""
        changed, book = self._changed, self.book
        if not (changed or self._new_fills or book.touched):
            return
        line = self._line(self.seq + 1, list(changed.values()), self._new_fills, book.touched)
        line.brackets = {oid: self.brackets[oid] for oid in changed if oid in self.brackets}
        line.triggered = [oid for oid in changed if oid in self.triggered]
        self._append(line)  # if this raises, the changes stay pending for the next commit
        self.seq += 1
        self._changed, self._new_fills = {}, []
        book.touched.clear()
        lines, fills, finished = self._counts
        if (fills >= MAX_FILLS and finished >= MAX_FINISHED_ORDERS) or lines >= MAX_JOURNAL_LINES:
            self.rotate()  # the rotated journal alone holds at least the history kept in memory

    def _line(self, seq: int, orders: list[Order], fills: list[Fill], symbols: Iterable[str]) -> PaperChange:
        counters = {"seq": seq, "next_order": self.next_order, "next_fill": self.next_fill}
        return PaperChange(**counters, **self.book.state(symbols), orders=orders, fills=fills)

    def _append(self, line: PaperChange) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._end = os.fstat(self._fd).st_size  # kept from here on: one system call less per line
        data = memoryview((line.model_dump_json(exclude_none=True) + "\n").encode())
        size = len(data)
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:  # a full disk, say: leave no partial line in front of the next one
            os.ftruncate(self._fd, self._end)
            raise
        self._end += size
        self._count(line)

    def _count(self, line: PaperChange) -> None:
        self._counts[0] += 1
        self._counts[1] += len(line.fills)
        self._counts[2] += sum(not order.status.is_open for order in line.orders)

    def checkpoint(self) -> None:
        """Replace the state file with the live state as of the last commit."""
        state = PaperState(
            account=self.account,
            seq=self.seq,
            next_order=self.next_order,
            next_fill=self.next_fill,
            orders=list(self.open.values()),
            brackets=dict(self.brackets),
            triggered=sorted(self.triggered),
            book=BookState(**self.book.state()),
        )
        write_atomic(self.path, state.model_dump_json(indent=1, exclude_none=True))

    def rotate(self) -> None:
        """Checkpoint, then start a new journal; the current one replaces the rotated one."""
        self.checkpoint()
        self.close_journal()
        if self.journal_path.exists():
            os.replace(self.journal_path, self.rotated_path)
        self._counts = [0, 0, 0]

    def close(self) -> None:
        self.commit()
        self.checkpoint()
        self.close_journal()

    def close_journal(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def load(self) -> bool:
        """Read the state file and journals (see the module docstring); returns whether the file existed."""
        state = read_state(self.path, self.account)
        journals = [path for path in (self.rotated_path, self.journal_path) if path.exists()]
        if state is None:
            if journals:
                raise PaperStateError(
                    f"paper state file {self.path} is missing but its journal {journals[-1]} exists; "
                    "restore the state file or move the journal away, it is not reset automatically"
                )
            self.checkpoint()
            return False
        self.book = PaperBook.restore(state.book, self.book.multipliers)
        self.seq, self.next_order, self.next_fill = state.seq, state.next_order, state.next_fill
        self.brackets, self.triggered = dict(state.brackets), set(state.triggered)
        for order in state.orders:
            self._store(order)
        seen: set[str] = set()
        self._remember(state.book.fills, seen)
        for path in journals:
            for number, text in self._read_lines(path):
                try:
                    line = PaperChange.model_validate_json(text)
                except ValidationError as exc:
                    raise _corrupt(f"paper journal {path} (line {number})", exc) from exc
                self._replay(line, state.seq, seen, path)
                if path == self.journal_path:
                    self._count(line)
        if state.version == 1:  # move the history out of the state file, into a line that replays nothing
            self._append(self._line(self.seq, list(self.done.values()), list(self.fills), ()))
            self.close_journal()
        if state.version == 1 or self.seq != state.seq:
            self.checkpoint()
        return True

    def _read_lines(self, path: Path) -> Iterable[tuple[int, bytes]]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PaperStateError(f"cannot read paper journal {path}: {exc}") from exc
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" unless a crash cut the last line short: that mutation never completed
        if torn and path == self.journal_path:
            with path.open("r+b") as handle:
                handle.truncate(len(data) - len(torn))
        return enumerate(lines, 1)

    def _replay(self, line: PaperChange, base: int, seen: set[str], path: Path) -> None:
        live = line.seq > base  # else the state file already holds its effect: history only
        if live and line.seq != self.seq + 1:
            raise PaperStateError(
                f"paper journal {path} jumps from line {self.seq} to {line.seq} of state file {self.path}; "
                "restore the missing journal or move the files away, they are not reset automatically"
            )
        for order in line.orders:
            oid = order.broker_order_id
            if live:
                self.brackets.pop(oid, None)
                if oid in line.brackets:
                    self.brackets[oid] = line.brackets[oid]
                if oid in line.triggered:
                    self.triggered.add(oid)
                else:
                    self.triggered.discard(oid)
            if live or not order.status.is_open:
                self._store(order)
        self._remember(line.fills, seen)
        if live:
            self.seq, self.next_order, self.next_fill = line.seq, line.next_order, line.next_fill
            self.book.apply_change(line)

    def _remember(self, fills: Iterable[Fill], seen: set[str]) -> None:
        for fill in fills:
            if fill.fill_id not in seen:
                seen.add(fill.fill_id)
                self.fills.append(fill)
