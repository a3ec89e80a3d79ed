"""Value types shared by every part of traderd: intents, orders, fills, positions, account state, events.

The ground floor: it imports only the order-shape values (`daemon.shapes`) from the project. Money and quantities
are `Decimal`, timestamps aware UTC; frozen pydantic models validate at construction and serialise to JSON as is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from daemon.shapes import AtrOffset, Ladder, PriceOffset, QuantityType, TimeExit, Trail

ZERO = Decimal(0)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class Action(StrEnum):
    """What a signal asks for. `flatten` closes everything on the account (chat, API, CLI, risk)."""

    BUY = "buy"
    SELL = "sell"
    EXIT = "exit"
    ADD = "add"  # adds to the position on its own side; nothing when flat (TradersPost's "add")
    CANCEL = "cancel"
    FLATTEN = "flatten"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"  # a stop that follows the price (`OrderRequest.trail`); only closes


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(StrEnum):
    NEW = "new"  # accepted by the broker, resting
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class SignalStatus(StrEnum):
    PENDING = "pending"  # committed, waiting for its account's worker
    SUBMITTING = "submitting"  # worker sent (or is about to send) the order; restart must look it up first
    EXECUTED = "executed"  # order placed (or nothing needed: target already reached)
    REJECTED = "rejected"  # a risk rule refused it
    EXPIRED = "expired"  # too old to act on when the worker reached it
    FAILED = "failed"  # the broker refused it or could not be reached
    SKIPPED = "skipped"  # a fan-out child not sent (multiplier 0, quantity rounded to 0, account disabled)
    FANNED_OUT = "fanned_out"  # a fan-out parent: its children carry the outcomes

    @property
    def is_final(self) -> bool:
        return self not in (SignalStatus.PENDING, SignalStatus.SUBMITTING)


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Intent(_Value):
    """A validated request to trade, whatever its source (webhook, strategy, chat, API, risk monitor)."""

    signal_id: str
    dedup_key: str
    account: str
    source: Literal["tradingview", "strategy", "chat", "api", "cli", "risk", "copy", "timer"] = "tradingview"
    action: Action
    symbol: str = ""  # empty only for account-wide actions (flatten, cancel all)
    quantity: Decimal | None = None
    target_position: Decimal | None = None  # signed; the engine trades the difference to reach it
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    price: Decimal | None = None  # reference price at the signal ({{close}}); the paper broker fills at it
    take_profit: Decimal | PriceOffset | AtrOffset | Ladder | None = None  # a price, a distance, levels
    stop_loss: Decimal | PriceOffset | AtrOffset | None = None
    trailing_stop: PriceOffset | None = None  # the stop trails the best price by this (an entry's exit, or the order)
    time_exit: TimeExit | None = None  # an entry's position is closed at market then (daemon.strategy.time_exits)
    closes: Side | None = None  # an exit only of a position on this side (a time exit must not close a new one)
    quantity_type: QuantityType = QuantityType.FIXED_QUANTITY
    percent_of_position: Decimal | None = None  # an exit of this percent of the position (0 < p <= 100)
    time_in_force: TimeInForce = TimeInForce.DAY
    strategy: str | None = None
    comment: str | None = None
    received_at: AwareDatetime = Field(default_factory=utcnow)
    signal_time: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None  # past this the worker expires it instead of trading


def client_order_id(account: str, dedup_key: str, leg: str = "") -> str:
    """The id sent to the broker, derived from the signal so a retry or restart finds the order again.

    32 hex characters fit every broker's limit (Alpaca 128, ProjectX customTag, Tradovate clOrdId 64).
    """
    digest = hashlib.sha256(f"{account}\x00{dedup_key}\x00{leg}".encode()).hexdigest()
    return "td" + digest[:30]


class OrderRequest(_Value):
    """What the engine asks a broker to place."""

    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal = Field(gt=0)
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    take_profit: Decimal | None = None  # bracket child: limit exit
    stop_loss: Decimal | None = None  # bracket child: stop exit
    trail: Trail | None = None  # a trailing_stop order's trail, or a trailing bracket stop (where native)
    reference_price: Decimal | None = None  # last price the caller saw; used by the paper broker
    reduce_only: bool = False
    expires_at: AwareDatetime | None = None  # nothing is sent (or resent) after this: the signal's deadline


class Order(_Value):
    """A broker's view of one order."""

    broker_order_id: str
    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    status: OrderStatus
    filled_quantity: Decimal = ZERO
    average_fill_price: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.DAY
    parent_order_id: str | None = None  # bracket children point to their entry
    oco_group: str | None = None  # children that cancel each other share a group
    reject_reason: str | None = None
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)


class Fill(_Value):
    fill_id: str  # unique per broker; recording the same fill twice is a no-op
    broker_order_id: str
    client_order_id: str
    account: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    commission: Decimal = ZERO
    filled_at: AwareDatetime = Field(default_factory=utcnow)


class Position(_Value):
    account: str
    symbol: str
    quantity: Decimal  # signed: long > 0, short < 0
    average_price: Decimal
    market_price: Decimal | None = None
    unrealized_pnl: Decimal = ZERO
    realized_pnl: Decimal = ZERO


class AccountState(_Value):
    account: str
    broker: str
    currency: str = "USD"
    cash: Decimal
    equity: Decimal  # cash + market value of positions (stocks) or balance + open P&L (futures)
    buying_power: Decimal | None = None
    # Margin accounts, where the broker reports them: day-trading buying power left now, and the equity and
    # maintenance margin requirement at the previous close (from which FINRA 4210 computes it).
    day_trading_buying_power: Decimal | None = None
    prior_close_equity: Decimal | None = None
    maintenance_margin: Decimal | None = None
    realized_pnl: Decimal = ZERO  # since the account (paper) or session start, as the broker reports
    unrealized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    as_of: AwareDatetime = Field(default_factory=utcnow)


class Violation(_Value):
    account: str
    rule: str  # e.g. "max_order_quantity"
    detail: str  # plain words, with the numbers
    numbers: dict[str, str] = Field(default_factory=dict)  # limit / used / requested, as strings
    signal_id: str | None = None
    symbol: str | None = None
    at: AwareDatetime = Field(default_factory=utcnow)


class FlattenReport(_Value):
    """What a flatten did, so the reply can say exactly that."""

    account: str
    cancelled: list[Order] = Field(default_factory=list)
    closing: list[Order] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


EventKind = Literal[
    "signal_accepted", "signal_rejected", "signal_expired", "signal_failed", "order", "fill", "violation",
    "flatten", "paused", "resumed", "daemon", "broker", "fanout",
]


class Event(_Value):
    """Something worth telling the trader or the outside world; fanned out by the engine's event bus."""

    kind: EventKind
    account: str | None = None
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: AwareDatetime = Field(default_factory=utcnow)


Period = Literal["today", "week", "month"]  # a P&L period: since local midnight, Monday, or the 1st
PERIODS: tuple[Period, ...] = ("today", "week", "month")


# --------------------------------------------------------------------------- chat-ops value types
# The chat transports and the command core speak these; here, the transports import only the ground floor.

ChatTransport = Literal["telegram", "discord"]
ChatRole = Literal["viewer", "operator"]


class ChatIdentity(_Value):
    """Who is talking, and where. Ids are strings (Telegram and Discord ids exceed JS-safe integers)."""

    transport: ChatTransport
    user_id: str
    chat_id: str
    guild_id: str | None = None  # Discord server; None for DMs and Telegram
    user_name: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.transport}:{self.user_id}"


class ChatRequest(ChatIdentity):
    command: str  # lower case, without "/" and "@botname"
    args: list[str] = Field(default_factory=list)
    text: str = ""

    @classmethod
    def from_text(
        cls, transport: ChatTransport, user_id: str | int, chat_id: str | int, text: str, **extra: str | None
    ) -> ChatRequest | None:
        """Parse "/pnl@MyBot week acct1"; None when the text is not a command."""
        words = text.strip().split()
        if not words or not words[0].startswith("/") or len(words[0]) < 2:
            return None
        command = words[0][1:].split("@", 1)[0].lower()
        return cls(
            transport=transport,
            user_id=str(user_id),
            chat_id=str(chat_id),
            command=command,
            args=words[1:],
            text=text,
            **extra,
        )


class ChatReply(_Value):
    text: str
    buttons: list[tuple[str, str]] = Field(default_factory=list)  # (label, callback token)
    silent: bool = False
    ephemeral: bool = False  # only the caller sees it where the transport supports it (Discord)
    image: bytes | None = None  # a PNG sent with the text (a photo on Telegram, an attachment on Discord)


class StrategyStatus(_Value):
    """One scheduled strategy as the API and chat show it."""

    name: str
    strategy: str
    account: str
    symbol: str
    timeframe: str
    status: Literal["running", "paused", "disabled"]
    error: str | None = None
    last_bar_end: AwareDatetime | None = None
    last_signal: str | None = None
    last_signal_at: AwareDatetime | None = None
    next_run: datetime | None = None


class StrategyControls(Protocol):
    """What the API and chat may do with the scheduled strategies (the strategy runner implements it)."""

    def status(self) -> list[StrategyStatus]: ...
    def pause(self, name: str, actor: str) -> None: ...
    def resume(self, name: str, actor: str) -> None: ...


class ChatHandler(Protocol):
    """What a transport calls (`daemon.chat.commands.ChatOps` implements it): a command, or a button press."""

    async def handle(self, request: ChatRequest) -> ChatReply | None: ...
    async def confirm(self, token: str, who: ChatIdentity) -> ChatReply | None: ...


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar. `start` is when it opened and `end` when it closed (both aware, UTC inside)."""

    symbol: str
    start: datetime
    end: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("bar times must be timezone-aware")
        if not self.low <= min(self.open, self.close) or not max(self.open, self.close) <= self.high:
            raise ValueError(f"bar {self.symbol} {self.start.isoformat()}: low/high do not contain open/close")
