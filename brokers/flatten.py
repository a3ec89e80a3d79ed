"""Flatten for adapters whose broker has no flatten of its own: cancel every working order, then close every position.

Entries are cancelled before bracket exits (cancelling an entry takes its exits with it at the brokers that
link them), every failure is collected rather than stopping the rest, and the report says exactly what
was cancelled, what closing orders were sent and what failed. Used by the Schwab and tastytrade adapters;
Tradovate shares the cancelling half and liquidates its own way. `closing_request` is the market order that
closes a holding, for adapters that close by placing one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from brokers.base import Broker, BrokerError
from daemon.domain import FlattenReport, Order, OrderRequest, OrderStatus, Side, client_order_id


def closing_request(broker: str, account: str, symbol: str, held: Decimal, now: datetime) -> OrderRequest | None:
    """The market order that takes a signed holding of `symbol` to zero (None when nothing is held); its
    client order id is new each time, so a second close is a second order, never a lookup of the first."""
    if held == 0:
        return None
    return OrderRequest(client_order_id=client_order_id(account, f"{broker}-close-{symbol}-{now.isoformat()}"),
                        account=account, symbol=symbol, side=Side.SELL if held > 0 else Side.BUY, quantity=abs(held))


async def cancel_working(broker: Broker) -> tuple[list[Order], list[str]]:
    """Cancel every working order, entries before their bracket legs: (the orders cancelled, the failures)."""
    cancelled: list[Order] = []
    errors: list[str] = []
    for order in sorted(await broker.open_orders(), key=lambda o: o.parent_order_id is not None):
        try:
            result = await broker.cancel_order(order.broker_order_id)
        except BrokerError as exc:
            errors.append(f"cancel {order.symbol} order {order.broker_order_id}: {exc.reason}")
            continue
        if result.status is OrderStatus.CANCELLED:
            cancelled.append(result)
    return cancelled, errors


async def cancel_then_close(broker: Broker) -> FlattenReport:
    cancelled, errors = await cancel_working(broker)
    closing: list[Order] = []
    for position in await broker.positions():
        try:
            closed = await broker.close_position(position.symbol)
        except BrokerError as exc:
            errors.append(f"{position.symbol}: {exc.reason}")
            continue
        if closed is not None:
            closing.append(closed)
    return FlattenReport(account=broker.account, cancelled=cancelled, closing=closing, errors=errors)
