"""ccxt's unified structures (orders, trades, balances) as traderd's domain types, and order requests as ccxt calls.

Pure functions: the adapter passes in the market names (`Markets`), what it remembers (a bracket leg's
entry) and the time to fall back on. Symbols in the domain types are TradingView's (`BTCUSDT`).
Client order ids: the engine's id travels as the exchange's client order id; a replacement (modify) adds
`-<3 hex>` so that it stays unique among open orders within Binance's 36 characters, and bracket exits add
`tp` / `sl` (stripped back here, so the engine sees its own id; an OCO placed again to change one leg has
both, on the first 28 characters of the id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.base import OrderRejected
from brokers.ccxt.markets import Markets, dec, plain
from daemon.domain import ZERO, Fill, Order, OrderRequest, OrderStatus, OrderType, Position, Side, TimeInForce
from daemon.shapes import Trail

_SUFFIX = re.compile(r"(-[0-9a-f]{3})?(tp|sl)?$")
STATUS = {
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}  # "open" (and anything unknown) is a resting order
TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}
SEND_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.DAY: "GTC"}


def when(ms: Any, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if isinstance(ms, int | float) and ms > 0 else fallback


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def engine_id(client_order_id: str | None) -> str:
    """The engine's client order id of an exchange order (replacement and bracket suffixes removed)."""
    cid = str(client_order_id or "")
    return _SUFFIX.sub("", cid) if cid.startswith("td") else cid


def is_exit(client_order_id: str | None) -> bool:
    """A bracket exit's client order id (the entry's id + `tp` / `sl`)."""
    return str(client_order_id or "").endswith(("tp", "sl"))


@dataclass(frozen=True)
class Placement:
    """One `create_order` call: ccxt's arguments for a request, after sizing."""

    symbol: str
    type: str
    side: str
    amount: Decimal
    price: Decimal | None
    params: dict[str, Any] = field(default_factory=dict)


def placement(request: OrderRequest, symbol: str, amount: Decimal, markets: Markets) -> Placement:
    """Market / limit / stop (stop-market) / stop-limit with the client order id and time in force.

    Spot has no DAY orders: DAY is sent as GTC (crypto markets never close; `docs` and README say so).
    """
    params: dict[str, Any] = {"clientOrderId": request.client_order_id}
    kind = request.order_type
    if kind is OrderType.TRAILING_STOP:  # Binance: a STOP_LOSS trailing by `trailingDelta` from its placement
        return Placement(symbol, "market", request.side.value, amount, None,
                         params | {"trailingPercent": trailing_percent(request), "stopLossOrTakeProfit": "stopLoss"})
    price = request.limit_price if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert request.stop_price is not None
        params["triggerPrice"] = markets.price(symbol, request.stop_price)
    if kind is not OrderType.MARKET and kind is not OrderType.STOP:
        params["timeInForce"] = SEND_TIF[request.time_in_force]
    ccxt_type = "limit" if price is not None else "market"
    return Placement(symbol, ccxt_type, request.side.value, amount, price, params)


def trailing_percent(request: OrderRequest) -> str:
    """The trail of a trailing stop order as ccxt's `trailingPercent` (Binance's `trailingDelta` in whole basis
    points, 0.01 %); OrderRejected for a trail it cannot express."""
    trail = request.trail
    if trail is None or trail.percent is None:
        raise OrderRejected("a trailing stop on this exchange trails by a percent; nothing was sent")
    if (trail.percent * 100) % 1:
        raise OrderRejected(f"Binance trails by whole basis points (0.01 %), not {trail.percent.normalize():f} %; "
                            "nothing was sent")
    return plain(trail.percent)


def trail_of(data: dict[str, Any]) -> Trail | None:
    """The trail of a Binance trailing stop (`trailingDelta`, basis points), None for any other order."""
    delta = (data.get("info") or {}).get("trailingDelta") if isinstance(data.get("info"), dict) else None
    return Trail(percent=Decimal(str(delta)) / 100) if delta not in (None, "", 0, "0") else None


def order_type(data: dict[str, Any]) -> OrderType:
    if trail_of(data) is not None:
        return OrderType.TRAILING_STOP
    trigger = data.get("triggerPrice") or data.get("stopPrice")
    raw = str((data.get("info") or {}).get("type") or data.get("type") or "").upper()
    if raw in ("LIMIT_MAKER", "TAKE_PROFIT_LIMIT") or (raw == "LIMIT" and not trigger):
        return OrderType.LIMIT
    if trigger or raw in ("STOP_LOSS", "TAKE_PROFIT", "STOP_LOSS_LIMIT"):
        return OrderType.STOP_LIMIT if raw.endswith("LIMIT") else OrderType.STOP
    return OrderType.LIMIT if str(data.get("type")) == "limit" else OrderType.MARKET


def to_order(data: dict[str, Any], account: str, markets: Markets, now: datetime, parent: str | None = None) -> Order:
    """A ccxt order as an Order; OCO members share `oco_group` (Binance `orderListId`)."""
    info = data.get("info") or {}
    filled = dec(data.get("filled")) or ZERO
    status = STATUS.get(str(data.get("status")), OrderStatus.NEW)
    if status is OrderStatus.NEW and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    kind = order_type(data)
    list_id = info.get("orderListId", info.get("g")) if isinstance(info, dict) else None  # "g": stream events
    created = when(data.get("timestamp"), now)
    return Order(
        broker_order_id=str(data["id"]),
        client_order_id=engine_id(data.get("clientOrderId")),
        account=account,
        symbol=markets.ticker(str(data["symbol"])),
        side=Side(str(data.get("side") or "buy").lower()),
        quantity=dec(data.get("amount")) or filled,
        order_type=kind,
        status=status,
        filled_quantity=filled,
        average_fill_price=dec(data.get("average")) if filled > 0 else None,
        limit_price=dec(data.get("price")) if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=dec(data.get("triggerPrice") or data.get("stopPrice")) if kind in (
            OrderType.STOP, OrderType.STOP_LIMIT) else None,
        time_in_force=TIF.get(str(data.get("timeInForce") or "").upper(), TimeInForce.GTC),
        parent_order_id=parent,
        oco_group=f"list:{list_id}" if list_id not in (None, -1, "-1") else None,
        created_at=created,
        updated_at=when(data.get("lastUpdateTimestamp") or data.get("lastTradeTimestamp"), created),
    )


def fill_id(market_id: str, trade_id: Any) -> str:
    return f"{market_id}:{trade_id}"


def fee_in_quote(trade: dict[str, Any], quote: str, base: str, price: Decimal,
                 rates: dict[str, Decimal]) -> Decimal:
    """The trade's fees in the quote currency: paid in quote, in base (x price), or at a known rate (BNB)."""
    total = ZERO
    fees = trade.get("fees") or ([trade["fee"]] if trade.get("fee") else [])
    for fee in fees:
        cost, currency = dec((fee or {}).get("cost")) or ZERO, str((fee or {}).get("currency") or "")
        if currency == quote:
            total += cost
        elif currency == base:
            total += cost * price
        elif currency in rates:
            total += cost * rates[currency]
    return total


def to_fill(trade: dict[str, Any], account: str, markets: Markets, client_order_id: str, commission: Decimal,
            now: datetime) -> Fill:
    symbol = str(trade["symbol"])
    return Fill(
        fill_id=fill_id(str(markets.market(symbol)["id"]), trade["id"]),
        broker_order_id=str(trade.get("order") or ""),
        client_order_id=client_order_id,
        account=account,
        symbol=markets.ticker(symbol),
        side=Side(str(trade["side"]).lower()),
        quantity=Decimal(str(trade["amount"])),
        price=Decimal(str(trade["price"])),
        commission=commission,
        filled_at=when(trade.get("timestamp"), now),
    )


def average_cost(trades: list[dict[str, Any]], held: Decimal) -> tuple[Decimal | None, Decimal]:
    """Average entry price of a spot holding of `held` units from its trades (oldest first), and the
    quantity those trades explain (a holding that was deposited, not bought, is not explained)."""
    quantity, cost = ZERO, ZERO
    for t in trades:
        amount, price = Decimal(str(t["amount"])), Decimal(str(t["price"]))
        if str(t["side"]).lower() == "buy":
            quantity, cost = quantity + amount, cost + amount * price
        elif quantity > 0:
            sold = min(amount, quantity)
            cost -= cost * sold / quantity
            quantity -= sold
    explained = min(quantity, held)
    return (cost / quantity if quantity > 0 else None), explained


def to_position(account: str, ticker: str, held: Decimal, average: Decimal | None, explained: Decimal,
                mark: Decimal | None) -> Position:
    """A spot balance as a long position; a part the trades do not explain is valued at the mark."""
    if average is None or explained <= 0:
        avg = mark if mark is not None else ZERO
    elif explained < held and mark is not None:
        avg = (average * explained + mark * (held - explained)) / held
    else:
        avg = average
    unrealized = (mark - avg) * held if mark is not None else ZERO
    return Position(account=account, symbol=ticker, quantity=held, average_price=avg, market_price=mark,
                    unrealized_pnl=unrealized)


def _exit_legs(request: OrderRequest, symbol: str, markets: Markets) -> tuple[dict[str, str], dict[str, str]]:
    """The (above, below) legs closing an entry: take-profit LIMIT_MAKER on one side of the price, STOP_LOSS
    on the other (swapped for a buy-to-close)."""
    assert request.take_profit is not None and request.stop_loss is not None
    cid = request.client_order_id
    take = {"Type": "LIMIT_MAKER", "Price": markets.price(symbol, request.take_profit), "ClientOrderId": cid + "tp"}
    stop = {"Type": "STOP_LOSS", "StopPrice": markets.price(symbol, request.stop_loss), "ClientOrderId": cid + "sl"}
    return (take, stop) if request.side is Side.BUY else (stop, take)


def oco_params(request: OrderRequest, symbol: str, quantity: Decimal, markets: Markets) -> dict[str, Any]:
    """Binance `POST /api/v3/orderList/oco` closing a filled entry of `quantity`."""
    above, below = _exit_legs(request, symbol, markets)
    params: dict[str, Any] = {
        "symbol": markets.market(symbol)["id"],
        "listClientOrderId": request.client_order_id + "oco",
        "side": request.side.opposite().value.upper(),
        "quantity": plain(quantity),
        "newOrderRespType": "RESULT",
    }
    params |= {f"above{k}": v for k, v in above.items()} | {f"below{k}": v for k, v in below.items()}
    return params


def otoco_params(request: OrderRequest, symbol: str, amount: Decimal, pending: Decimal,
                 markets: Markets) -> dict[str, Any]:
    """Binance `POST /api/v3/orderList/otoco`: the limit entry of `amount` as the working order, and the OCO
    of its exits for `pending` (what the entry leaves to sell), placed by Binance once the entry has filled."""
    assert request.limit_price is not None
    above, below = _exit_legs(request, symbol, markets)
    params: dict[str, Any] = {
        "symbol": markets.market(symbol)["id"],
        "listClientOrderId": request.client_order_id + "oco",
        "newOrderRespType": "RESULT",
        "workingType": "LIMIT",
        "workingSide": request.side.value.upper(),
        "workingClientOrderId": request.client_order_id,
        "workingPrice": markets.price(symbol, request.limit_price),
        "workingQuantity": plain(amount),
        "workingTimeInForce": SEND_TIF[request.time_in_force],
        "pendingSide": request.side.opposite().value.upper(),
        "pendingQuantity": plain(pending),
    }
    params |= {f"pendingAbove{k}": v for k, v in above.items()} | {f"pendingBelow{k}": v for k, v in below.items()}
    return params
