"""The store: signals, orders, fills and the positions ledger over SQLite (WAL) or PostgreSQL, one object.

`Store(url)` is synchronous and cheap per call: every method is one short transaction in its own session, so
it can be called from the asyncio thread. `open()` creates the engine and brings the schema to the newest
Alembic revision (migrations ship in `daemon/store/migrations/`): an upgrade never requires deleting the database.
The account records (controls, audit, violations, snapshots) come from `daemon.store.records`.

SQLite connections use WAL, synchronous=FULL, foreign keys and a 2 s busy timeout; write transactions start
with `BEGIN IMMEDIATE` so read-then-write transactions (the positions ledger) cannot deadlock on lock upgrade.
On PostgreSQL the same guarantees come from `INSERT ... ON CONFLICT` and `SELECT ... FOR UPDATE`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlmodel import col, select, update

from daemon.domain import ZERO, Fill, Intent, Order, OrderStatus, OrderType, Position, SignalStatus, utcnow
from daemon.store import paging
from daemon.store.exit_rules import ExitRuleRecords
from daemon.store.intake import FanoutChild, SignalIntake, raw_json, signal_row
from daemon.store.paging import Page
from daemon.store.prepared import Cursor, written_in
from daemon.store.records import AccountRecords
from daemon.store.scope import Accounts, only
from daemon.store.signal_reads import fill_of, order_of, outcome_of, read_signal, summary_of
from daemon.store.tables import FillRow, OrderRow, PositionRow, SignalRow
from daemon.store.time_exits import TimeExitRecords
from daemon.store.views import DailyPnl, SignalRecord, SignalSummary, daily_pnl
from daemon.store.writes import DuplicateFill, HotWrites

_OPEN_STATUSES = [s.value for s in OrderStatus if s.is_open]
_FLAT = {"quantity": ZERO, "average_price": ZERO, "cost_basis": ZERO, "realized_pnl": ZERO}


def _scoped_orders(account: Accounts, open_only: bool) -> Any:
    """The orders of `account`, or only its open ones: those are picked by id from `ix_orders_status_account`.
    Asked as `account = ? AND status IN (...)` beside the newest-first order, SQLite walks
    `ix_orders_account_created` instead (it saves the sort) through every order the account ever had."""
    if not open_only:
        return only(select(OrderRow), OrderRow.account, account)
    open_ids = only(select(OrderRow.id).where(written_in(col(OrderRow.status), _OPEN_STATUSES)), OrderRow.account,
                    account)
    return select(OrderRow).where(col(OrderRow.id).in_(open_ids))


class Store(AccountRecords, ExitRuleRecords, TimeExitRecords):
    """The repository. Call `open()` before use and `close()` at shutdown."""

    def __init__(self, url: str, *, redact: Callable[[str], str] = str) -> None:
        """`redact` (the log redaction) cleans the reasons stored with signals and orders: they are shown
        by the API and chat, and a broker's error text may quote a key."""
        super().__init__(url)
        self._redact = redact
        self._hot_writes: HotWrites | None = None
        self._signal_intake: SignalIntake | None = None

    def open(self) -> None:
        super().open()
        # The hot path's statements are compiled now, not while the first alert's orders wait for them.
        self._signal_intake = SignalIntake(self._insert(SignalRow), self.engine.dialect)
        self._hot_writes = HotWrites(self.engine.dialect, self._redact)

    @property
    def _intake(self) -> SignalIntake:
        if self._signal_intake is None:
            raise RuntimeError("Store is not open")
        return self._signal_intake

    @property
    def _hot(self) -> HotWrites:
        if self._hot_writes is None:
            raise RuntimeError("Store is not open")
        return self._hot_writes

    # -- signals -------------------------------------------------------------------------------------------

    def record_signal(self, intent: Intent, raw: dict[str, Any] | None = None) -> tuple[str, bool]:
        """Commit a new PENDING signal; a known (account, dedup_key) gives (existing_id, False) unchanged."""
        row = signal_row(intent, SignalStatus.PENDING, utcnow(), raw=raw_json(raw))
        with self._prepared_write(durable=True) as conn:
            return self._intake.write_signal(conn, row)

    def submit_signal(self, intent: Intent, raw: dict[str, Any] | None = None) -> Future[tuple[str, bool]]:
        """`record_signal` on the group commit: committed durably together with whatever else is queued (one
        fsync for a burst), off the caller's thread; the future has its result once committed."""
        row = signal_row(intent, SignalStatus.PENDING, utcnow(), raw=raw_json(raw))
        intake = self._intake
        return self.commits.submit(lambda conn: intake.write_signal(conn, row))

    def record_fanout(self, parent: Intent, raw: dict[str, Any] | None, children: Sequence[FanoutChild]
                      ) -> tuple[str, bool, list[bool]]:
        """Commit a fan-out parent and all its children in one transaction, or nothing when the parent is
        known (see `SignalIntake.write_fanout`)."""
        with self._prepared_write(durable=True) as conn:
            return self._intake.write_fanout(conn, parent, raw, list(children), utcnow())

    def submit_fanout(self, parent: Intent, raw: dict[str, Any] | None, children: Sequence[FanoutChild]
                      ) -> Future[tuple[str, bool, list[bool]]]:
        """`record_fanout` on the group commit (see `submit_signal`)."""
        intake, now, listed = self._intake, utcnow(), list(children)
        return self.commits.submit(lambda conn: intake.write_fanout(conn, parent, raw, listed, now))

    def signal_exists(self, account: str, dedup_key: str) -> str | None:
        with self._read() as session:
            where = (SignalRow.account == account, SignalRow.dedup_key == dedup_key)
            return session.exec(select(SignalRow.signal_id).where(*where)).first()

    def set_signal_status(
        self, signal_id: str, status: SignalStatus, reason: str | None = None, client_order_id: str | None = None
    ) -> None:
        """Move a signal to `status`; `reason`/`client_order_id` are only changed when given."""
        values: dict[str, Any] = {"status": SignalStatus(status).value, "updated_at": utcnow()}
        if reason is not None:
            values["reason"] = self._redact(reason)
        if client_order_id is not None:
            values["client_order_id"] = client_order_id
        with self._write() as session:
            stmt = update(SignalRow).where(col(SignalRow.signal_id) == signal_id).values(values)
            result = session.execute(stmt)
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise KeyError(f"unknown signal {signal_id!r}")

    def get_signal(self, signal_id: str) -> SignalRecord | None:
        """A signal with its orders and fills; a fan-out parent also with each child's."""
        with self._read() as session:
            return read_signal(session, signal_id)

    def signal_outcome(self, signal_id: str) -> tuple[SignalStatus, str | None] | None:
        """Only the signal's status and reason (None: unknown id)."""
        with self._read() as session:
            return outcome_of(session, signal_id)

    def signals_page(self, account: Accounts = None, after: str | None = None, limit: int = 100
                     ) -> Page[SignalSummary]:
        """Newest first (by arrival), `limit` at a time; `after` is the `next` of the previous page.

        Several accounts are read one at a time, each the newest `limit + 1` of `ix_signals_account_seq`,
        and merged: `account IN (...)` would sort every signal the accounts ever had."""
        before: int | None = None
        if after is not None:
            at, before = paging.decode(after)
            if at is not None:
                raise paging.BadCursor("this cursor belongs to another list")
        scopes: list[str | None] = [account] if account is None or isinstance(account, str) else [*sorted(set(account))]
        rows: list[SignalRow] = []
        with self._read() as session:
            for scope in scopes:
                stmt = only(select(SignalRow), SignalRow.account, scope)
                if before is not None:
                    stmt = stmt.where(col(SignalRow.seq) < before)
                rows += session.exec(stmt.order_by(col(SignalRow.seq).desc()).limit(limit + 1)).all()
        rows = sorted(rows, key=lambda r: r.seq or 0, reverse=True)[:limit + 1]
        rows, cursor = paging.page(rows, limit, lambda r: paging.encode(None, r.seq))
        return Page([summary_of(r) for r in rows], cursor)

    def unfinished_signals(self) -> list[tuple[Intent, SignalStatus]]:
        """PENDING and SUBMITTING signals in arrival order, for the workers to resume after a restart."""
        unfinished = [SignalStatus.PENDING.value, SignalStatus.SUBMITTING.value]
        with self._read() as session:
            rows = session.exec(
                select(SignalRow.intent_json, SignalRow.status)
                .where(col(SignalRow.status).in_(unfinished))
                .order_by(col(SignalRow.seq))
            ).all()
        return [(Intent.model_validate_json(js), SignalStatus(st)) for js, st in rows]

    # -- orders and fills ----------------------------------------------------------------------------------

    def upsert_order(self, order: Order, signal_id: str | None = None) -> None:
        """Insert or update by (account, broker_order_id); a late 'open' report never reopens a final one."""
        with self._prepared_write() as conn:
            self._hot.upsert_order(conn, order, signal_id)

    def finish_signal(self, signal_id: str, status: SignalStatus, reason: str | None, order: Order | None, *,
                      reports: Sequence[Order] = (), fills: Sequence[tuple[Fill, Decimal]] = ()
                      ) -> list[Decimal | None]:
        """A signal's final status, the order it placed, and the broker's reports that came in meanwhile
        (order updates, fills with their multiplier), in one transaction: one commit per signal on the hot
        path. Returns each fill's realized P&L, or None for a fill that was already recorded."""
        with self._prepared_write() as conn:
            return self._finish_writes(conn, signal_id, status, reason, order, reports, fills)

    def submit_finish(self, signal_id: str, status: SignalStatus, reason: str | None, order: Order | None, *,
                      reports: Sequence[Order] = (), fills: Sequence[tuple[Fill, Decimal]] = ()
                      ) -> Future[list[Decimal | None]]:
        """`finish_signal` on the group commit, in its transaction that does not wait for the disk: signals
        of several accounts that end together share one commit, made off the caller's thread."""
        reports, fills = list(reports), list(fills)
        return self.commits.submit(
            lambda conn: self._finish_writes(conn, signal_id, status, reason, order, reports, fills), durable=False)

    def _finish_writes(self, conn: Cursor, signal_id: str, status: SignalStatus, reason: str | None,
                       order: Order | None, reports: Sequence[Order], fills: Sequence[tuple[Fill, Decimal]]
                       ) -> list[Decimal | None]:
        realized: list[Decimal | None] = []
        for report in reports:
            self._hot.upsert_order(conn, report, None)
        for fill, multiplier in fills:
            try:
                realized.append(self._hot.apply_fill(conn, fill, multiplier))
            except DuplicateFill:  # a known fill changed nothing; the signal's writes go on
                realized.append(None)
        if order is not None:
            self._hot.upsert_order(conn, order, signal_id)
        self._hot.finish_signal(conn, signal_id, status, reason, order.client_order_id if order else None)
        return realized

    def orders(self, account: Accounts = None, open_only: bool = False, limit: int = 200) -> list[Order]:
        """Newest first."""
        stmt = _scoped_orders(account, open_only)
        stmt = stmt.order_by(col(OrderRow.created_at).desc(), col(OrderRow.id).desc()).limit(limit)
        with self._read() as session:
            return [order_of(r) for r in session.exec(stmt).all()]

    def child_orders(self, account: str, parent_order_id: str) -> list[Order]:
        """The orders placed under an entry (its bracket legs), however many orders came after them."""
        stmt = select(OrderRow).where(OrderRow.account == account, OrderRow.parent_order_id == parent_order_id)
        with self._read() as session:
            return [order_of(r) for r in session.exec(stmt.order_by(col(OrderRow.id))).all()]

    def has_open_exit(self, account: str, symbol: str, managed: Collection[str] = ()) -> bool:
        """Whether `symbol` has a resting exit in the account: a bracket leg, a trailing stop, or one of the
        `managed` plain stops the daemon trails (it is asked after every exit signal)."""
        rows = self._prepared_read(self._hot.open_orders_of, {"k_account": account, "k_symbol": symbol})
        return any(parent is not None or kind == OrderType.TRAILING_STOP.value or broker_id in managed
                   for broker_id, parent, kind in rows)

    def orders_page(self, account: Accounts = None, open_only: bool = False, after: str | None = None,
                    limit: int = 100) -> Page[Order]:
        """Newest first, `limit` at a time; `after` is the `next` of the previous page."""
        stmt = _scoped_orders(account, open_only)
        if after is not None:
            stmt = stmt.where(paging.before(col(OrderRow.created_at), col(OrderRow.id), after))
        stmt = stmt.order_by(col(OrderRow.created_at).desc(), col(OrderRow.id).desc()).limit(limit + 1)
        with self._read() as session:
            rows = list(session.exec(stmt).all())
        rows, cursor = paging.page(rows, limit, lambda r: paging.encode(r.created_at, r.id))
        return Page([order_of(r) for r in rows], cursor)

    def order_by_client_id(self, account: str, client_order_id: str) -> Order | None:
        stmt = (
            select(OrderRow)
            .where(OrderRow.account == account, OrderRow.client_order_id == client_order_id)
            .order_by(col(OrderRow.created_at).desc(), col(OrderRow.id).desc())
            .limit(1)
        )
        with self._read() as session:
            row = session.exec(stmt).first()
        return None if row is None else order_of(row)

    def record_fill(self, fill: Fill, multiplier: Decimal = Decimal(1)) -> Decimal | None:
        """Record a fill and apply it to the positions ledger atomically; None (no change) if known."""
        try:
            with self._prepared_write() as conn:
                return self._hot.apply_fill(conn, fill, multiplier)
        except DuplicateFill:
            return None  # the transaction rolled back, including a ledger row it may have created

    def _fill_rows(
        self, account: Accounts, since: datetime | None, newest_first: bool, limit: int | None,
        until: datetime | None = None,
    ) -> list[FillRow]:
        stmt = only(select(FillRow), FillRow.account, account)
        if since is not None:
            stmt = stmt.where(col(FillRow.filled_at) >= since)
        if until is not None:
            stmt = stmt.where(col(FillRow.filled_at) <= until)
        if newest_first:
            stmt = stmt.order_by(col(FillRow.filled_at).desc(), col(FillRow.id).desc())
        else:
            stmt = stmt.order_by(col(FillRow.filled_at), col(FillRow.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as session:
            return list(session.exec(stmt).all())

    def fills(
        self, account: str | None = None, since: datetime | None = None, limit: int = 500,
        until: datetime | None = None,
    ) -> list[Fill]:
        """Newest first (the newest `limit` up to `until`, when given)."""
        return [fill_of(r) for r in self._fill_rows(account, since, True, limit, until)]

    def fills_page(self, account: Accounts = None, since: datetime | None = None, after: str | None = None,
                   limit: int = 100) -> Page[Fill]:
        """Newest first, `limit` at a time; `after` is the `next` of the previous page."""
        stmt = only(select(FillRow), FillRow.account, account)
        if since is not None:
            stmt = stmt.where(col(FillRow.filled_at) >= since)
        if after is not None:
            stmt = stmt.where(paging.before(col(FillRow.filled_at), col(FillRow.id), after))
        stmt = stmt.order_by(col(FillRow.filled_at).desc(), col(FillRow.id).desc()).limit(limit + 1)
        with self._read() as session:
            rows = list(session.exec(stmt).all())
        rows, cursor = paging.page(rows, limit, lambda r: paging.encode(r.filled_at, r.id))
        return Page([fill_of(r) for r in rows], cursor)

    def fill_ids(self, account: str, since: datetime | None) -> set[str]:
        """Ids of the fills recorded for `account` since a time: one query, for reconciliation."""
        stmt = select(FillRow.fill_id).where(FillRow.account == account)
        if since is not None:
            stmt = stmt.where(col(FillRow.filled_at) >= since)
        with self._read() as session:
            return set(session.exec(stmt).all())

    def fills_with_pnl(self, account: str | None, since: datetime) -> list[tuple[Fill, Decimal]]:
        """Oldest first, each with the P&L it realized on the ledger."""
        return [(fill_of(r), r.realized_pnl) for r in self._fill_rows(account, since, False, None)]

    def journal_fills(self, account: Accounts) -> list[tuple[Fill, Decimal, Decimal]]:
        """Every fill oldest first with its realized P&L and multiplier, for the trade journal."""
        return [(fill_of(r), r.realized_pnl, r.multiplier) for r in self._fill_rows(account, None, False, None)]

    # -- positions -----------------------------------------------------------------------------------------

    def held(self, account: str, symbol: str) -> Decimal:
        """The signed quantity `account` holds in `symbol` by the store's ledger (0 when flat)."""
        return sum((p.quantity for p in self.positions(account) if p.symbol == symbol), ZERO)

    def positions(self, account: str | None = None) -> list[Position]:
        """Non-zero ledger positions, by account and symbol."""
        stmt = select(PositionRow).order_by(col(PositionRow.account), col(PositionRow.symbol))
        if account is not None:
            stmt = stmt.where(PositionRow.account == account)
        with self._read() as session:
            rows = session.exec(stmt).all()
        return [Position.model_validate(r, from_attributes=True) for r in rows if r.quantity != 0]

    def set_position(self, account: str, symbol: str, quantity: Decimal, average_price: Decimal) -> None:
        """Overwrite the ledger (reconciliation with the broker); the realized P&L so far is kept."""
        with self._write() as session:
            now = utcnow()
            key = {"account": account, "symbol": symbol}
            pos: PositionRow = self._locked_row(session, PositionRow, key, {**_FLAT, "updated_at": now})
            quantity, price = Decimal(str(quantity)), Decimal(str(average_price))
            pos.quantity, pos.average_price, pos.updated_at = quantity, price, now
            pos.cost_basis = abs(quantity) * price

    # -- reports -------------------------------------------------------------------------------------------

    def pnl_by_day(
        self, account: str | None, since: datetime, tz: str = "America/New_York",
        day_of: Callable[[datetime], date] | None = None,
    ) -> list[DailyPnl]:
        """Realized P&L, fees and fill count per (local calendar day in `tz`, account), oldest day first;
        `day_of` gives another day of a fill (a futures account's trading day)."""
        return daily_pnl(self.fills_with_pnl(account, since), tz, day_of)
