"""Wire models of the ProjectX (TopstepX) Gateway API and their mapping to and from traderd's domain types.

Response bodies are validated at the boundary; only what the adapter reads is modelled. The gateway may
send optional fields as null or leave them out, so everything the spec does not require is optional, and
unknown fields are ignored. Numbers arrive as JSON numbers and are read as `Decimal` (via `str`, never
through a binary float). The mapping half
(`order_body`, `to_order`, `to_fill`, `display_symbol`) is pure: no I/O, no adapter state.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import IntEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from brokers.base import OrderRejected
from brokers.symbols import front_alias
from daemon.domain import Fill, Order, OrderRequest, OrderStatus, OrderType, Side
from daemon.money import parse_decimal


class PxSide(IntEnum):
    BID = 0  # buy
    ASK = 1  # sell


class PxOrderType(IntEnum):
    UNKNOWN = 0
    LIMIT = 1
    MARKET = 2
    STOP_LIMIT = 3
    STOP = 4
    TRAILING_STOP = 5
    JOIN_BID = 6
    JOIN_ASK = 7


class PxOrderStatus(IntEnum):
    NONE = 0
    OPEN = 1
    FILLED = 2
    CANCELLED = 3
    EXPIRED = 4
    REJECTED = 5
    PENDING = 6
    PENDING_CANCELLATION = 7
    SUSPENDED = 8


class PxPositionType(IntEnum):
    UNDEFINED = 0
    LONG = 1
    SHORT = 2


def _aware(value: Any) -> Any:
    """ISO timestamps as aware datetimes (naive ones are UTC); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _decimal(value: Any) -> Decimal | None:
    return parse_decimal(value, "number", empty_is_none=True)


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
Time = Annotated[datetime | None, BeforeValidator(_aware)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Envelope(_Wire):
    """Every answer: HTTP 200 with `success`; on failure an `errorCode` and (maybe) an `errorMessage`."""

    success: bool = False
    error_code: int | None = Field(None, alias="errorCode")
    error_message: str | None = Field(None, alias="errorMessage")


class PxAccount(_Wire):
    id: int
    name: str = ""
    balance: Dec = Decimal(0)
    can_trade: bool = Field(True, alias="canTrade")
    simulated: bool | None = None


class PxContract(_Wire):
    id: str
    name: str
    description: str = ""
    tick_size: Dec = Field(alias="tickSize")
    tick_value: Dec = Field(alias="tickValue")
    active_contract: bool = Field(True, alias="activeContract")
    symbol_id: str | None = Field(None, alias="symbolId")

    @property
    def point_value(self) -> Decimal:
        return self.tick_value / self.tick_size


class PxOrder(_Wire):
    id: int
    account_id: int | None = Field(None, alias="accountId")
    contract_id: str = Field(alias="contractId")
    created: Time = Field(None, alias="creationTimestamp")
    updated: Time = Field(None, alias="updateTimestamp")
    status: int = PxOrderStatus.NONE
    type: int = PxOrderType.UNKNOWN
    side: PxSide
    size: int = 0
    limit_price: Dec | None = Field(None, alias="limitPrice")
    stop_price: Dec | None = Field(None, alias="stopPrice")
    fill_volume: int | None = Field(None, alias="fillVolume")
    filled_price: Dec | None = Field(None, alias="filledPrice")
    custom_tag: str | None = Field(None, alias="customTag")


class PxPosition(_Wire):
    id: int | None = None
    contract_id: str = Field(alias="contractId")
    created: Time = Field(None, alias="creationTimestamp")
    type: int = PxPositionType.UNDEFINED
    size: int = 0
    average_price: Dec = Field(Decimal(0), alias="averagePrice")

    @property
    def signed_size(self) -> int:
        return -abs(self.size) if self.type == PxPositionType.SHORT else abs(self.size)


class PxTrade(_Wire):
    """A half-turn trade: one fill of one order."""

    id: int
    account_id: int | None = Field(None, alias="accountId")
    contract_id: str = Field(alias="contractId")
    created: Time = Field(None, alias="creationTimestamp")
    price: Dec
    profit_and_loss: Dec | None = Field(None, alias="profitAndLoss")
    fees: Dec | None = None
    side: PxSide
    size: int
    voided: bool | None = False
    order_id: int = Field(alias="orderId")


class PxBar(_Wire):
    """One aggregate bar of /api/History/retrieveBars; `t` is when it opened."""

    t: Annotated[datetime, BeforeValidator(_aware)]
    o: Dec
    h: Dec
    l: Dec  # noqa: E741 - the gateway's field name
    c: Dec
    v: int = 0


class LoginAnswer(Envelope):
    token: str | None = None


class ValidateAnswer(Envelope):
    new_token: str | None = Field(None, alias="newToken")


class AccountsAnswer(Envelope):
    accounts: list[PxAccount] | None = None


class ContractsAnswer(Envelope):
    contracts: list[PxContract] | None = None


class ContractAnswer(Envelope):
    contract: PxContract | None = None


class PlaceAnswer(Envelope):
    order_id: int | None = Field(None, alias="orderId")


class OrdersAnswer(Envelope):
    orders: list[PxOrder] | None = None


class PositionsAnswer(Envelope):
    positions: list[PxPosition] | None = None


class TradesAnswer(Envelope):
    trades: list[PxTrade] | None = None


class BarsAnswer(Envelope):
    bars: list[PxBar] | None = None


# -- mapping ---------------------------------------------------------------------------------------------

TYPES_OUT = {
    OrderType.LIMIT: PxOrderType.LIMIT,
    OrderType.MARKET: PxOrderType.MARKET,
    OrderType.STOP: PxOrderType.STOP,
    OrderType.STOP_LIMIT: PxOrderType.STOP_LIMIT,
    OrderType.TRAILING_STOP: PxOrderType.TRAILING_STOP,
}
TYPES_IN: dict[int, OrderType] = {
    PxOrderType.MARKET: OrderType.MARKET,
    PxOrderType.STOP: OrderType.STOP,
    PxOrderType.TRAILING_STOP: OrderType.TRAILING_STOP,
    PxOrderType.STOP_LIMIT: OrderType.STOP_LIMIT,
}  # limit, join bid/ask: limit
STATUS: dict[int, OrderStatus] = {
    PxOrderStatus.FILLED: OrderStatus.FILLED,
    PxOrderStatus.CANCELLED: OrderStatus.CANCELLED,
    PxOrderStatus.EXPIRED: OrderStatus.EXPIRED,
    PxOrderStatus.REJECTED: OrderStatus.REJECTED,
}  # open, pending, pending cancellation, suspended: still working


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def num(value: Decimal) -> int | float:
    """A Decimal as a JSON number (the spec's `number/decimal`); tick prices round-trip exactly."""
    return int(value) if value == value.to_integral_value() else float(value)


def display_symbol(contract_name: str, on: date) -> str:
    """`ES1!` if the contract is the front month of an index root on `on`, else its name (`ESH7`)."""
    return front_alias(contract_name, on) or contract_name


def pick_account(accounts: list[PxAccount], account_id: int | None, name: str | None) -> PxAccount | None:
    """The configured account (by id, else by name), else the first that can trade, else the first."""
    if account_id is not None:
        return next((a for a in accounts if a.id == account_id), None)
    if name is not None:
        return next((a for a in accounts if a.name == name), None)
    return next((a for a in accounts if a.can_trade), accounts[0] if accounts else None)


def order_body(request: OrderRequest, contract: PxContract, account_id: int) -> dict[str, Any]:
    """The `/api/Order/place` body; `OrderRejected` (nothing sent) for what the gateway could not take."""
    size = request.quantity
    if size != size.to_integral_value():
        raise OrderRejected(f"ProjectX trades whole contracts, not {size.normalize():f}; nothing was sent")
    body: dict[str, Any] = {
        "accountId": account_id, "contractId": contract.id, "type": int(TYPES_OUT[request.order_type]),
        "side": int(PxSide.BID if request.side is Side.BUY else PxSide.ASK), "size": int(size),
        "customTag": request.client_order_id,
    }
    trail = request.trail.distance if request.trail is not None else None
    if request.order_type is OrderType.TRAILING_STOP:  # the gateway trails by a price distance and keeps the stop
        if trail is None or trail % contract.tick_size:
            raise OrderRejected(f"a trailing stop trails by a multiple of the tick {contract.tick_size}")
        body["trailPrice"] = num(trail)
    for key, price in (("limitPrice", request.limit_price), ("stopPrice", request.stop_price)):
        if price is not None and not (key == "stopPrice" and request.order_type is OrderType.TRAILING_STOP):
            if price <= 0 or price % contract.tick_size:
                raise OrderRejected(f"{key} {price} is not a multiple of the tick {contract.tick_size}")
            body[key] = num(price)
    if request.take_profit is None and request.stop_loss is None:
        return body
    # Brackets are tick offsets from the fill: measured from the entry's own price, or the signal's price.
    entry = {OrderType.LIMIT: request.limit_price, OrderType.STOP_LIMIT: request.limit_price,
             OrderType.STOP: request.stop_price}.get(request.order_type, request.reference_price)
    if entry is None:
        raise OrderRejected("a bracket on a market order needs the signal's price to place its exits in ticks")
    for key, target, kind, direction in (
        ("takeProfitBracket", request.take_profit, PxOrderType.LIMIT, request.side.sign),
        ("stopLossBracket", request.stop_loss, PxOrderType.STOP if trail is None else PxOrderType.TRAILING_STOP,
         -request.side.sign),
    ):
        if target is None:
            continue
        ticks = int(((target - entry) / contract.tick_size).to_integral_value())
        if ticks * direction <= 0:
            raise OrderRejected(f"{key} {target} is on the wrong side of the entry {entry} for a "
                                f"{request.side.value}; nothing was sent")
        body[key] = {"ticks": ticks, "type": int(kind)}  # signed: the gateway wants < 0 for a long's stop
    return body


def provisional_order(request: OrderRequest, order_id: int, account: str, symbol: str) -> Order:
    """What we know of a placed order whose read-back failed; polling and reconciliation correct it."""
    return Order(broker_order_id=str(order_id), client_order_id=request.client_order_id, account=account,
                 symbol=symbol, side=request.side, quantity=request.quantity, order_type=request.order_type,
                 status=OrderStatus.NEW, limit_price=request.limit_price, stop_price=request.stop_price)


def to_order(
    o: PxOrder, *, account: str, symbol: str, client_order_id: str, parent: int | None, created: datetime
) -> Order:
    filled = Decimal(o.fill_volume or 0)
    status = STATUS.get(o.status) or (OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.NEW)
    return Order(
        broker_order_id=str(o.id),
        client_order_id=client_order_id,
        account=account,
        symbol=symbol,
        side=Side.BUY if o.side == PxSide.BID else Side.SELL,
        quantity=Decimal(o.size),
        order_type=TYPES_IN.get(o.type, OrderType.LIMIT),
        status=status,
        filled_quantity=filled,
        average_fill_price=o.filled_price,
        limit_price=o.limit_price,
        stop_price=o.stop_price,
        parent_order_id=None if parent is None else str(parent),
        oco_group=None if parent is None else str(parent),
        created_at=o.created or created,
        updated_at=o.updated or o.created or created,
    )


def to_fill(t: PxTrade, *, account: str, symbol: str, client_order_id: str, filled_at: datetime) -> Fill:
    return Fill(
        fill_id=str(t.id), broker_order_id=str(t.order_id), client_order_id=client_order_id, account=account,
        symbol=symbol, side=Side.BUY if t.side == PxSide.BID else Side.SELL, quantity=Decimal(t.size),
        price=t.price, commission=t.fees or Decimal(0), filled_at=filled_at,
    )


class PxBarUnit(IntEnum):
    SECOND = 1
    MINUTE = 2
    HOUR = 3
    DAY = 4


MAX_BARS = 20_000  # the gateway's limit per retrieveBars request


def bar_unit(seconds: int) -> tuple[PxBarUnit, int]:
    """(unit, unitNumber) of a bar length: the largest unit that divides it (90 s -> 90 seconds)."""
    if seconds <= 0:
        raise ValueError(f"a bar length must be positive, not {seconds} s")
    for unit, size in ((PxBarUnit.DAY, 86400), (PxBarUnit.HOUR, 3600), (PxBarUnit.MINUTE, 60)):
        if seconds % size == 0:
            return unit, seconds // size
    return PxBarUnit.SECOND, seconds


def bars_bodies(contract_id: str, seconds: int, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The retrieveBars request bodies covering [start, end), each asking for at most `MAX_BARS` bars."""
    unit, number = bar_unit(seconds)
    span = timedelta(seconds=seconds * MAX_BARS)
    bodies, at = [], start
    while at < end:
        until = min(end, at + span)
        bodies.append({"contractId": contract_id, "live": False, "startTime": iso(at), "endTime": iso(until),
                       "unit": int(unit), "unitNumber": number, "limit": MAX_BARS, "includePartialBar": False})
        at = until
    return bodies
