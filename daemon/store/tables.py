"""Schema of the durable store: column types, SQLModel tables, the records it returns and the ledger math.

The schema itself is owned by the Alembic migrations in `daemon/store/migrations/versions/`; these classes must
match them. A new column or table means: change the class here *and* add a new revision (never edit an
applied one).

Column types are chosen so both SQLite and PostgreSQL give back exactly what was stored:
- money and quantities are `DecimalText`: the `str()` of the Decimal in a VARCHAR, so `Decimal("1.50")` comes
  back as `Decimal("1.50")` (no float detour on SQLite, no scale padding or rounding on PostgreSQL);
- timestamps are `UTCDateTime`: aware datetimes in, aware UTC datetimes out (SQLite stores naive UTC text,
  PostgreSQL a `timestamptz`).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from daemon.domain import ZERO, AccountState, Violation


class DecimalText(TypeDecorator[Decimal]):
    """A Decimal stored as its exact string form."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            value = Decimal(str(value))
        if not value.is_finite():
            raise ValueError(f"refusing to store non-finite Decimal {value!r}")
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC and returned as aware UTC on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only accepts timezone-aware datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Fixed-width naive UTC text: sorts and compares correctly as a string.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class SignalRow(SQLModel, table=True):
    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("signal_id", name="uq_signals_signal_id"),
        UniqueConstraint("account", "dedup_key", name="uq_signals_account_dedup"),
        Index("ix_signals_status_account", "status", "account"),  # the unfinished signals (of an account)
        Index("ix_signals_parent_id", "parent_id"),
        Index("ix_signals_account_seq", "account", "seq"),  # an account's newest signals, by its LIMIT
    )

    seq: int | None = Field(default=None, primary_key=True)  # arrival order
    signal_id: str
    account: str
    dedup_key: str
    source: str
    status: str
    reason: str | None = None
    intent_json: str
    raw_json: str | None = None
    received_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    client_order_id: str | None = None
    parent_id: str | None = None  # a fan-out child: the signal the alert was accepted as
    route_json: str | None = None  # a fan-out child: multiplier, symbol map and quantity it was given


class OrderRow(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account", "broker_order_id", name="uq_orders_account_broker_id"),
        Index("ix_orders_client_order_id", "client_order_id"),
        Index("ix_orders_signal_id", "signal_id"),
        Index("ix_orders_account_created", "account", "created_at"),
        Index("ix_orders_account_root", "account", "client_order_root"),
        Index("ix_orders_status_account", "status", "account"),  # the open orders (of an account)
        Index("ix_orders_account_parent", "account", "parent_order_id"),  # an entry's bracket legs
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str
    broker_order_id: str
    client_order_id: str
    signal_id: str | None = None
    client_order_root: str | None = None  # see order_root(): finds a signal's bracket legs by exact match
    symbol: str
    side: str
    quantity: Decimal = Field(sa_type=DecimalText)
    order_type: str
    status: str
    filled_quantity: Decimal = Field(sa_type=DecimalText)
    average_fill_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    limit_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    stop_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    time_in_force: str
    parent_order_id: str | None = None
    oco_group: str | None = None
    reject_reason: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class FillRow(SQLModel, table=True):
    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("account", "fill_id", name="uq_fills_account_fill_id"),
        Index("ix_fills_broker_order_id", "broker_order_id"),
        Index("ix_fills_filled_at", "filled_at"),
        Index("ix_fills_account_filled_at", "account", "filled_at"),  # an account's fills since a time
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str
    fill_id: str
    broker_order_id: str
    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal = Field(sa_type=DecimalText)
    price: Decimal = Field(sa_type=DecimalText)
    commission: Decimal = Field(sa_type=DecimalText)
    filled_at: datetime = Field(sa_type=UTCDateTime)
    realized_pnl: Decimal = Field(sa_type=DecimalText)
    multiplier: Decimal = Field(sa_type=DecimalText)


class PositionRow(SQLModel, table=True):
    __tablename__ = "positions"

    account: str = Field(primary_key=True)
    symbol: str = Field(primary_key=True)
    quantity: Decimal = Field(sa_type=DecimalText)
    average_price: Decimal = Field(sa_type=DecimalText)  # cost_basis / |quantity|, for readers
    cost_basis: Decimal = Field(sa_type=DecimalText)  # |quantity| * average price: what the ledger math uses
    realized_pnl: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = Field(sa_type=UTCDateTime)


_ROOT = re.compile(r"^td[0-9a-f]{30}")


def order_root(client_order_id: str) -> str:
    """The id the engine derived for a signal (`daemon.domain.client_order_id`) that a broker's leg ids
    extend ("<id>-tp", "<id>-sl"); any other id is its own root."""
    found = _ROOT.match(client_order_id)
    return found.group(0) if found else client_order_id


class SnapshotRow(SQLModel, table=True):
    __tablename__ = "account_snapshots"
    __table_args__ = (Index("ix_account_snapshots_account_as_of", "account", "as_of"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    as_of: datetime = Field(sa_type=UTCDateTime)
    equity: Decimal = Field(sa_type=DecimalText)
    cash: Decimal = Field(sa_type=DecimalText)
    state_json: str  # AccountState.model_dump_json(): every field, including ones added later

    @classmethod
    def of(cls, state: AccountState) -> SnapshotRow:
        return cls(
            account=state.account,
            as_of=state.as_of,
            equity=state.equity,
            cash=state.cash,
            state_json=state.model_dump_json(),
        )


class ViolationRow(SQLModel, table=True):
    __tablename__ = "violations"
    __table_args__ = (Index("ix_violations_account_at", "account", "at"), Index("ix_violations_at", "at"))

    id: int | None = Field(default=None, primary_key=True)
    account: str
    rule: str
    detail: str
    numbers_json: str
    signal_id: str | None = None
    symbol: str | None = None
    at: datetime = Field(sa_type=UTCDateTime)

    @classmethod
    def of(cls, v: Violation) -> ViolationRow:
        numbers = json.dumps(v.numbers, ensure_ascii=False)
        return cls(**v.model_dump(exclude={"numbers"}), numbers_json=numbers)

    def to_violation(self) -> Violation:
        return Violation(
            account=self.account,
            rule=self.rule,
            detail=self.detail,
            numbers=json.loads(self.numbers_json),
            signal_id=self.signal_id,
            symbol=self.symbol,
            at=self.at,
        )


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str
    action: str
    target: str | None = None
    detail: str | None = None
    ok: bool


class ControlRow(SQLModel, table=True):
    __tablename__ = "account_controls"

    account: str = Field(primary_key=True)
    paused: bool = False
    locked: bool = False
    reason: str | None = None
    updated_at: datetime = Field(sa_type=UTCDateTime)
    updated_by: str = ""


class LeaseRow(SQLModel, table=True):
    """Who executes an account (or the singleton jobs) on a shared store; `token` grows with every new owner."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True)  # "account:<name>" or "singleton"
    owner: str | None = None  # the holding process (unique per run)
    holder: str | None = None  # its name as people read it (cluster.name)
    token: int = Field(default=0, sa_type=BigInteger)
    acquired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    renewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    released: bool = False
    release_requested: bool = False


class KvRow(SQLModel, table=True):
    """JSON documents by (namespace, key); see `daemon.store.state`."""

    __tablename__ = "kv_state"

    namespace: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value_json: str
    updated_at: datetime = Field(sa_type=UTCDateTime)


_SCALE = Decimal("1e-10")  # average prices and the cost of partial closes are kept to 10 decimal places


def tidy(value: Decimal) -> Decimal:
    """`value` unchanged if it has at most 10 decimal places, else rounded (half even) to 10 and trimmed."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -10:
        return value
    with localcontext(prec=60):
        rounded = value.quantize(_SCALE).normalize()
        return rounded.quantize(Decimal(1)) if rounded.as_tuple().exponent > 0 else rounded  # type: ignore[operator]


def average_of(quantity: Decimal, cost: Decimal) -> Decimal:
    if quantity == 0:
        return ZERO
    with localcontext(prec=60):
        return tidy(cost / abs(quantity))


def apply_fill(
    quantity: Decimal, cost: Decimal, signed_qty: Decimal, price: Decimal, multiplier: Decimal
) -> tuple[Decimal, Decimal, Decimal]:
    """One average-cost ledger step: returns (new quantity, new cost basis, realized P&L of this fill).

    `cost` is the unsigned cost basis of the open quantity (|quantity| * average price). Adding adds
    `qty * price` exactly; a full close releases the whole basis, so the P&L of a round trip always sums to
    exactly proceeds minus cost; a partial close releases a pro-rata share (rounded to 10 places).
    """
    if signed_qty == 0:
        return quantity, cost, ZERO
    with localcontext(prec=60):
        new_qty = quantity + signed_qty
        if quantity == 0 or (quantity > 0) == (signed_qty > 0):  # opening or adding
            return new_qty, cost + abs(signed_qty) * price, ZERO
        closed = min(abs(signed_qty), abs(quantity))
        released = cost if closed == abs(quantity) else tidy(cost * closed / abs(quantity))
        sign = 1 if quantity > 0 else -1
        realized = (price * closed - released) * sign * multiplier
        if new_qty == 0 or (new_qty > 0) == (quantity > 0):  # (partial) close keeps the average
            return new_qty, cost - released, realized
        return new_qty, abs(new_qty) * price, realized  # flipped through zero: the rest opens at the price


class OutboxRow(SQLModel, table=True):
    """One alert for one destination (transport + chat), pending until delivered; see `daemon.chat.outbox`."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_transport", "status", "transport", "id"),)  # what is to send

    id: int | None = Field(default=None, primary_key=True)
    transport: str
    chat: str
    kind: str
    text: str
    silent: bool = False
    status: str = "pending"  # pending | sent | dead
    attempts: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    image: bytes | None = Field(default=None, sa_type=LargeBinary)  # a PNG sent with the text, until it falls back
