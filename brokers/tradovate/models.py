"""Tradovate wire layer: validated response models, the enum maps, and orders as domain types and as request bodies.

The models read only the fields the adapter uses and ignore the rest, so a broker adding fields breaks
nothing; a missing or mistyped field we rely on is a `BrokerError` naming the call. The mapping functions
(`order_state`, `build_order`, `provisional_order`, `order_body`) are pure: no I/O, no adapter state.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from brokers.base import BrokerError, OrderNotFound, OrderRejected
from daemon.domain import AccountState, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

STATUS = {
    "Filled": OrderStatus.FILLED,
    "Completed": OrderStatus.FILLED,
    "Canceled": OrderStatus.CANCELLED,
    "Expired": OrderStatus.EXPIRED,
    "Rejected": OrderStatus.REJECTED,
}  # Working, Suspended (bracket legs waiting for their entry), Pending*, Unknown: still open
ORDER_TYPE_OUT = {
    OrderType.MARKET: "Market", OrderType.LIMIT: "Limit", OrderType.STOP: "Stop", OrderType.STOP_LIMIT: "StopLimit",
    OrderType.TRAILING_STOP: "TrailingStop",
}
ORDER_TYPE_IN = {v: k for k, v in ORDER_TYPE_OUT.items()} | {"MIT": OrderType.LIMIT}
TIF_OUT = {TimeInForce.DAY: "Day", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
TIF_IN = {v: k for k, v in TIF_OUT.items()}


def parse_time(value: str | None) -> datetime | None:
    """Tradovate timestamps (`2026-01-02T14:30:00.000Z`) as aware UTC datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def wire_number(value: Decimal) -> int | float:
    """A Decimal price/quantity as a JSON number (the API has no string decimals); ints stay ints."""
    return int(value) if value == value.to_integral_value() else float(value)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AccessToken(_Wire):
    accessToken: str
    expirationTime: str
    userId: int | None = None  # the websocket's `user/syncrequest` subscribes to this user


class TvAccount(_Wire):
    id: int
    name: str
    active: bool = True
    userId: int | None = None


class TvContract(_Wire):
    id: int
    name: str


class TvOrder(_Wire):
    id: int
    accountId: int
    contractId: int
    timestamp: str
    action: str
    ordStatus: str | None = None
    parentId: int | None = None
    ocoId: int | None = None


class TvOrderVersion(_Wire):
    id: int
    orderId: int
    orderQty: int
    orderType: str
    price: Decimal | None = None
    stopPrice: Decimal | None = None
    pegDifference: Decimal | None = None  # a trailing stop's signed distance from the best price
    timeInForce: str | None = None


class TvCommand(_Wire):
    id: int
    orderId: int
    clOrdId: str | None = None
    commandType: str


class TvFill(_Wire):
    id: int
    orderId: int
    contractId: int
    timestamp: str
    action: str
    qty: int
    price: Decimal
    active: bool = True


class TvPosition(_Wire):
    id: int
    accountId: int
    contractId: int
    netPos: int
    netPrice: Decimal | None = None


class TvCashSnapshot(_Wire):
    errorText: str | None = None
    totalCashValue: Decimal = Decimal(0)
    netLiq: Decimal | None = None
    openPnL: Decimal = Decimal(0)
    realizedPnL: Decimal = Decimal(0)
    totalPnL: Decimal | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def parse_list(model: type[M], data: Any, what: str) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data or [])  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def failure_of(data: Any) -> str | None:
    """The broker's reason when an HTTP 200 answer is a business failure; None when it succeeded."""
    if not isinstance(data, dict):
        return None
    reason = data.get("failureReason")
    if reason and reason != "Success":
        text = data.get("failureText") or ""
        return f"{reason}: {text}" if text else str(reason)
    if data.get("errorText"):
        return str(data["errorText"])
    return None


def order_number(broker_order_id: str) -> int:
    """Tradovate's numeric order id; `OrderNotFound` for anything else."""
    if not broker_order_id.isdigit():
        raise OrderNotFound(f"tradovate order ids are numbers, not {broker_order_id!r}")
    return int(broker_order_id)


def order_state(order: TvOrder, fills: Iterable[TvFill]) -> tuple[OrderStatus, Decimal]:
    """(status, filled quantity) of an order from its `ordStatus` and its fills."""
    filled = Decimal(sum(f.qty for f in fills if f.orderId == order.id))
    status = STATUS.get(order.ordStatus or "")
    if status is None:
        status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
    return status, filled


def build_order(raw: TvOrder, fills: Iterable[TvFill], version: TvOrderVersion | None, cid: str, account: str,
                symbol: str, now: datetime) -> Order:
    """The domain Order from the Order entity, its latest OrderVersion (qty, type, prices) and its fills."""
    mine = [f for f in fills if f.orderId == raw.id]
    status, filled = order_state(raw, mine)
    average = sum((f.price * f.qty for f in mine), Decimal(0)) / filled if filled else None
    created = parse_time(raw.timestamp) or now
    latest = max((t for f in mine if (t := parse_time(f.timestamp))), default=created)
    return Order(
        broker_order_id=str(raw.id), client_order_id=cid, account=account, symbol=symbol,
        side=Side.BUY if raw.action == "Buy" else Side.SELL,
        quantity=Decimal(version.orderQty) if version else filled,
        order_type=ORDER_TYPE_IN.get(version.orderType, OrderType.MARKET) if version else OrderType.MARKET,
        status=status, filled_quantity=filled, average_fill_price=average,
        limit_price=version.price if version else None,
        stop_price=version.stopPrice if version else None,
        time_in_force=TIF_IN.get((version.timeInForce if version else None) or "Day", TimeInForce.DAY),
        parent_order_id=str(raw.parentId) if raw.parentId else None,
        oco_group=str(raw.parentId or min(raw.id, raw.ocoId)) if raw.ocoId else None,
        created_at=created, updated_at=max(latest, created),
    )


def to_fill(raw: TvFill, cid: str, account: str, symbol: str, now: datetime) -> Fill:
    """A Fill entity as a domain Fill, named by Tradovate's own fill id."""
    return Fill(fill_id=str(raw.id), broker_order_id=str(raw.orderId), client_order_id=cid, account=account,
                symbol=symbol, side=Side.BUY if raw.action == "Buy" else Side.SELL, quantity=Decimal(raw.qty),
                price=raw.price, filled_at=parse_time(raw.timestamp) or now)


def to_account_state(snap: TvCashSnapshot, what: str, account: str, broker: str, now: datetime) -> AccountState:
    """A cash balance snapshot as an AccountState (equity: net liquidation value, else cash + open P&L)."""
    if snap.errorText:
        raise BrokerError(f"{what}: {snap.errorText}")
    equity = snap.netLiq if snap.netLiq is not None else snap.totalCashValue + snap.openPnL
    return AccountState(account=account, broker=broker, cash=snap.totalCashValue, equity=equity,
                        realized_pnl=snap.realizedPnL, unrealized_pnl=snap.openPnL, as_of=now)


def pick_account(accounts: list[TvAccount], account_id: int | None, spec: str | None) -> TvAccount | None:
    """The configured account (by id, else by name), else the first."""
    if account_id is not None:
        return next((a for a in accounts if a.id == account_id), None)
    return next((a for a in accounts if spec in (None, a.name)), None)


def provisional_order(request: OrderRequest, order_id: int, symbol: str, now: datetime) -> Order:
    """What we know of a placed order whose read-back failed; polling and reconciliation correct it."""
    return Order(broker_order_id=str(order_id), client_order_id=request.client_order_id, account=request.account,
                 symbol=symbol, side=request.side, quantity=request.quantity, order_type=request.order_type,
                 status=OrderStatus.NEW, limit_price=request.limit_price, stop_price=request.stop_price,
                 time_in_force=request.time_in_force, created_at=now, updated_at=now)


def order_body(
    request: OrderRequest, contract: str, account_id: int | None, account_spec: str | None
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of a placement: `placeorder`, or `placeoso` with take-profit/stop-loss legs."""
    cid, qty = request.client_order_id, request.quantity
    if qty != qty.to_integral_value():
        raise OrderRejected(f"order {cid}: Tradovate trades whole contracts, not {qty.normalize():f}")
    kind = request.order_type
    needs_limit = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)
    peg = None if request.trail is None or request.trail.distance is None else request.trail.distance
    if kind is OrderType.TRAILING_STOP and peg is None:
        raise OrderRejected(f"order {cid}: a trailing stop trails by a price distance here; nothing was sent")
    if (needs_limit and request.limit_price is None) or (needs_stop and request.stop_price is None):
        raise OrderRejected(f"order {cid}: a {kind.value} order needs its price; nothing was sent")
    body: dict[str, Any] = {
        "accountSpec": account_spec, "accountId": account_id, "clOrdId": cid,
        "action": "Buy" if request.side is Side.BUY else "Sell", "symbol": contract, "orderQty": int(qty),
        "orderType": ORDER_TYPE_OUT[kind], "timeInForce": TIF_OUT[request.time_in_force], "isAutomated": True,
    }
    if needs_limit and request.limit_price is not None:
        body["price"] = wire_number(request.limit_price)
    if needs_stop and request.stop_price is not None:
        body["stopPrice"] = wire_number(request.stop_price)
    if kind is OrderType.TRAILING_STOP and peg is not None:  # below the price for a sell, above for a buy
        body["pegDifference"] = wire_number(peg * request.side.sign)
    exit_side = "Sell" if request.side is Side.BUY else "Buy"
    legs = []
    if request.take_profit is not None:
        legs.append({"action": exit_side, "orderType": "Limit", "price": wire_number(request.take_profit),
                     "clOrdId": f"{cid}-tp"})
    if request.stop_loss is not None:
        stop_leg = {"action": exit_side, "orderType": "Stop", "stopPrice": wire_number(request.stop_loss),
                    "clOrdId": f"{cid}-sl"}
        if peg is not None:  # the bracket's stop trails at the exchange
            stop_leg.update(orderType="TrailingStop", pegDifference=wire_number(peg * -request.side.sign))
        legs.append(stop_leg)
    body = {k: v for k, v in body.items() if v is not None}
    if not legs:
        return "/order/placeorder", body
    for number, leg in enumerate(legs, start=1):
        body[f"bracket{number}"] = leg
    return "/order/placeoso", body


def modify_body(version: TvOrderVersion, quantity: Decimal | None, limit_price: Decimal | None,
                stop_price: Decimal | None, what: str) -> dict[str, Any]:
    """The `/order/modifyorder` body: the order's current version with the changed values (absolute)."""
    qty = quantity if quantity is not None else Decimal(version.orderQty)
    if qty <= 0 or qty != qty.to_integral_value():
        raise OrderRejected(f"{what}: quantity must be a whole number of contracts, not {qty}")
    body: dict[str, Any] = {"orderId": version.orderId, "orderQty": int(qty), "orderType": version.orderType,
                            "timeInForce": version.timeInForce or "Day", "isAutomated": True}
    price = limit_price if limit_price is not None else version.price
    stop = stop_price if stop_price is not None else version.stopPrice
    if price is not None:
        body["price"] = wire_number(price)
    if stop is not None:
        body["stopPrice"] = wire_number(stop)
    if version.pegDifference is not None:
        body["pegDifference"] = wire_number(version.pegDifference)
    return body
