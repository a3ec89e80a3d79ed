"""The tastytrade stand-in's account: orders and complex orders (OTO, OTOCO, OCO), matching, positions, cash.

Orders are kept in tastytrade's wire form (dasherized keys), with ids, sizes and quantities as the spec
types them (strings) and prices as numbers. Market orders fill at the symbol's price at once, limits when
marketable, stops when the price crosses them (`set_price` re-runs the matching). A trigger's exits wait
as `Contingent` until it fills; when one exit of an OCO pair fills the other is cancelled. Equity actions
are checked against the position like the real service (`Sell to Close` no more than is held, ...),
futures take only `Buy` / `Sell`; a buy beyond twice the cash fails its preflight check.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.symbols import POINT_VALUES, futures_root, normalize

OPEN = {"Received", "Routed", "In Flight", "Live", "Contingent", "Cancel Requested", "Replace Requested"}
BUYS = {"Buy", "Buy to Open", "Buy to Close"}
FRONTS = ("ES1!", "NQ1!", "MES1!")


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def qty(value: Decimal) -> str:
    return f"{value.normalize():f}"


class Refused(Exception):
    """A business refusal: HTTP 422 `{error: {code, message, errors}}`."""

    def __init__(self, message: str, code: str = "preflight_check_failure") -> None:
        super().__init__(message)
        self.code = code


class TastytradeBook:
    def __init__(self, account_number: str, cash: Decimal) -> None:
        self.account_number, self.cash = account_number, cash
        self.prices: dict[str, Decimal] = {s: Decimal(100) for s in ("AAPL", "MSFT", "SPY", "TSLA")}
        for ticker in FRONTS:
            self.prices["/" + normalize(ticker)] = Decimal(6000)
        self.orders: dict[int, dict[str, Any]] = {}
        self.complex: dict[int, dict[str, Any]] = {}  # id -> {type, trigger, orders}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed quantity, average price)
        self.realized: dict[str, Decimal] = {}
        self._ids = itertools.count(300_000_001)
        self._complex_ids = itertools.count(9_000_001)
        self._fill_ids = itertools.count(1)

    @staticmethod
    def multiplier(symbol: str) -> Decimal:
        return POINT_VALUES.get(futures_root(symbol.lstrip("/")) or "", Decimal(1)) if symbol.startswith("/") \
            else Decimal(1)

    # -- checking ----------------------------------------------------------------------------------------

    def check(self, body: dict[str, Any], held_after: dict[str, Decimal] | None = None) -> None:
        legs = body.get("legs") or []
        if len(legs) != 1:
            raise Refused("An order needs exactly one leg here", "invalid_order")
        leg = legs[0]
        symbol, act, kind = leg.get("symbol"), leg.get("action"), leg.get("instrument-type")
        if symbol not in self.prices:
            raise Refused(f"Unknown symbol {symbol}", "invalid_symbol")
        if (kind == "Future") != (act in ("Buy", "Sell")) or (kind == "Future") != str(symbol).startswith("/"):
            raise Refused(f"Action {act} is not valid for a {kind} order", "invalid_action")
        order_type, quantity = body.get("order-type"), Decimal(str(leg.get("quantity", 0)))
        if order_type in ("Limit", "Stop Limit") and (body.get("price") is None or not body.get("price-effect")):
            raise Refused("A limit order needs a price and a price-effect", "invalid_price")
        if order_type in ("Stop", "Stop Limit") and body.get("stop-trigger") is None:
            raise Refused("A stop order needs a stop-trigger", "invalid_stop_trigger")
        held = (held_after or {}).get(symbol, self.positions.get(symbol, (Decimal(0),))[0])
        if act == "Sell to Close" and quantity > held:
            raise Refused(f"Cannot sell to close {quantity} {symbol}: long {max(held, Decimal(0))}")
        if act == "Buy to Close" and quantity > -held:
            raise Refused(f"Cannot buy to close {quantity} {symbol}: short {max(-held, Decimal(0))}")
        if act == "Sell to Open" and held > 0:
            raise Refused(f"Cannot sell to open {symbol} while long")
        price = Decimal(str(body.get("price") or self.prices[symbol]))
        if act in BUYS and kind == "Equity" and quantity * price > self.cash * 2:
            raise Refused("Insufficient buying power for this order")

    # -- building ----------------------------------------------------------------------------------------

    def _make(self, body: dict[str, Any], status: str, complex_id: int | None = None,
              tag: str | None = None) -> dict[str, Any]:
        leg = body["legs"][0]
        quantity = Decimal(str(leg["quantity"]))
        symbol = leg["symbol"]
        now = now_text()
        order: dict[str, Any] = {
            "id": next(self._ids), "account-number": self.account_number, "time-in-force": body["time-in-force"],
            "order-type": body["order-type"], "size": qty(quantity),
            "underlying-symbol": symbol.lstrip("/")[:-2] if symbol.startswith("/") else symbol,
            "underlying-instrument-type": leg["instrument-type"], "status": status, "cancellable": True,
            "editable": True, "edited": False, "received-at": now, "updated-at": now, "source": body.get("source"),
            "legs": [{"instrument-type": leg["instrument-type"], "symbol": symbol, "quantity": qty(quantity),
                      "remaining-quantity": qty(quantity), "action": leg["action"], "fills": []}],
        }
        if status == "Live":
            order["live-at"] = now
        for key in ("price", "price-effect", "stop-trigger", "external-identifier"):
            if body.get(key) is not None:
                order[key] = body[key]
        if complex_id is not None:
            order["complex-order-id"], order["complex-order-tag"] = complex_id, tag
        self.orders[order["id"]] = order
        return order

    def place(self, body: dict[str, Any]) -> dict[str, Any]:
        self.check(body)
        order = self._make(body, "Live")
        self.match()
        return order

    def place_complex(self, body: dict[str, Any]) -> dict[str, Any]:
        kind, trigger, exits = body.get("type"), body.get("trigger-order"), body.get("orders") or []
        if kind not in ("OTO", "OTOCO", "OCO") or (kind != "OCO") != (trigger is not None) or not exits:
            raise Refused(f"Complex order type {kind} with these orders is not supported", "invalid_complex_order")
        after: dict[str, Decimal] = {}
        if trigger is not None:
            self.check(trigger)
            leg = trigger["legs"][0]
            sign = 1 if leg["action"] in BUYS else -1
            held = self.positions.get(leg["symbol"], (Decimal(0),))[0]
            after[leg["symbol"]] = held + sign * Decimal(str(leg["quantity"]))
        for each in exits:
            self.check(each, after)
        complex_id = next(self._complex_ids)
        entry = self._make(trigger, "Live", complex_id, f"{kind}::trigger-order") if trigger else None
        parts = [self._make(each, "Contingent" if entry else "Live", complex_id, f"{kind}::order") for each in exits]
        self.complex[complex_id] = {"type": kind, "trigger": entry["id"] if entry else None,
                                    "orders": [p["id"] for p in parts]}
        self.match()
        return self.render_complex(complex_id)

    def replace(self, order_id: int, body: dict[str, Any]) -> dict[str, Any]:
        old = self.orders[order_id]
        if old["status"] not in ("Live", "Contingent"):
            raise Refused(f"Order {order_id} is {old['status']} and cannot be replaced", "order_not_editable")
        new_body = {**{k: old[k] for k in ("time-in-force", "order-type", "source", "external-identifier")
                       if k in old}, **body, "legs": [{**old["legs"][0], "quantity": old["size"]}]}
        self.check(new_body)
        new = self._make(new_body, old["status"], old.get("complex-order-id"), old.get("complex-order-tag"))
        new["replaces-order-id"] = order_id
        old.update(status="Cancelled", **{"replacing-order-id": new["id"]}, cancellable=False, editable=False,
                   **{"terminal-at": now_text(), "cancelled-at": now_text()})
        for part in self.complex.values():
            part["orders"] = [new["id"] if i == order_id else i for i in part["orders"]]
            if part["trigger"] == order_id:
                part["trigger"] = new["id"]
        self.match()
        return new

    def cancel(self, order_id: int) -> dict[str, Any]:
        order = self.orders[order_id]
        if order["status"] not in OPEN:
            raise Refused(f"Order {order_id} is {order['status']} and cannot be cancelled", "order_not_cancellable")
        self._cancel(order)
        return order

    def cancel_complex(self, complex_id: int) -> dict[str, Any]:
        part = self.complex[complex_id]
        for order_id in [part["trigger"], *part["orders"]]:
            if order_id is not None and self.orders[order_id]["status"] in OPEN:
                self._cancel(self.orders[order_id])
        return self.render_complex(complex_id)

    @staticmethod
    def _cancel(order: dict[str, Any]) -> None:
        order.update(status="Cancelled", cancellable=False, editable=False,
                     **{"terminal-at": now_text(), "cancelled-at": now_text(), "updated-at": now_text()})

    # -- matching ----------------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        self.prices[symbol] = Decimal(str(price))
        self.match()

    def _marketable(self, order: dict[str, Any]) -> bool:
        leg = order["legs"][0]
        price, buy, kind = self.prices[leg["symbol"]], leg["action"] in BUYS, order["order-type"]
        if kind == "Market":
            return True
        if kind in ("Stop", "Stop Limit") and not order.get("_triggered"):
            stop = Decimal(str(order["stop-trigger"]))
            if not (price >= stop if buy else price <= stop):
                return False
            order["_triggered"] = True
            if kind == "Stop":
                return True
        limit = Decimal(str(order["price"]))
        return price <= limit if buy else price >= limit

    def match(self) -> None:
        progressed = True
        while progressed:
            progressed = False
            for order in list(self.orders.values()):
                if order["status"] == "Live" and self._marketable(order):
                    self.fill(order["id"])
                    progressed = True

    def fill(self, order_id: int, price: Decimal | None = None) -> None:
        order = self.orders[order_id]
        leg = order["legs"][0]
        symbol, act, quantity = leg["symbol"], leg["action"], Decimal(leg["remaining-quantity"])
        px = price or self.prices[symbol]
        if order["order-type"] in ("Limit", "Stop Limit") and price is None:
            limit = Decimal(str(order["price"]))
            px = min(px, limit) if act in BUYS else max(px, limit)
        self._book(symbol, 1 if act in BUYS else -1, quantity, px)
        now = now_text()
        leg["fills"].append({"fill-id": f"F{next(self._fill_ids)}", "quantity": qty(quantity), "fill-price": num(px),
                             "filled-at": now, "destination-venue": "STANDIN", "ext-exec-id": "E1"})
        leg["remaining-quantity"] = "0"
        order.update(status="Filled", cancellable=False, editable=False, **{"terminal-at": now, "updated-at": now})
        for part in self.complex.values():
            if part["trigger"] == order_id:
                for each in part["orders"]:
                    if self.orders[each]["status"] == "Contingent":
                        self.orders[each].update(status="Live", **{"live-at": now})
            elif order_id in part["orders"] and part["type"] in ("OTOCO", "OCO"):
                for each in part["orders"]:
                    if each != order_id and self.orders[each]["status"] in OPEN:
                        self._cancel(self.orders[each])

    def _book(self, symbol: str, sign: int, quantity: Decimal, px: Decimal) -> None:
        mult = self.multiplier(symbol)
        held, average = self.positions.get(symbol, (Decimal(0), Decimal(0)))
        after = held + sign * quantity
        if not symbol.startswith("/"):
            self.cash -= sign * quantity * px
        if held != 0 and (held > 0) != (sign > 0):  # reducing: realise the P&L of what is closed
            closed = min(quantity, abs(held))
            pnl = (px - average) * closed * (1 if held > 0 else -1) * mult
            self.realized[symbol] = self.realized.get(symbol, Decimal(0)) + pnl
            if symbol.startswith("/"):
                self.cash += pnl
        if after == 0:
            self.positions.pop(symbol, None)
        elif held == 0 or (held > 0) == (sign > 0):
            self.positions[symbol] = (after, (average * abs(held) + px * quantity) / abs(after))
        elif (after > 0) != (held > 0):
            self.positions[symbol] = (after, px)
        else:
            self.positions[symbol] = (after, average)

    # -- rendering ---------------------------------------------------------------------------------------

    def render(self, order: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in order.items() if not k.startswith("_")}
        for key in ("id", "complex-order-id", "replaces-order-id", "replacing-order-id"):
            if out.get(key) is not None:
                out[key] = str(out[key])  # the spec's types: ids and sizes are strings
        if out.get("stop-trigger") is not None:
            out["stop-trigger"] = str(out["stop-trigger"])
        return out

    def render_complex(self, complex_id: int) -> dict[str, Any]:
        part = self.complex[complex_id]
        out: dict[str, Any] = {"id": str(complex_id), "account-number": self.account_number, "type": part["type"],
                               "orders": [self.render(self.orders[i]) for i in part["orders"]]}
        if part["trigger"] is not None:
            out["trigger-order"] = self.render(self.orders[part["trigger"]])
        return out

    def position_rows(self) -> list[dict[str, Any]]:
        rows = []
        for symbol, (quantity, average) in sorted(self.positions.items()):
            future = symbol.startswith("/")
            rows.append({
                "account-number": self.account_number, "symbol": symbol,
                "instrument-type": "Future" if future else "Equity",
                "underlying-symbol": symbol[:-2] if future else symbol, "quantity": num(abs(quantity)),
                "quantity-direction": "Long" if quantity > 0 else "Short", "close-price": num(self.prices[symbol]),
                "average-open-price": num(average), "multiplier": num(self.multiplier(symbol)),
                "cost-effect": "Debit" if quantity > 0 else "Credit", "is-suppressed": False, "is-frozen": False,
                "mark": num(self.prices[symbol]), "mark-price": num(self.prices[symbol]),
                "realized-day-gain": num(abs(self.realized.get(symbol, Decimal(0)))),
                "realized-day-gain-effect": "Credit" if self.realized.get(symbol, Decimal(0)) >= 0 else "Debit",
                "realized-today": num(abs(self.realized.get(symbol, Decimal(0)))),
                "realized-today-effect": "Credit" if self.realized.get(symbol, Decimal(0)) >= 0 else "Debit",
                "created-at": now_text(), "updated-at": now_text(),
            })
        return rows

    def equity(self) -> Decimal:
        value = Decimal(0)
        for symbol, (quantity, average) in self.positions.items():
            if symbol.startswith("/"):
                value += (self.prices[symbol] - average) * quantity * self.multiplier(symbol)
            else:
                value += quantity * self.prices[symbol]
        return self.cash + value
