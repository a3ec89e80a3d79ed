"""The paper broker's order rules: which requests it accepts, and the orders, fills and bracket legs it makes.

Pure functions, no state: `PaperBroker` numbers the orders and fills and keeps them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NoReturn

from brokers.base import OrderRejected
from brokers.paper.book import PaperBook
from brokers.paper.ledger import Bracket
from config.brokers import PaperSettings
from daemon.domain import ZERO, Fill, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

HAS_LIMIT = (OrderType.LIMIT, OrderType.STOP_LIMIT)
HAS_STOP = (OrderType.STOP, OrderType.STOP_LIMIT)


def new_order(request: OrderRequest, broker_order_id: str, account: str, now: datetime,
              parent_order_id: str | None = None, oco_group: str | None = None) -> Order:
    """A resting (NEW) order for `request`."""
    return Order(
        broker_order_id=broker_order_id,
        client_order_id=request.client_order_id,
        account=account,
        symbol=request.symbol,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        status=OrderStatus.NEW,
        limit_price=request.limit_price,
        stop_price=request.stop_price,
        time_in_force=request.time_in_force,
        created_at=now,
        updated_at=now,
        parent_order_id=parent_order_id,
        oco_group=oco_group,
    )


def fill_of(order: Order, fill_id: str, price: Decimal, at: datetime, settings: PaperSettings) -> Fill:
    """The fill of what is left of `order` at `price`, with its commission."""
    quantity = order.quantity - order.filled_quantity
    return Fill(
        fill_id=fill_id,
        broker_order_id=order.broker_order_id,
        client_order_id=order.client_order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        quantity=quantity,
        price=price,
        commission=max(settings.commission_per_unit * quantity, settings.commission_minimum),
        filled_at=at,
    )


def bracket_legs(entry: Order, bracket: Bracket) -> list[OrderRequest]:
    """The exits of a filled entry: a LIMIT at the take-profit, a STOP at the stop-loss (opposite side)."""
    tif = entry.time_in_force if entry.time_in_force is TimeInForce.DAY else TimeInForce.GTC
    legs = [("-tp", OrderType.LIMIT, bracket.take_profit), ("-sl", OrderType.STOP, bracket.stop_loss)]
    return [
        OrderRequest(
            client_order_id=entry.client_order_id + suffix,
            account=entry.account,
            symbol=entry.symbol,
            side=entry.side.opposite(),
            quantity=entry.filled_quantity,
            order_type=kind,
            time_in_force=tif,
            limit_price=level if kind is OrderType.LIMIT else None,
            stop_price=level if kind is OrderType.STOP else None,
        )
        for suffix, kind, level in legs
        if level is not None
    ]


def check_request(request: OrderRequest, account: str, book: PaperBook) -> None:
    """Refuse (OrderRejected) a request the paper broker cannot accept; changes nothing."""

    def reject(reason: str) -> NoReturn:
        raise OrderRejected(reason)

    kind, symbol = request.order_type, request.symbol
    if request.account != account:
        reject(f"order for account {request.account!r} sent to paper account {account!r}")
    if not symbol.strip():
        reject("order has no symbol")
    if kind in HAS_LIMIT and request.limit_price is None:
        reject(f"{kind} order needs a limit_price")
    if kind in HAS_STOP and request.stop_price is None:
        reject(f"{kind} order needs a stop_price")
    if kind not in HAS_LIMIT and request.limit_price is not None:
        reject(f"{kind} order takes no limit_price")
    if kind not in HAS_STOP and request.stop_price is not None:
        reject(f"{kind} order takes no stop_price")
    for label in ("limit_price", "stop_price", "take_profit", "stop_loss", "reference_price"):
        value = getattr(request, label)
        if value is not None and value <= ZERO:
            reject(f"{label} must be positive, got {value}")
    current = request.reference_price or book.last_price(symbol)
    if kind is OrderType.MARKET and current is None:
        reject(f"no price known for {symbol}: include price in the alert")
    if request.reduce_only:
        held = book.quantity(symbol)
        if held == ZERO or (held > 0) == (request.side is Side.BUY) or request.quantity > abs(held):
            reject(f"reduce-only {request.side} of {request.quantity} {symbol} would not reduce {held}")
    if request.take_profit is None and request.stop_loss is None:
        return
    entry = {
        OrderType.MARKET: current,
        OrderType.LIMIT: request.limit_price,
        OrderType.STOP: request.stop_price,
        OrderType.STOP_LIMIT: request.limit_price,
    }[kind]
    sign = request.side.sign
    if request.take_profit is not None and entry is not None and (request.take_profit - entry) * sign <= 0:
        where = "above" if sign > 0 else "below"
        reject(f"take_profit {request.take_profit} must be {where} the {request.side} entry {entry}")
    if request.stop_loss is not None and entry is not None and (entry - request.stop_loss) * sign <= 0:
        where = "below" if sign > 0 else "above"
        reject(f"stop_loss {request.stop_loss} must be {where} the {request.side} entry {entry}")
