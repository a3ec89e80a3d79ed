"""Alpaca Trading API v2 wire format: timestamps, fill keys, and orders, positions, account as domain types.

Pure functions, no I/O and no adapter state: the adapter passes in what it remembers (a bracket leg's
entry, a client order id the activities lack) and the time to fall back on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from daemon.domain import AccountState, Fill, Order, OrderRequest, OrderStatus, OrderType, Position, Side, TimeInForce
from daemon.money import parse_decimal

STATUS = {
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "replaced": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "suspended": OrderStatus.REJECTED,
}  # everything else (new, accepted, pending_*, held, done_for_day, ...) is a resting order
TYPES = {"limit": OrderType.LIMIT, "stop": OrderType.STOP, "stop_limit": OrderType.STOP_LIMIT,
         "trailing_stop": OrderType.TRAILING_STOP}
TIF = {t.value: t for t in TimeInForce}
_REPLACE_SUFFIX = re.compile(r"-r[0-9a-f]{8}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str | None) -> datetime | None:
    """Alpaca timestamps (RFC 3339, up to nanoseconds, `Z`) as aware datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def dec(value: Any) -> Decimal | None:
    return parse_decimal(value, "number", empty_is_none=True)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fill_key(order_id: str, cumulative_qty: Decimal) -> str:
    """The fill id both the stream and the activities can name: order id + cumulative quantity after it."""
    return f"{order_id}:{cumulative_qty.normalize():f}"


def client_id(data: dict[str, Any]) -> str:
    """The engine's client order id of an order (a replacement carries it with a `-r<hex>` suffix)."""
    return _REPLACE_SUFFIX.sub("", str(data.get("client_order_id") or ""))


def to_order(data: dict[str, Any], account: str, parent: str | None, now: datetime) -> Order:
    """An Alpaca order object as an Order; `parent` is the entry of a bracket leg, if known."""
    created = parse_time(data.get("created_at")) or now
    return Order(
        broker_order_id=str(data["id"]),
        client_order_id=client_id(data),
        account=account,
        symbol=str(data.get("symbol") or ""),
        side=Side(data.get("side", "buy")),
        quantity=dec(data.get("qty")) or Decimal(0),
        order_type=TYPES.get(str(data.get("type")), OrderType.MARKET),
        status=STATUS.get(str(data.get("status")), OrderStatus.NEW),
        filled_quantity=dec(data.get("filled_qty")) or Decimal(0),
        average_fill_price=dec(data.get("filled_avg_price")),
        limit_price=dec(data.get("limit_price")),
        stop_price=dec(data.get("stop_price")),
        time_in_force=TIF.get(str(data.get("time_in_force")), TimeInForce.DAY),
        parent_order_id=parent,
        oco_group=parent if parent and data.get("order_class") in ("bracket", "oco") else None,
        created_at=created,
        updated_at=parse_time(data.get("updated_at")) or created,
    )


def order_body(request: OrderRequest, symbol: str) -> dict[str, Any]:
    """The POST /v2/orders body; take-profit and stop-loss make it a bracket (both) or an OTO (one)."""
    body: dict[str, Any] = {
        "symbol": symbol,
        "qty": str(request.quantity),
        "side": request.side.value,
        "type": request.order_type.value,
        "time_in_force": request.time_in_force.value,
        "client_order_id": request.client_order_id,
    }
    if request.limit_price is not None:
        body["limit_price"] = str(request.limit_price)
    if request.order_type is OrderType.TRAILING_STOP:  # Alpaca keeps the stop itself (`stop_price`, `hwm`)
        trail = request.trail
        if trail is None:
            raise ValueError("a trailing_stop order needs its trail")
        body.update({"trail_price": str(trail.distance)} if trail.distance is not None
                    else {"trail_percent": str(trail.percent)})
    elif request.stop_price is not None:
        body["stop_price"] = str(request.stop_price)
    if request.take_profit is not None or request.stop_loss is not None:
        both = request.take_profit is not None and request.stop_loss is not None
        body["order_class"] = "bracket" if both else "oto"
        if request.take_profit is not None:
            body["take_profit"] = {"limit_price": str(request.take_profit)}
        if request.stop_loss is not None:
            body["stop_loss"] = {"stop_price": str(request.stop_loss)}
    return body


def to_position(p: dict[str, Any], account: str) -> Position:
    return Position(
        account=account,
        symbol=p["symbol"],
        quantity=Decimal(p["qty"]),
        average_price=Decimal(p["avg_entry_price"]),
        market_price=dec(p.get("current_price")),
        unrealized_pnl=dec(p.get("unrealized_pl")) or Decimal(0),
    )


def to_account_state(a: dict[str, Any], account: str, broker: str, now: datetime) -> AccountState:
    equity = Decimal(a.get("equity") or a.get("portfolio_value") or "0")
    return AccountState(
        account=account,
        broker=broker,
        currency=a.get("currency") or "USD",
        cash=Decimal(a.get("cash") or "0"),
        equity=equity,
        buying_power=dec(a.get("buying_power")),
        day_trading_buying_power=dec(a.get("daytrading_buying_power")),
        prior_close_equity=dec(a.get("last_equity")),
        maintenance_margin=dec(a.get("last_maintenance_margin")),
        fees=dec(a.get("accrued_fees")) or Decimal(0),
        as_of=now,
    )


def activity_fill(a: dict[str, Any], account: str, client_order_id: str, filled_at: datetime) -> Fill:
    """A FILL account activity as a Fill, named by `fill_key` when it carries its cumulative quantity."""
    order_id = str(a["order_id"])
    cumulative = dec(a.get("cum_qty"))
    return Fill(
        fill_id=fill_key(order_id, cumulative) if cumulative is not None else str(a["id"]),
        broker_order_id=order_id,
        client_order_id=client_order_id,
        account=account,
        symbol=a["symbol"],
        side=Side(a["side"].split("_")[0]),
        quantity=Decimal(a["qty"]),
        price=Decimal(a["price"]),
        filled_at=filled_at,
    )


def stream_fill(data: dict[str, Any], order: Order, filled_at: datetime) -> Fill | None:
    """The fill in a `trade_updates` event (`fill` / `partial_fill` with qty and price), else None."""
    if data.get("event") not in ("fill", "partial_fill") or not data.get("qty") or not data.get("price"):
        return None
    return Fill(fill_id=fill_key(order.broker_order_id, order.filled_quantity),
                broker_order_id=order.broker_order_id, client_order_id=order.client_order_id,
                account=order.account, symbol=order.symbol, side=order.side, quantity=Decimal(str(data["qty"])),
                price=Decimal(str(data["price"])), filled_at=parse_time(data.get("timestamp")) or filled_at)
