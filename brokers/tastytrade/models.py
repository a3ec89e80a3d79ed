"""tastytrade wire format: order bodies (single, OTOCO / OTO brackets, replacements) and answers as domain types.

Pure functions, no I/O. Keys are dasherized. Numbers are written from Decimal as JSON numbers and read
through `str()` into Decimal: the live API and its published spec disagree on which fields are strings
(ids, sizes, quantities), so every number and id is read from either. Answers come in a `{data: ...}`
envelope (`payload`, `items`). Equities take opening and closing actions chosen from the position
(`Buy to Open`, `Sell to Close`, ...); futures (`/ESZ6`) take `Buy` / `Sell`, as the API requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.base import OrderRejected
from brokers.position_effect import closes
from daemon.domain import AccountState, Fill, Order, OrderRequest, OrderStatus, OrderType, Position, Side, TimeInForce

EQUITY, FUTURE = "Equity", "Future"
STATUS = {
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Removed": OrderStatus.CANCELLED,
    "Partially Removed": OrderStatus.CANCELLED,
    "Expired": OrderStatus.EXPIRED,
    "Rejected": OrderStatus.REJECTED,
}  # Received, Routed, In Flight, Live, Contingent, Cancel/Replace Requested: still working
TYPES = {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT, "Marketable Limit": OrderType.LIMIT,
         "Stop": OrderType.STOP, "Stop Limit": OrderType.STOP_LIMIT}
WIRE_TYPES = {OrderType.MARKET: "Market", OrderType.LIMIT: "Limit", OrderType.STOP: "Stop",
              OrderType.STOP_LIMIT: "Stop Limit"}
WIRE_TIF = {TimeInForce.DAY: "Day", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC"}
TIF = {"Day": TimeInForce.DAY, "GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC}
BUYS = frozenset({"Buy", "Buy to Open", "Buy to Close"})
LEG_SUFFIXES = ("-tp", "-sl")  # bracket exits: the entry's client order id + suffix


@dataclass(frozen=True)
class Instrument:
    symbol: str  # as tastytrade names it: `AAPL`, `/ESZ6`
    kind: str  # EQUITY or FUTURE
    display: str  # as the engine names it: `AAPL`, `ES1!`


def dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def wire_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload(body: Any) -> Any:
    """What a `{data: ..., context}` answer carries; ValueError for an answer without the envelope."""
    if not isinstance(body, dict) or "data" not in body:
        raise ValueError("answer has no `data` envelope")
    return body["data"]


def items(body: Any) -> list[dict[str, Any]]:
    data = payload(body)
    rows = data.get("items") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError("answer has no `data.items` list")
    return rows


def split_cid(cid: str) -> tuple[str, str]:
    """`td...-tp` -> (`td...`, `-tp`); a plain id -> (id, "")."""
    for suffix in LEG_SUFFIXES:
        if cid.endswith(suffix):
            return cid[: -len(suffix)], suffix
    return cid, ""


# -- building ---------------------------------------------------------------------------------------------

_EQUITY_ACTIONS = {(Side.BUY, False): "Buy to Open", (Side.BUY, True): "Buy to Close",
                   (Side.SELL, False): "Sell to Open", (Side.SELL, True): "Sell to Close"}  # (side, closes) -> action


def action(kind: str, side: Side, quantity: Decimal, held: Decimal) -> str:
    """The leg action for `side` given the signed position `held`; an equity flip through zero is refused."""
    if kind == FUTURE:
        return "Buy" if side is Side.BUY else "Sell"
    return _EQUITY_ACTIONS[side, closes("tastytrade", side, quantity, held)]


def _prices(body: dict[str, Any], order_type: OrderType, buy: bool, limit: Decimal | None,
            stop: Decimal | None) -> dict[str, Any]:
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        if limit is None:
            raise OrderRejected(f"a {order_type.value} order needs its limit price; nothing was sent")
        body["price"], body["price-effect"] = num(limit), "Debit" if buy else "Credit"
    if order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        if stop is None:
            raise OrderRejected(f"a {order_type.value} order needs its stop price; nothing was sent")
        body["stop-trigger"] = num(stop)
    return body


def _single(inst: Instrument, act: str, quantity: Decimal, order_type: OrderType, tif: str, limit: Decimal | None,
            stop: Decimal | None, cid: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "time-in-force": tif, "order-type": WIRE_TYPES[order_type], "external-identifier": cid,
        "automated-source": True, "source": "traderd",
        "legs": [{"instrument-type": inst.kind, "symbol": inst.symbol, "quantity": num(quantity), "action": act}],
    }
    return _prices(body, order_type, act in BUYS, limit, stop)


def order_body(request: OrderRequest, inst: Instrument, held: Decimal) -> tuple[bool, dict[str, Any]]:
    """(is complex, POST body): a single order, or an OTOCO (entry, then the OCO of a GTC take-profit limit
    and a GTC stop) / OTO (entry, then the one exit given) for a bracket."""
    if request.quantity != request.quantity.to_integral_value():
        raise OrderRejected(f"traderd sends whole shares and contracts to tastytrade ({request.quantity:f} asked); "
                            "nothing was sent")
    tif = WIRE_TIF.get(request.time_in_force)
    if tif is None:
        raise OrderRejected(f"tastytrade has no {request.time_in_force.value.upper()} time in force; nothing was sent")
    cid = request.client_order_id
    entry = _single(inst, action(inst.kind, request.side, request.quantity, held), request.quantity,
                    request.order_type, tif, request.limit_price, request.stop_price, cid)
    after = held + request.side.sign * request.quantity
    exit_action = action(inst.kind, request.side.opposite(), request.quantity, after)
    exits = []
    if request.take_profit is not None:
        exits.append(_single(inst, exit_action, request.quantity, OrderType.LIMIT, "GTC", request.take_profit, None,
                             cid + "-tp"))
    if request.stop_loss is not None:
        exits.append(_single(inst, exit_action, request.quantity, OrderType.STOP, "GTC", None, request.stop_loss,
                             cid + "-sl"))
    if not exits:
        return False, entry
    return True, {"type": "OTOCO" if len(exits) == 2 else "OTO", "trigger-order": entry, "orders": exits,
                  "source": "traderd"}


def replace_body(current: dict[str, Any], limit: Decimal | None, stop: Decimal | None) -> dict[str, Any]:
    """The PUT body replacing a live order with new prices (type, time in force and identifier as they were).
    tastytrade's replace carries no legs, so the quantity cannot change this way."""
    order_type = TYPES.get(str(current.get("order-type")), OrderType.MARKET)
    if order_type is OrderType.MARKET:
        raise OrderRejected("a market order has no price to modify")
    body: dict[str, Any] = {"order-type": WIRE_TYPES[order_type], "time-in-force": current.get("time-in-force", "Day")}
    if current.get("external-identifier"):
        body["external-identifier"] = current["external-identifier"]
    return _prices(body, order_type, side_of(current) is Side.BUY,
                   limit if limit is not None else dec(current.get("price")),
                   stop if stop is not None else dec(current.get("stop-trigger")))


# -- reading ----------------------------------------------------------------------------------------------

def leg_of(raw: dict[str, Any]) -> dict[str, Any]:
    legs = raw.get("legs") or [{}]
    return legs[0]


def is_exit(order: Order, raw: dict[str, Any]) -> bool:
    """Whether a resting order closes a position: a bracket leg, a stop, or an equity `... to Close`."""
    return order.parent_order_id is not None or order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) \
        or str(leg_of(raw).get("action")).endswith("to Close")


def side_of(raw: dict[str, Any]) -> Side:
    return Side.BUY if str(leg_of(raw).get("action")) in BUYS else Side.SELL


def complex_parts(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str | None, str | None]]:
    """The orders of a complex order: (order json, entry id, OCO group id). The trigger has no parent; its
    exits point to it, and exits that cancel each other share the complex order's id as their group."""
    group = str(data["id"]) if data.get("id") is not None else None
    trigger = data.get("trigger-order")
    parent = str(trigger["id"]) if trigger and trigger.get("id") is not None else None
    if trigger:
        yield trigger, None, None
    orders = data.get("orders") or []
    for raw in orders:
        yield raw, parent, group if len(orders) > 1 else None


def filled_of(raw: dict[str, Any]) -> Decimal:
    return sum((dec(f.get("quantity")) or Decimal(0) for leg in raw.get("legs") or []
                for f in leg.get("fills") or []), Decimal(0))


def to_order(raw: dict[str, Any], account: str, symbol: str, parent: str | None, group: str | None,
             now: datetime) -> Order:
    leg = leg_of(raw)
    quantity = dec(raw.get("size")) or dec(leg.get("quantity")) or Decimal(0)
    filled = filled_of(raw)
    status = STATUS.get(str(raw.get("status")), OrderStatus.NEW)
    if status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    executions = list(executions_of(raw))
    total = sum((q for _, q, _, _ in executions), Decimal(0))
    average = sum((q * p for _, q, p, _ in executions), Decimal(0)) / total if total else None
    received = parse_time(raw.get("received-at")) or now
    return Order(
        broker_order_id=str(raw["id"]), client_order_id=str(raw.get("external-identifier") or ""), account=account,
        symbol=symbol, side=side_of(raw), quantity=quantity, order_type=TYPES.get(str(raw.get("order-type")),
                                                                                  OrderType.MARKET),
        status=status, filled_quantity=filled, average_fill_price=average, limit_price=dec(raw.get("price")),
        stop_price=dec(raw.get("stop-trigger")), time_in_force=TIF.get(str(raw.get("time-in-force")),
                                                                       TimeInForce.GTC),
        parent_order_id=parent, oco_group=group,
        reject_reason=raw.get("reject-reason") if status is OrderStatus.REJECTED else None,
        created_at=received, updated_at=parse_time(raw.get("terminal-at")) or parse_time(raw.get("updated-at"))
        or received,
    )


def executions_of(raw: dict[str, Any]) -> Iterator[tuple[str, Decimal, Decimal, datetime | None]]:
    """(fill id, quantity, price, time) of each fill of each leg; the id is the order id and tastytrade's own."""
    for leg in raw.get("legs") or []:
        for fill in leg.get("fills") or []:
            quantity, price = dec(fill.get("quantity")), dec(fill.get("fill-price"))
            if quantity and price is not None:
                yield f"{raw['id']}:{fill.get('fill-id')}", quantity, price, parse_time(fill.get("filled-at"))


def fills_of(order: Order, raw: dict[str, Any]) -> list[Fill]:
    return [Fill(fill_id=fill_id, broker_order_id=order.broker_order_id, client_order_id=order.client_order_id,
                 account=order.account, symbol=order.symbol, side=order.side, quantity=quantity, price=price,
                 filled_at=at or order.updated_at)
            for fill_id, quantity, price, at in executions_of(raw)]


def signed_quantity(row: dict[str, Any]) -> Decimal:
    quantity = dec(row.get("quantity")) or Decimal(0)
    return -abs(quantity) if str(row.get("quantity-direction")) == "Short" else quantity


def to_position(row: dict[str, Any], account: str, symbol: str) -> Position:
    quantity = signed_quantity(row)
    average = dec(row.get("average-open-price")) or Decimal(0)
    mark = dec(row.get("mark-price")) or dec(row.get("mark")) or dec(row.get("close-price"))
    multiplier = dec(row.get("multiplier")) or Decimal(1)
    return Position(account=account, symbol=symbol, quantity=quantity, average_price=average, market_price=mark,
                    unrealized_pnl=(mark - average) * quantity * multiplier if mark is not None else Decimal(0),
                    realized_pnl=signed(row, "realized-today"))


def signed(row: dict[str, Any], key: str) -> Decimal:
    """An amount tastytrade sends unsigned with a `<key>-effect` of Debit (negative) or Credit."""
    value = abs(dec(row.get(key)) or Decimal(0))
    return -value if str(row.get(f"{key}-effect")) == "Debit" else value


def to_account_state(balance: dict[str, Any], positions: list[Position], account: str, broker: str,
                     now: datetime) -> AccountState:
    cash = dec(balance.get("cash-balance")) or Decimal(0)
    return AccountState(
        account=account, broker=broker, currency=str(balance.get("currency") or "USD"), cash=cash,
        equity=dec(balance.get("net-liquidating-value")) or cash,
        buying_power=dec(balance.get("equity-buying-power")) or dec(balance.get("derivative-buying-power")),
        day_trading_buying_power=dec(balance.get("day-trading-buying-power")),
        maintenance_margin=dec(balance.get("maintenance-requirement")),
        realized_pnl=sum((p.realized_pnl for p in positions), Decimal(0)),
        unrealized_pnl=sum((p.unrealized_pnl for p in positions), Decimal(0)), as_of=now,
    )


def dry_run_summary(data: dict[str, Any]) -> str:
    """The buying-power effect and fees of a dry run, in a line (`data` of the dry-run answer)."""
    effect = data.get("buying-power-effect") or {}
    fees = data.get("fee-calculation") or {}
    parts = []
    if isinstance(effect, dict) and effect.get("new-buying-power") is not None:
        parts.append(f"buying power {effect.get('current-buying-power')} -> {effect.get('new-buying-power')}")
    if isinstance(fees, dict) and fees.get("total-fees") is not None:
        parts.append(f"fees {fees.get('total-fees')}")
    warnings = [str(w.get("message")) for w in data.get("warnings") or [] if isinstance(w, dict)]
    if warnings:
        parts.append("warnings: " + "; ".join(warnings))
    return ", ".join(parts) or "accepted"
