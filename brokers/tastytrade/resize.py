"""A quantity change tastytrade's replace cannot make: the order (or its OCO pair) cancelled and placed again.

tastytrade's `PUT` replaces prices and type only. An exit (a bracket leg, a stop, a closing order) that must
shrink with its position (a partial exit) is cancelled and placed anew for the new quantity with the same
type, prices, time in force and identifier; the two exits of an OCO pair are placed again together as an
`OCO` complex order, so one filling still cancels the other. The new orders keep the entry they protect.
Between the cancel and the placement (one request) the position rests without those exits.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from brokers.base import BrokerUnavailable
from brokers.tastytrade import models as tm
from brokers.tastytrade.orders import Orders, Raw
from brokers.tastytrade.session import TastytradeSession
from daemon.domain import Order

KEPT = ("time-in-force", "order-type", "price-effect", "external-identifier")


def resized_body(raw: Raw, quantity: Decimal) -> dict[str, Any]:
    """The POST body of `raw` again, for `quantity`."""
    leg = tm.leg_of(raw)
    body: dict[str, Any] = {k: raw[k] for k in KEPT if raw.get(k) is not None}
    for key in ("price", "stop-trigger"):
        if (value := tm.dec(raw.get(key))) is not None:
            body[key] = tm.num(value)
    return body | {"automated-source": True, "source": "traderd", "legs": [{
        "instrument-type": leg.get("instrument-type"), "symbol": leg.get("symbol"), "quantity": tm.num(quantity),
        "action": leg.get("action")}]}


async def resize(session: TastytradeSession, orders: Orders, current: Order, raw: Raw, quantity: Decimal,
                 record: Callable[[str, str, str], None]) -> Order:
    """`current` (its OCO pair too) cancelled and placed again for `quantity`; the new order of `current`.
    `record(client order id, old id, new id)` journals each replacement."""
    what = f"tastytrade resize {current.broker_order_id}"
    pair = [current.broker_order_id]
    if current.oco_group is not None:
        pair += [str(r["id"]) for r in await orders.live()
                 if str(r.get("complex-order-id") or "") == current.oco_group and str(r["id"]) not in pair
                 and tm.STATUS.get(str(r.get("status"))) is None]
    raws = {order_id: (raw if order_id == current.broker_order_id else await orders.raw(order_id)) for order_id in pair}
    bodies = [resized_body(r, quantity) for r in raws.values()]
    grouped = len(bodies) > 1
    path = f"/complex-orders/{current.oco_group}" if grouped else f"/orders/{current.broker_order_id}"
    await session.call("DELETE", orders.path(path), safe=True, what=f"{what}: cancel")
    try:
        if grouped:
            data = await session.data("POST", orders.path("/complex-orders"), safe=False, what=what,
                                      json={"type": "OCO", "orders": bodies, "source": "traderd"})
            orders.learn(data["complex-order"])
            placed = [r for r, _, _ in tm.complex_parts(data["complex-order"])]
        else:
            data = await session.data("POST", orders.path("/orders"), json=bodies[0], safe=False, what=what)
            placed = [data["order"]]
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"{what}: cancelled, and the answer to placing it again was lost ({exc.reason}); "
                                "reconciliation finds it by its identifier") from None
    parent = orders.links.get(current.broker_order_id, (None, None))[0]
    out = []
    for (old_id, old), new in zip(raws.items(), placed, strict=True):
        orders.links[str(new["id"])] = (parent, orders.links.get(str(new["id"]), (None, None))[1])
        record(str(old.get("external-identifier") or ""), old_id, str(new["id"]))
        out.append(await orders.order(new))
    return out[0]
