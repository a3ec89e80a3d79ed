"""Order book of the Tradovate stand-in: its entities (contracts, orders, positions) and the matching engine.

`TradovateBook` is mixed into `TradovateStandin`: it fills working orders against the settable prices
(market, limit, MIT, stop, stop-limit, trailing stop), records fills and execution reports, releases OSO
bracket legs when their entry fills, cancels the OCO sibling, and keeps positions and realized P&L.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.standins.matching import Kind, fill_price, match_until_quiet, trail

WORKING, FILLED, CANCELED, SUSPENDED = "Working", "Filled", "Canceled", "Suspended"
_KINDS: dict[str, Kind] = {"Market": "market", "Stop": "stop", "TrailingStop": "stop", "StopLimit": "stop_limit"}


@dataclass
class TvContract:
    id: int
    name: str
    maturity_id: int
    tick: Decimal
    point_value: Decimal

    def model(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "contractMaturityId": self.maturity_id}


@dataclass
class TvOrder:
    id: int
    account_id: int
    contract: TvContract
    action: str
    order_type: str
    qty: int
    created: datetime
    price: Decimal | None = None
    stop_price: Decimal | None = None
    peg: Decimal | None = None
    status: str = WORKING
    parent_id: int | None = None
    oco_id: int | None = None
    triggered: bool = False
    anchor: Decimal | None = None

    def model(self) -> dict[str, Any]:
        return _compact({"id": self.id, "accountId": self.account_id, "contractId": self.contract.id,
                         "timestamp": _ts(self.created), "action": self.action, "ordStatus": self.status,
                         "ocoId": self.oco_id, "parentId": self.parent_id, "admin": False})


@dataclass
class TvPosition:
    id: int
    account_id: int
    contract: TvContract
    net: int = 0
    avg: Decimal = Decimal(0)
    bought: int = 0
    bought_value: Decimal = Decimal(0)
    sold: int = 0
    sold_value: Decimal = Decimal(0)

    def model(self) -> dict[str, Any]:
        return _compact({"id": self.id, "accountId": self.account_id, "contractId": self.contract.id,
                         "timestamp": _ts(datetime.now(UTC)), "tradeDate": _trade_date(), "netPos": self.net,
                         "netPrice": self.avg if self.net else None, "bought": self.bought,
                         "boughtValue": self.bought_value, "sold": self.sold, "soldValue": self.sold_value,
                         "prevPos": 0})


def _compact(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if v is not None}


def _ts(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _trade_date() -> dict[str, int]:
    today = datetime.now(UTC).date()
    return {"year": today.year, "month": today.month, "day": today.day}


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _failure(reason: str, text: str) -> dict[str, Any]:
    return {"failureReason": reason, "failureText": text}


class TradovateBook:
    """Matching, fills and positions; the host class provides the state and `_next`, `_report`, `_cancel_order`."""

    orders: dict[int, TvOrder]
    prices: dict[int, Decimal]
    fills: list[dict[str, Any]]
    positions: dict[tuple[int, int], TvPosition]
    realized: dict[int, Decimal]
    cash: dict[int, Decimal]

    def _next(self) -> int:
        raise NotImplementedError

    def _report(self, order: TvOrder, exec_type: str, **extra: Any) -> None:
        raise NotImplementedError

    def _cancel_order(self, order: TvOrder) -> None:
        raise NotImplementedError

    def _props(self, entity_type: str, event_type: str, entity: dict[str, Any]) -> None:
        """Publish an entity change on the websocket (the host's stream)."""

    # matching ----------------------------------------------------------------------------------------------

    @staticmethod
    def _fill_price(order: TvOrder, price: Decimal) -> Decimal | None:
        buy = order.action == "Buy"
        kind = order.order_type
        if kind == "MIT":
            level = order.price or Decimal(0)
            return price if (price <= level if buy else price >= level) else None
        if kind == "TrailingStop" and order.peg is not None:
            order.anchor, order.stop_price = trail(order.anchor, price, buy, abs(order.peg))
        at, order.triggered = fill_price(_KINDS.get(kind, "limit"), buy, price, order.stop_price, order.price,
                                         order.triggered)
        return at

    def _match(self, contract_id: int) -> None:
        match_until_quiet(lambda: [o for o in sorted(self.orders.values(), key=lambda o: o.id)
                                   if o.status == WORKING and o.contract.id == contract_id],
                          lambda order: self._fill_price(order, self.prices[contract_id]), self._fill)

    def _fill(self, order: TvOrder, price: Decimal) -> None:
        order.status = FILLED
        now = datetime.now(UTC)
        self.fills.append({"id": self._next(), "orderId": order.id, "contractId": order.contract.id,
                           "timestamp": _ts(now), "tradeDate": _trade_date(), "action": order.action,
                           "qty": order.qty, "price": price, "active": True, "finallyPaired": 0})
        self._props("fill", "Created", self.fills[-1])
        self._report(order, "Trade", cumQty=order.qty, avgPx=price, lastQty=order.qty, lastPx=price)
        pnl = self._apply(order, order.qty if order.action == "Buy" else -order.qty, price)
        self._props("position", "Updated", self.positions[(order.account_id, order.contract.id)].model())
        self.realized[order.account_id] += pnl
        self.cash[order.account_id] += pnl
        for other in self.orders.values():
            if other.id == order.oco_id and other.status in (WORKING, SUSPENDED):
                self._cancel_order(other)
            elif other.parent_id == order.id and other.status == SUSPENDED:
                other.status = WORKING
                self._report(other, "New")

    def _apply(self, order: TvOrder, qty: int, price: Decimal) -> Decimal:
        key = (order.account_id, order.contract.id)
        position = self.positions.setdefault(key, TvPosition(self._next(), order.account_id, order.contract))
        if qty > 0:
            position.bought, position.bought_value = position.bought + qty, position.bought_value + price * qty
        else:
            position.sold, position.sold_value = position.sold - qty, position.sold_value - price * qty
        old = position.net
        position.net = old + qty
        if old == 0 or (old > 0) == (qty > 0):
            position.avg = (position.avg * abs(old) + price * abs(qty)) / abs(old + qty)
            return Decimal(0)
        closed = min(abs(qty), abs(old))
        pnl = (price - position.avg) * closed * (1 if old > 0 else -1) * order.contract.point_value
        if position.net != 0 and (position.net > 0) != (old > 0):
            position.avg = price
        return pnl
