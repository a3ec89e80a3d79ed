"""The ProjectX stand-in's state: accounts, contracts, prices, orders, positions, trades, and matching.

`ProjectXEngine` takes request bodies (dicts) and returns response bodies, with the gateway's conventions:
business failures as `success: false` + `errorCode` + `errorMessage`, `customTag` unique per account,
bracket children (ticks from the fill price) created when the entry fills, half-turn trades with P&L and fees.
`set_price` moves a market and fills resting orders that become marketable. Every change is also told to
`.listeners` as a user-hub event (`GatewayUserOrder`, `GatewayUserTrade`, `GatewayUserPosition`, with the
REST models), which the stand-in hub (`tests.standins.signalr`) pushes to its subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tests.standins.matching import Kind, fill_price, match_until_quiet, trail

LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK = 1, 2, 3, 4, 5, 6, 7
OPEN, FILLED, CANCELLED = 1, 2, 3
_KINDS: dict[int, Kind] = {MARKET: "market", STOP: "stop", TRAILING_STOP: "stop", STOP_LIMIT: "stop_limit"}
BID, ASK = 0, 1


def parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _compact(model: dict[str, Any]) -> dict[str, Any]:
    """Optional fields are left out rather than sent as null: the spec has no nullable properties."""
    return {k: v for k, v in model.items() if v is not None}


@dataclass
class PxAccount:
    id: int
    name: str
    balance: Decimal
    can_trade: bool = True
    active: bool = True

    def model(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "balance": self.balance, "canTrade": self.can_trade,
                "isVisible": True, "simulated": True}


@dataclass
class PxContract:
    id: str
    name: str
    description: str
    tick_size: Decimal
    tick_value: Decimal
    symbol_id: str
    fee: Decimal  # per contract per side
    active: bool = True

    def model(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "tickSize": self.tick_size,
                "tickValue": self.tick_value, "activeContract": self.active, "symbolId": self.symbol_id}


@dataclass
class PxOrder:
    id: int
    account_id: int
    contract: PxContract
    type: int
    side: int
    size: int
    created: datetime
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    custom_tag: str | None = None
    status: int = OPEN
    updated: datetime | None = None
    fill_volume: int = 0
    filled_price: Decimal | None = None
    brackets: tuple[tuple[str, int, int], ...] = ()  # ("sl" | "tp", ticks, order type)
    oco_id: int | None = None  # bracket children share their parent's id
    triggered: bool = False
    anchor: Decimal | None = None  # best price seen, for trailing stops

    def model(self) -> dict[str, Any]:
        return _compact({
            "id": self.id, "accountId": self.account_id, "contractId": self.contract.id,
            "symbolId": self.contract.symbol_id, "creationTimestamp": self.created.isoformat(),
            "updateTimestamp": (self.updated or self.created).isoformat(), "status": self.status,
            "type": self.type, "side": self.side, "size": self.size, "limitPrice": self.limit_price,
            "stopPrice": self.stop_price, "fillVolume": self.fill_volume, "filledPrice": self.filled_price,
            "customTag": self.custom_tag,
        })


@dataclass
class PxPosition:
    id: int
    account_id: int
    contract_id: str
    created: datetime
    size: int  # signed: > 0 long, < 0 short
    average_price: Decimal

    def model(self) -> dict[str, Any]:
        return {"id": self.id, "accountId": self.account_id, "contractId": self.contract_id,
                "creationTimestamp": self.created.isoformat(), "type": 1 if self.size > 0 else 2,
                "size": abs(self.size), "averagePrice": self.average_price}


@dataclass
class PxTrade:
    id: int
    account_id: int
    contract_id: str
    created: datetime
    price: Decimal
    pnl: Decimal | None  # None for a half-turn that only opens
    fees: Decimal
    side: int
    size: int
    order_id: int

    def model(self) -> dict[str, Any]:
        return _compact({"id": self.id, "accountId": self.account_id, "contractId": self.contract_id,
                         "creationTimestamp": self.created.isoformat(), "price": self.price,
                         "profitAndLoss": self.pnl, "fees": self.fees, "side": self.side, "size": self.size,
                         "voided": False, "orderId": self.order_id})


def default_contracts() -> list[PxContract]:
    d = Decimal
    return [
        PxContract("CON.F.US.EP.Z26", "ESZ6", "E-mini S&P 500: December 2026", d("0.25"), d("12.50"),
                   "F.US.EP", d("1.40")),
        PxContract("CON.F.US.ENQ.Z26", "NQZ6", "E-mini NASDAQ-100: December 2026", d("0.25"), d("5.00"),
                   "F.US.ENQ", d("1.40")),
        PxContract("CON.F.US.MES.Z26", "MESZ6", "Micro E-mini S&P 500: December 2026", d("0.25"), d("1.25"),
                   "F.US.MES", d("0.37")),
        PxContract("CON.F.US.MNQ.Z26", "MNQZ6", "Micro E-mini Nasdaq-100: December 2026", d("0.25"),
                   d("0.50"), "F.US.MNQ", d("0.37")),
    ]


def ok(**extra: Any) -> dict[str, Any]:
    return {"success": True, "errorCode": 0, **extra}


def fail(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errorCode": code, "errorMessage": message}


class ProjectXEngine:
    """Accounts, contracts, prices, orders, positions and trades; request bodies in, response bodies out."""

    def __init__(self) -> None:
        self.accounts = {a.id: a for a in (PxAccount(1001, "50KTC-V2-000001-1", Decimal("50000")),
                                           PxAccount(1002, "150KTC-V2-000001-2", Decimal("150000")))}
        self.contracts = {c.id: c for c in default_contracts()}
        self.prices = {cid: Decimal("21000") if "NQ" in cid else Decimal("6000") for cid in self.contracts}
        self.orders: dict[int, PxOrder] = {}
        self.positions: dict[tuple[int, str], PxPosition] = {}
        self.trades: list[PxTrade] = []
        self.custom_tags: set[tuple[int, str]] = set()
        self._ids = {"order": 8_000_000, "position": 500_000, "trade": 3_000_000}
        self.listeners: list[Callable[[str, int, dict[str, Any]], None]] = []  # (event, account id, model)

    def _notify(self, event: str, account_id: int, model: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, account_id, model)

    def _order_changed(self, order: PxOrder) -> None:
        self._notify("GatewayUserOrder", order.account_id, order.model())

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def set_price(self, contract_id: str, price: Decimal) -> None:
        self.prices[contract_id] = price
        self._match(contract_id)

    # orders --------------------------------------------------------------------------------------

    def place(self, body: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts.get(int(body["accountId"]))
        if account is None:
            return fail(1, "Account not found.")
        if not account.can_trade:
            return fail(10, "Account is not allowed to trade.")
        contract = self.contracts.get(str(body["contractId"]))
        if contract is None:
            return fail(8, "Contract not found.")
        if not contract.active:
            return fail(9, "Contract is not active.")
        kind, side, size = int(body["type"]), int(body["side"]), int(body["size"])
        limit, stop, trail = (_dec(body.get(k)) for k in ("limitPrice", "stopPrice", "trailPrice"))
        tag = body.get("customTag")
        if not LIMIT <= kind <= JOIN_ASK or side not in (BID, ASK):
            return fail(2, f"Invalid order type {kind} or side {side}.")
        if size <= 0:
            return fail(2, "Invalid order size.")
        if tag is not None and (account.id, str(tag)) in self.custom_tags:
            return fail(2, f"An order with custom tag '{tag}' already exists on this account.")
        if kind in (JOIN_BID, JOIN_ASK):
            limit = self.prices[contract.id]
        missing = {LIMIT: limit is None, STOP: stop is None, STOP_LIMIT: limit is None or stop is None,
                   TRAILING_STOP: trail is None}.get(kind, False)
        if missing:
            return fail(2, "Price missing for this order type.")
        if error := self._price_error(contract, limit, stop, trail):
            return error
        brackets = tuple(
            (name, abs(int(b["ticks"])), int(b["type"]))
            for name, b in (("sl", body.get("stopLossBracket")), ("tp", body.get("takeProfitBracket")))
            if b is not None
        )
        order = PxOrder(self._next("order"), account.id, contract, kind, side, size, datetime.now(UTC),
                        limit, stop, trail, None if tag is None else str(tag), brackets=brackets)
        if tag is not None:
            self.custom_tags.add((account.id, str(tag)))
        self.orders[order.id] = order
        self._order_changed(order)
        self._match(contract.id)
        return ok(orderId=order.id)

    @staticmethod
    def _price_error(contract: PxContract, *prices: Decimal | None) -> dict[str, Any] | None:
        for price in prices:
            if price is not None and (price <= 0 or price % contract.tick_size != 0):
                return fail(2, f"Invalid price {price}: not a positive multiple of the tick size.")
        return None

    def _find_order(self, body: dict[str, Any]) -> tuple[PxOrder | None, dict[str, Any] | None]:
        if int(body["accountId"]) not in self.accounts:
            return None, fail(1, "Account not found.")
        order = self.orders.get(int(body["orderId"]))
        if order is None or order.account_id != int(body["accountId"]):
            return None, fail(2, "Order not found.")
        if order.status != OPEN:
            return None, fail(3, "Order is not open.")
        return order, None

    def cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._find_order(body)
        if order is None:
            return error or fail(5, "Unknown error.")
        order.status, order.updated = CANCELLED, datetime.now(UTC)
        self._order_changed(order)
        return ok()

    def modify(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._find_order(body)
        if order is None:
            return error or fail(5, "Unknown error.")
        limit, stop, trail = (_dec(body.get(k)) for k in ("limitPrice", "stopPrice", "trailPrice"))
        if (size := body.get("size")) is not None and int(size) <= 0:
            return fail(3, "Invalid order size.")
        if error := self._price_error(order.contract, limit, stop, trail):
            return {**error, "errorCode": 3}
        order.size = int(size) if size is not None else order.size
        order.limit_price = limit if limit is not None else order.limit_price
        order.stop_price = stop if stop is not None else order.stop_price
        order.trail_price = trail if trail is not None else order.trail_price
        order.updated = datetime.now(UTC)
        self._order_changed(order)
        self._match(order.contract.id)
        return ok()

    def _orders_between(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return fail(1, "Account not found.")
        start = parse_time(body["startTimestamp"])
        end = parse_time(body["endTimestamp"]) if body.get("endTimestamp") else None
        found = [o.model() for o in self.orders.values()
                 if o.account_id == account_id and o.created >= start and (end is None or o.created <= end)]
        return ok(orders=found)

    def search_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._orders_between(body)

    def search_open_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return fail(1, "Account not found.")
        return ok(orders=[o.model() for o in self.orders.values()
                           if o.account_id == account_id and o.status == OPEN])

    # positions and trades ------------------------------------------------------------------------

    def search_positions(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return fail(1, "Account not found.")
        return ok(positions=[p.model() for p in self.positions.values() if p.account_id == account_id])

    def close_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._close(int(body["accountId"]), str(body["contractId"]), None)

    def partial_close_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._close(int(body["accountId"]), str(body["contractId"]), int(body["size"]))

    def _close(self, account_id: int, contract_id: str, size: int | None) -> dict[str, Any]:
        if account_id not in self.accounts:
            return fail(1, "Account not found.")
        if contract_id not in self.contracts:
            return fail(3, "Contract not found.")
        position = self.positions.get((account_id, contract_id))
        if position is None:
            return fail(2, "Position not found.")
        if size is not None and not 0 < size <= abs(position.size):
            return fail(5, "Invalid close size.")
        order = PxOrder(self._next("order"), account_id, self.contracts[contract_id], MARKET,
                        ASK if position.size > 0 else BID, size or abs(position.size), datetime.now(UTC))
        self.orders[order.id] = order
        self._order_changed(order)
        self._match(contract_id)
        return ok()

    def search_trades(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return fail(1, "Account not found.")
        start = parse_time(body["startTimestamp"]) if body.get("startTimestamp") else None
        end = parse_time(body["endTimestamp"]) if body.get("endTimestamp") else None
        return ok(trades=[t.model() for t in self.trades if t.account_id == account_id
                           and (start is None or t.created >= start) and (end is None or t.created <= end)])

    # matching ------------------------------------------------------------------------------------

    def _fill_price(self, order: PxOrder, price: Decimal) -> Decimal | None:
        buy = order.side == BID
        if order.type == TRAILING_STOP and order.trail_price is not None:
            order.anchor, order.stop_price = trail(order.anchor, price, buy, order.trail_price)
        at, order.triggered = fill_price(_KINDS.get(order.type, "limit"), buy, price, order.stop_price,
                                         order.limit_price, order.triggered)
        return at

    def _match(self, contract_id: str) -> None:
        match_until_quiet(lambda: [o for o in sorted(self.orders.values(), key=lambda o: o.id)
                                   if o.status == OPEN and o.contract.id == contract_id],
                          lambda order: self._fill_price(order, self.prices[contract_id]), self._fill)

    def _fill(self, order: PxOrder, price: Decimal) -> None:
        now = datetime.now(UTC)
        order.status, order.fill_volume, order.filled_price, order.updated = FILLED, order.size, price, now
        contract, account = order.contract, self.accounts[order.account_id]
        pnl = self._apply(order.account_id, contract, order.size if order.side == BID else -order.size, price)
        fees = contract.fee * order.size
        trade = PxTrade(self._next("trade"), order.account_id, contract.id, now, price, pnl, fees, order.side,
                        order.size, order.id)
        self.trades.append(trade)
        account.balance += (pnl or Decimal(0)) - fees
        self._notify("GatewayUserTrade", order.account_id, trade.model())
        self._order_changed(order)
        position = self.positions.get((order.account_id, contract.id))
        self._notify("GatewayUserPosition", order.account_id, position.model() if position else {
            "id": 0, "accountId": order.account_id, "contractId": contract.id, "creationTimestamp": now.isoformat(),
            "type": 0, "size": 0, "averagePrice": 0})
        siblings = [o for o in self.orders.values() if o.status == OPEN and o.oco_id is not None]
        for other in siblings:  # the other leg of a bracket, or every bracket once the position is flat
            if other.oco_id == order.oco_id or (
                (order.account_id, contract.id) not in self.positions and other.contract.id == contract.id
            ):
                other.status, other.updated = CANCELLED, now
                self._order_changed(other)
        for name, ticks, kind in order.brackets:
            offset = contract.tick_size * ticks * (1 if (name == "tp") == (order.side == BID) else -1)
            child = PxOrder(self._next("order"), order.account_id, contract, kind, 1 - order.side, order.size,
                            now, oco_id=order.id)
            if kind in (LIMIT, STOP_LIMIT):
                child.limit_price = price + offset
            if kind in (STOP, STOP_LIMIT):
                child.stop_price = price + offset
            if kind == TRAILING_STOP:
                child.trail_price = abs(offset)
            self.orders[child.id] = child
            self._order_changed(child)

    def _apply(self, account_id: int, contract: PxContract, qty: int, price: Decimal) -> Decimal | None:
        """Add a signed fill to the position; returns the realised P&L (None if the fill only opened)."""
        key = (account_id, contract.id)
        position = self.positions.get(key)
        if position is None:
            now = datetime.now(UTC)
            self.positions[key] = PxPosition(self._next("position"), account_id, contract.id, now, qty, price)
            return None
        old = position.size
        if (old > 0) == (qty > 0):
            position.average_price = (position.average_price * abs(old) + price * abs(qty)) / abs(old + qty)
            position.size = old + qty
            return None
        closed = min(abs(qty), abs(old))
        pnl = (price - position.average_price) * closed * (1 if old > 0 else -1) * contract.tick_value
        pnl /= contract.tick_size
        position.size = old + qty
        if position.size == 0:
            del self.positions[key]
        elif (position.size > 0) != (old > 0):
            position.average_price, position.created = price, datetime.now(UTC)
        return pnl
