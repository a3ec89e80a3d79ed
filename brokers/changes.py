"""Shared steps of changing a resting order: cancel it and read it back, and refuse to modify a finished one.

For adapters that read an order back as (Order, the broker's own record of it) and whose cancel request is
safe to resend (cancelling twice is harmless, so a lost answer may be sent again). Used by the Schwab and
tastytrade adapters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from brokers.base import OrderRejected
from daemon.domain import Order

Raw = TypeVar("Raw")
Load = Callable[[str], Awaitable[tuple[Order, Raw]]]


async def cancel_then_reload(broker_order_id: str, load: Load[Raw], cancel: Callable[[Raw], Awaitable[Any]]
                             ) -> Order:
    """The order as it is after `cancel` (given the broker's record of it) was sent for it; an order that is
    no longer open is answered as it is, with nothing sent. A refusal (not cancellable any more: it filled
    meanwhile) is no error: the answer is the order as it then is."""
    order, raw = await load(broker_order_id)
    if not order.status.is_open:
        return order
    try:
        await cancel(raw)
    except OrderRejected:
        pass
    order, _ = await load(broker_order_id)
    return order


async def modifiable(broker_order_id: str, load: Load[Raw], what: str) -> tuple[Order, Raw]:
    """The open order to modify, with the broker's record of it; `OrderRejected` when it is finished."""
    current, raw = await load(broker_order_id)
    if not current.status.is_open:
        raise OrderRejected(f"{what}: order is {current.status.value}, it cannot be modified")
    return current, raw
