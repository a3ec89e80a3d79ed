"""Schwab Trader API wire format: order bodies (single, TRIGGER + OCO brackets, trailing stops) and answers.

Pure functions, no I/O. Schwab numbers are JSON numbers (`double`); they are read through `str()` into
Decimal and written from Decimal as int or float. Equity instructions depend on the position: selling more
than is held long is a short sale (`SELL_SHORT`), buying while short is `BUY_TO_COVER`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.base import OrderRejected
from brokers.position_effect import closes
from daemon.domain import AccountState, Fill, Order, OrderRequest, OrderStatus, OrderType, Position, Side, TimeInForce
from daemon.shapes import Trail

STATUS = {
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "REPLACED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}  # everything else (WORKING, QUEUED, ACCEPTED, AWAITING_*, PENDING_*) is a live order
TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT, "STOP": OrderType.STOP,
         "STOP_LIMIT": OrderType.STOP_LIMIT, "TRAILING_STOP": OrderType.TRAILING_STOP}
LINK = ("stopPriceLinkBasis", "stopPriceLinkType", "stopPriceOffset")  # how a TRAILING_STOP trails
DURATION = {TimeInForce.DAY: "DAY", TimeInForce.GTC: "GOOD_TILL_CANCEL", TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
            TimeInForce.FOK: "FILL_OR_KILL"}
TIF = {v: k for k, v in DURATION.items()}
BUYS = frozenset({"BUY", "BUY_TO_COVER", "BUY_TO_OPEN", "BUY_TO_CLOSE"})


def dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def wire_time(at: datetime) -> str:
    """Schwab's query time format, `yyyy-MM-dd'T'HH:mm:ss.SSSZ`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.astimezone(UTC).microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_INSTRUCTIONS = {(Side.BUY, False): "BUY", (Side.BUY, True): "BUY_TO_COVER", (Side.SELL, False): "SELL_SHORT",
                 (Side.SELL, True): "SELL"}  # (side, closes a holding) -> Schwab's equity instruction


def instruction(side: Side, quantity: Decimal, held: Decimal) -> str:
    """The equity instruction for `side` given the signed position `held`; a flip through zero is refused."""
    return _INSTRUCTIONS[side, closes("Schwab", side, quantity, held)]


def trailing_link(trail: Trail | None, instr: str) -> dict[str, Any]:
    """A TRAILING_STOP's link to the market: a sell trails the bid, a buy the ask, by a value or a percent."""
    if trail is None:
        raise OrderRejected("a trailing_stop order needs its trail; nothing was sent")
    return {"stopPriceLinkBasis": "ASK" if instr in BUYS else "BID",
            "stopPriceLinkType": "VALUE" if trail.distance is not None else "PERCENT",
            "stopPriceOffset": num(trail.distance if trail.distance is not None else trail.percent or Decimal(0))}


def _single(symbol: str, instr: str, quantity: Decimal, order_type: OrderType, duration: str,
            limit: Decimal | None, stop: Decimal | None, link: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session": "NORMAL", "duration": duration, "orderType": order_type.value.upper(),
        "orderStrategyType": "SINGLE",
        "orderLegCollection": [{"instruction": instr, "quantity": num(quantity),
                                "instrument": {"symbol": symbol, "assetType": "EQUITY"}}],
    }
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        if limit is None:
            raise OrderRejected(f"a {order_type.value} order needs its limit price; nothing was sent")
        body["price"] = num(limit)
    if order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        if stop is None:
            raise OrderRejected(f"a {order_type.value} order needs its stop price; nothing was sent")
        body["stopPrice"] = num(stop)
    if order_type is OrderType.TRAILING_STOP:
        if not link:
            raise OrderRejected("a trailing_stop order needs its trail; nothing was sent")
        body |= link
    return body


def order_body(request: OrderRequest, symbol: str, held: Decimal) -> dict[str, Any]:
    """The POST body: a SINGLE order, or a TRIGGER whose child is the OCO of take-profit and stop-loss
    (or the one exit given). Exits are GOOD_TILL_CANCEL so they outlive the entry's day."""
    if request.quantity != request.quantity.to_integral_value():
        raise OrderRejected(f"Schwab's API trades whole shares ({request.quantity:f} asked); nothing was sent")
    duration = DURATION[request.time_in_force]
    instr = instruction(request.side, request.quantity, held)
    own_trail = request.order_type is OrderType.TRAILING_STOP
    link = trailing_link(request.trail, instr) if own_trail else None
    body = _single(symbol, instr, request.quantity, request.order_type, duration, request.limit_price,
                   None if own_trail else request.stop_price, link)
    exits = []
    after = held + request.side.sign * request.quantity
    exit_instr = instruction(request.side.opposite(), request.quantity, after)
    if request.take_profit is not None:
        exits.append(_single(symbol, exit_instr, request.quantity, OrderType.LIMIT, "GOOD_TILL_CANCEL",
                             request.take_profit, None))
    if request.stop_loss is not None and request.trail is not None:  # the stop leg trails at Schwab
        exits.append(_single(symbol, exit_instr, request.quantity, OrderType.TRAILING_STOP, "GOOD_TILL_CANCEL",
                             None, None, trailing_link(request.trail, exit_instr)))
    elif request.stop_loss is not None:
        exits.append(_single(symbol, exit_instr, request.quantity, OrderType.STOP, "GOOD_TILL_CANCEL",
                             None, request.stop_loss))
    if exits:
        body["orderStrategyType"] = "TRIGGER"
        child = exits[0] if len(exits) == 1 else {"orderStrategyType": "OCO", "childOrderStrategies": exits}
        body["childOrderStrategies"] = [child]
    return body


def replace_body(current: dict[str, Any], quantity: Decimal | None, limit: Decimal | None,
                 stop: Decimal | None) -> dict[str, Any]:
    """The PUT body replacing a SINGLE order with new quantity / prices (the rest as it was)."""
    legs = current.get("orderLegCollection") or []
    if current.get("orderStrategyType") not in (None, "SINGLE") or len(legs) != 1:
        raise OrderRejected("only single-leg orders can be modified at Schwab")
    leg, order_type = legs[0], TYPES.get(str(current.get("orderType")), OrderType.MARKET)
    trailing = order_type is OrderType.TRAILING_STOP
    if trailing and stop is not None:
        raise OrderRejected("a trailing stop at Schwab moves itself; its stop price cannot be set")
    body = _single(str(leg["instrument"]["symbol"]), str(leg["instruction"]),
                   quantity if quantity is not None else Decimal(str(leg["quantity"])),
                   order_type, str(current.get("duration") or "DAY"),
                   limit if limit is not None else dec(current.get("price")),
                   None if trailing else stop if stop is not None else dec(current.get("stopPrice")),
                   {k: current[k] for k in LINK if k in current} if trailing else None)
    return body


def order_id_from(location: str | None) -> str:
    """The new order's id from the `Location` header (`.../accounts/<hash>/orders/<id>`)."""
    tail = (location or "").rstrip("/").rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"no order id in Location {location!r}")
    return tail


def leg_of(data: dict[str, Any]) -> dict[str, Any]:
    legs = data.get("orderLegCollection") or [{}]
    return legs[0]


def flatten_tree(data: dict[str, Any], parent: str | None = None,
                 group: str | None = None) -> Iterator[tuple[dict[str, Any], str | None, str | None]]:
    """Every real order of a (TRIGGER / OCO) strategy tree: (order json, entry id, OCO group id)."""
    kind = data.get("orderStrategyType")
    own = str(data["orderId"]) if data.get("orderId") is not None else None
    if kind == "OCO":
        for child in data.get("childOrderStrategies") or []:
            yield from flatten_tree(child, parent, own or parent)
        return
    yield data, parent, group
    for child in data.get("childOrderStrategies") or []:
        yield from flatten_tree(child, own, None)


def to_order(data: dict[str, Any], account: str, symbol: str, client_order_id: str, parent: str | None,
             group: str | None, now: datetime) -> Order:
    leg = leg_of(data)
    quantity = dec(data.get("quantity")) or dec(leg.get("quantity")) or Decimal(0)
    filled = dec(data.get("filledQuantity")) or Decimal(0)
    status = STATUS.get(str(data.get("status")), OrderStatus.NEW)
    if status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    executions = list(executions_of(data))
    average = None
    if executions:
        total = sum((q for _, q, _, _ in executions), Decimal(0))
        average = sum((q * p for _, q, p, _ in executions), Decimal(0)) / total if total else None
    entered = parse_time(data.get("enteredTime")) or now
    return Order(
        broker_order_id=str(data["orderId"]), client_order_id=client_order_id, account=account, symbol=symbol,
        side=Side.BUY if str(leg.get("instruction")) in BUYS else Side.SELL, quantity=quantity,
        order_type=TYPES.get(str(data.get("orderType")), OrderType.MARKET), status=status, filled_quantity=filled,
        average_fill_price=average, limit_price=dec(data.get("price")), stop_price=dec(data.get("stopPrice")),
        time_in_force=TIF.get(str(data.get("duration")), TimeInForce.DAY), parent_order_id=parent,
        oco_group=group, reject_reason=data.get("statusDescription") if status is OrderStatus.REJECTED else None,
        created_at=entered, updated_at=parse_time(data.get("closeTime")) or entered,
    )


def executions_of(data: dict[str, Any]) -> Iterator[tuple[str, Decimal, Decimal, datetime | None]]:
    """(fill id, quantity, price, time) of each execution leg; the id is the order id and the execution's
    ordinal, stable because Schwab only appends to `orderActivityCollection`."""
    n = 0
    for activity in data.get("orderActivityCollection") or []:
        if activity.get("activityType") != "EXECUTION":
            continue
        for execution in activity.get("executionLegs") or []:
            n += 1
            quantity, price = dec(execution.get("quantity")), dec(execution.get("price"))
            if quantity and price is not None:
                yield f"{data['orderId']}:{n}", quantity, price, parse_time(execution.get("time"))


def fills_of(order: Order, data: dict[str, Any], now: datetime) -> list[Fill]:
    return [Fill(fill_id=fill_id, broker_order_id=order.broker_order_id, client_order_id=order.client_order_id,
                 account=order.account, symbol=order.symbol, side=order.side, quantity=quantity, price=price,
                 filled_at=at or order.updated_at or now)
            for fill_id, quantity, price, at in executions_of(data)]


def matches(data: dict[str, Any], intent: dict[str, Any]) -> bool:
    """Whether an order Schwab lists is the journaled `intent` (symbol, instruction, quantity, type, prices)."""
    leg = leg_of(data)
    same = (str((leg.get("instrument") or {}).get("symbol")) == intent["symbol"]
            and str(leg.get("instruction")) == intent["instruction"]
            and dec(data.get("quantity") or leg.get("quantity")) == Decimal(intent["quantity"])
            and str(data.get("orderType")) == intent["order_type"])
    keys = ("price", "stopPriceOffset") if intent["order_type"] == "TRAILING_STOP" else ("price", "stopPrice")
    return same and all(
        (dec(data.get(key)) == (Decimal(intent[key]) if intent.get(key) is not None else None)) for key in keys)


def to_position(p: dict[str, Any], account: str) -> Position:
    quantity = (dec(p.get("longQuantity")) or Decimal(0)) - (dec(p.get("shortQuantity")) or Decimal(0))
    market_value = dec(p.get("marketValue"))
    opened = (dec(p.get("longOpenProfitLoss")) or Decimal(0)) + (dec(p.get("shortOpenProfitLoss")) or Decimal(0))
    return Position(
        account=account, symbol=str(p["instrument"]["symbol"]), quantity=quantity,
        average_price=dec(p.get("averagePrice")) or Decimal(0),
        market_price=market_value / quantity if market_value is not None and quantity else None,
        unrealized_pnl=opened,
    )


def to_account_state(data: dict[str, Any], account: str, broker: str, now: datetime) -> AccountState:
    sa = data.get("securitiesAccount") or {}
    current, initial = sa.get("currentBalances") or {}, sa.get("initialBalances") or {}
    cash = dec(current.get("cashBalance")) or dec(current.get("totalCash")) or dec(initial.get("cashBalance"))
    equity = dec(current.get("equity")) or dec(current.get("liquidationValue")) or dec(initial.get("accountValue"))
    unrealized = sum((to_position(p, account).unrealized_pnl for p in sa.get("positions") or []), Decimal(0))
    return AccountState(
        account=account, broker=broker, cash=cash or Decimal(0), equity=equity or cash or Decimal(0),
        buying_power=dec(current.get("buyingPower")) or dec(current.get("cashAvailableForTrading")),
        day_trading_buying_power=dec(current.get("dayTradingBuyingPower")),
        prior_close_equity=dec(initial.get("accountValue")) or dec(initial.get("equity")),
        maintenance_margin=dec(current.get("maintenanceRequirement")), unrealized_pnl=unrealized, as_of=now,
    )
