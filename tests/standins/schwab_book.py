"""The Schwab stand-in's account: order strategy trees (SINGLE, TRIGGER, OCO), matching, positions and cash.

Orders are kept as the JSON Schwab answers with (`Order` of the Trader API spec), every node of a strategy
tree with its own `orderId` (OCO containers too). Market orders fill at the symbol's price at once;
limits fill when marketable, stops when the price crosses them (`set_price` re-runs the matching). A
TRIGGER's children wait (`AWAITING_PARENT_ORDER`) until it fills; when one OCO leg fills the others are
cancelled. A TRAILING_STOP follows the best price since it began working (every link basis is the one
price here) by its VALUE or PERCENT offset, and reports the level it has reached as its `stopPrice` (the
Order schema's field; the spec does not say what Schwab shows there). Equity instructions are checked
against the position like the real service (no `SELL` beyond the long quantity, `SELL_SHORT` only when
not long, `BUY_TO_COVER` only when short).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

CENT = Decimal("0.01")
LINK = ("stopPriceLinkBasis", "stopPriceLinkType", "stopPriceOffset")
OPEN = {"WORKING", "QUEUED", "ACCEPTED", "AWAITING_PARENT_ORDER", "PENDING_ACTIVATION", "NEW"}
BUYS = {"BUY", "BUY_TO_COVER"}


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


class Refused(Exception):
    """A business refusal: HTTP 400 with a ServiceError body."""


class SchwabBook:
    def __init__(self, account_number: str, cash: Decimal) -> None:
        self.account_number = account_number
        self.cash = cash
        self.prices: dict[str, Decimal] = {s: Decimal(100) for s in ("AAPL", "MSFT", "SPY", "TSLA")}
        self.trees: list[dict[str, Any]] = []  # top-level strategies, oldest first
        self.nodes: dict[int, dict[str, Any]] = {}  # every node by orderId
        self.parents: dict[int, int] = {}  # node id -> id of the node holding it
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, average price)
        self._ids = itertools.count(1_000_000_001)

    # -- building ----------------------------------------------------------------------------------------

    def _node(self, body: dict[str, Any], status: str) -> dict[str, Any]:
        order_id = next(self._ids)
        kind = body.get("orderStrategyType", "SINGLE")
        node: dict[str, Any] = {"orderId": order_id, "accountNumber": int(self.account_number),
                                "orderStrategyType": kind, "enteredTime": now_text(), "status": status,
                                "cancelable": True, "editable": kind == "SINGLE", "tag": "API_TRADERD"}
        if kind != "OCO":
            legs = body.get("orderLegCollection") or []
            if len(legs) != 1 or (legs[0].get("instrument") or {}).get("symbol") not in self.prices:
                raise Refused("The order must have one leg with a known equity symbol")
            leg = legs[0]
            quantity = Decimal(str(leg["quantity"]))
            node.update({
                "session": body.get("session", "NORMAL"), "duration": body.get("duration", "DAY"),
                "orderType": body.get("orderType", "MARKET"), "quantity": num(quantity), "filledQuantity": 0,
                "remainingQuantity": num(quantity), "orderLegCollection": [{
                    "orderLegType": "EQUITY", "legId": 1, "instruction": leg["instruction"], "quantity": num(quantity),
                    "positionEffect": "CLOSING" if leg["instruction"] in ("SELL", "BUY_TO_COVER") else "OPENING",
                    "instrument": {"assetType": "EQUITY", "symbol": leg["instrument"]["symbol"],
                                   "instrumentId": abs(hash(leg["instrument"]["symbol"])) % 10**8}}],
            })
            for key in ("price", "stopPrice", *LINK):
                if body.get(key) is not None:
                    node[key] = body[key]
            if node["orderType"] == "TRAILING_STOP" and (
                    node.get("stopPriceLinkType") not in ("VALUE", "PERCENT") or "stopPriceLinkBasis" not in node
                    or Decimal(str(node.get("stopPriceOffset") or 0)) <= 0):
                raise Refused("A trailing stop needs stopPriceLinkBasis, stopPriceLinkType VALUE or PERCENT and a "
                              "positive stopPriceOffset")
            if node["orderType"] in ("LIMIT", "STOP_LIMIT") and "price" not in node:
                raise Refused("A limit order needs a price")
            if node["orderType"] in ("STOP", "STOP_LIMIT") and "stopPrice" not in node:
                raise Refused("A stop order needs a stopPrice")
        self.nodes[order_id] = node
        children = body.get("childOrderStrategies") or []
        if children:
            child_status = "AWAITING_PARENT_ORDER" if kind == "TRIGGER" else status
            node["childOrderStrategies"] = []
            for child in children:
                made = self._node(child, child_status)
                self.parents[made["orderId"]] = order_id
                node["childOrderStrategies"].append(made)
        return node

    def place(self, body: dict[str, Any]) -> int:
        self._check_instruction(body)
        tree = self._node(body, "WORKING")
        self.trees.append(tree)
        self.match()
        return int(tree["orderId"])

    def replace(self, old_id: int, body: dict[str, Any]) -> int:
        old = self.nodes[old_id]
        if old["status"] not in OPEN or not old.get("editable"):
            raise Refused(f"Order {old_id} cannot be replaced in status {old['status']}")
        new = self._node(body, old["status"])
        old.update(status="REPLACED", cancelable=False, editable=False, closeTime=now_text())
        holder = self.parents.get(old_id)
        if holder is None:
            self.trees.append(new)
        else:
            self.parents[new["orderId"]] = holder
            self.nodes[holder]["childOrderStrategies"].append(new)
        self.match()
        return int(new["orderId"])

    def cancel(self, order_id: int) -> None:
        node = self.nodes[order_id]
        if node["status"] not in OPEN:
            raise Refused(f"Order {order_id} is {node['status']} and cannot be canceled")
        for each in self.walk(node):
            if each["status"] in OPEN:
                each.update(status="CANCELED", cancelable=False, editable=False, closeTime=now_text())

    # -- matching ----------------------------------------------------------------------------------------

    def walk(self, node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("childOrderStrategies") or []:
            yield from self.walk(child)

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        self.prices[symbol] = Decimal(str(price))
        self.match()

    def _marketable(self, node: dict[str, Any]) -> bool:
        leg = node["orderLegCollection"][0]
        price, buy = self.prices[leg["instrument"]["symbol"]], leg["instruction"] in BUYS
        kind = node["orderType"]
        if kind == "MARKET":
            return True
        if kind == "TRAILING_STOP":
            return self._trail(node, price, buy)
        if kind in ("STOP", "STOP_LIMIT") and not node.get("_triggered"):
            stop = Decimal(str(node["stopPrice"]))
            if not (price >= stop if buy else price <= stop):
                return False
            node["_triggered"] = True
            if kind == "STOP":
                return True
        limit = Decimal(str(node["price"]))
        return price <= limit if buy else price >= limit

    @staticmethod
    def _trail(node: dict[str, Any], price: Decimal, buy: bool) -> bool:
        """Follow the best price since the order began working; True once the price reaches the trailed stop."""
        best = node.get("_best")
        if best is None or (price < best if buy else price > best):
            best = node["_best"] = price
            offset = Decimal(str(node["stopPriceOffset"]))
            distance = offset if node["stopPriceLinkType"] == "VALUE" else best * offset / 100
            level = ((best + distance) / CENT).to_integral_value(ROUND_CEILING) * CENT if buy else \
                ((best - distance) / CENT).to_integral_value(ROUND_FLOOR) * CENT
            node["stopPrice"] = num(level)
        level = Decimal(str(node["stopPrice"]))
        return price >= level if buy else price <= level

    def match(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for node in list(self.nodes.values()):
                if node["status"] == "WORKING" and node["orderStrategyType"] != "OCO" and self._marketable(node):
                    self.fill(node["orderId"])
                    progressed = True

    def fill(self, order_id: int, price: Decimal | None = None) -> None:
        node = self.nodes[order_id]
        leg = node["orderLegCollection"][0]
        symbol, instr = leg["instrument"]["symbol"], leg["instruction"]
        quantity = Decimal(str(node["remainingQuantity"]))
        px = price or self.prices[symbol]
        if node["orderType"] == "LIMIT":
            limit = Decimal(str(node["price"]))
            px = min(px, limit) if instr in BUYS else max(px, limit)
        sign = 1 if instr in BUYS else -1
        self.cash -= sign * quantity * px
        held, average = self.positions.get(symbol, (Decimal(0), Decimal(0)))
        after = held + sign * quantity
        if after == 0:
            self.positions.pop(symbol, None)
        elif held == 0 or (held > 0) == (sign > 0):
            self.positions[symbol] = (after, (average * abs(held) + px * quantity) / abs(after))
        else:
            self.positions[symbol] = (after, average)
        node.setdefault("orderActivityCollection", []).append({
            "activityType": "EXECUTION", "executionType": "FILL", "quantity": num(quantity),
            "orderRemainingQuantity": 0, "executionLegs": [{
                "legId": 1, "price": num(px), "quantity": num(quantity), "mismarkedQuantity": 0,
                "instrumentId": leg["instrument"]["instrumentId"], "time": now_text()}]})
        node.update(status="FILLED", filledQuantity=node["quantity"], remainingQuantity=0, cancelable=False,
                    editable=False, closeTime=now_text())
        for child in node.get("childOrderStrategies") or []:
            for each in self.walk(child):
                if each["status"] == "AWAITING_PARENT_ORDER":
                    each["status"] = "WORKING"
        holder = self.parents.get(order_id)
        if holder is not None and self.nodes[holder]["orderStrategyType"] == "OCO":
            oco = self.nodes[holder]
            for sibling in oco["childOrderStrategies"]:
                for each in self.walk(sibling):
                    if each["status"] in OPEN:
                        each.update(status="CANCELED", cancelable=False, editable=False, closeTime=now_text())
            oco.update(status="FILLED", cancelable=False, editable=False)

    def _check_instruction(self, body: dict[str, Any]) -> None:
        legs = body.get("orderLegCollection") or []
        if not legs:
            return
        leg = legs[0]
        symbol, instr = (leg.get("instrument") or {}).get("symbol", ""), leg.get("instruction")
        quantity, held = Decimal(str(leg.get("quantity", 0))), self.positions.get(symbol, (Decimal(0),))[0]
        if instr == "SELL" and quantity > held:
            raise Refused(f"You cannot sell {quantity} shares of {symbol}: you hold {max(held, Decimal(0))}")
        if instr == "SELL_SHORT" and held > 0:
            raise Refused(f"A short sale of {symbol} is not allowed while you hold it long")
        if instr == "BUY_TO_COVER" and quantity > -held:
            raise Refused(f"You cannot cover {quantity} shares of {symbol}: short {max(-held, Decimal(0))}")
        price = Decimal(str(body.get("price") or self.prices.get(symbol, Decimal(0))))
        if instr == "BUY" and quantity * price > self.cash * 2:
            raise Refused("Your buying power is insufficient for this order")

    # -- rendering ---------------------------------------------------------------------------------------

    def render(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if not k.startswith("_") and k != "childOrderStrategies"}
        if node.get("childOrderStrategies"):
            out["childOrderStrategies"] = [self.render(c) for c in node["childOrderStrategies"]]
        return out

    def position_rows(self) -> list[dict[str, Any]]:
        rows = []
        for symbol, (qty, average) in sorted(self.positions.items()):
            price = self.prices[symbol]
            pnl = (price - average) * qty
            rows.append({
                "longQuantity": num(max(qty, Decimal(0))), "shortQuantity": num(max(-qty, Decimal(0))),
                "averagePrice": num(average), "marketValue": num(qty * price),
                "longOpenProfitLoss": num(pnl if qty > 0 else Decimal(0)),
                "shortOpenProfitLoss": num(pnl if qty < 0 else Decimal(0)), "currentDayProfitLoss": num(pnl),
                "instrument": {"assetType": "EQUITY", "symbol": symbol, "cusip": "000000000"},
            })
        return rows

    def equity(self) -> Decimal:
        return self.cash + sum((q * self.prices[s] for s, (q, _) in self.positions.items()), Decimal(0))
