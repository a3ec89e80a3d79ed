"""The state of the Binance spot stand-in: markets with their filters, balances, orders, OCO lists and trades.

Pure bookkeeping, no HTTP: `tests.standins.binance_api` turns requests into calls here and renders the
answers. Behaviour follows Binance's REST docs: filters are checked in the exchange's order (PRICE_FILTER,
LOT_SIZE, NOTIONAL) with `-1013 Filter failure: ...`; a missing balance is `-2010 Account has insufficient
balance for requested action.`; a `newClientOrderId` already used by an open order is `-2010 Duplicate order
sent.`; market orders fill at once at the symbol's price with a 0.1 % commission in the asset received;
limit orders fill at once when marketable (LIMIT_MAKER is then refused), else rest with their balance
locked; stop orders trigger when `set_price` reaches their stop price (a STOP_LOSS with `trailingDelta` and
no stop price trails the best price since its placement by that many basis points); when one order of an OCO list
executes, the other is expired. An OTOCO's two pending orders wait as `PENDING_NEW` (listed among open
orders, nothing locked, never triggered) until its working order has fully filled, then go on the book as
an OCO (expired if the balance no longer covers them); cancelling any order of a list cancels all of it.
Every change of an order on the book is told to `listeners` as (order, execution type, trade or None), in
the order Binance sends its `executionReport` events: `NEW`, `TRADE`, `CANCELED`, `EXPIRED`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

FEE = Decimal("0.001")
OPEN = ("NEW", "PARTIALLY_FILLED")
PENDING = "PENDING_NEW"


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


@dataclass
class Market:
    symbol: str
    base: str
    quote: str
    step: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    tick: Decimal = Decimal("0.01")
    min_notional: Decimal = Decimal("5")


def s8(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.00000001')):f}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Book:
    markets: dict[str, Market] = field(default_factory=lambda: {
        "BTCUSDT": Market("BTCUSDT", "BTC", "USDT"),
        "ETHUSDT": Market("ETHUSDT", "ETH", "USDT", step=Decimal("0.0001"), min_qty=Decimal("0.0001")),
        "BNBUSDT": Market("BNBUSDT", "BNB", "USDT", step=Decimal("0.001"), min_qty=Decimal("0.001")),
    })
    prices: dict[str, Decimal] = field(default_factory=lambda: {
        "BTCUSDT": Decimal("60000"), "ETHUSDT": Decimal("3000"), "BNBUSDT": Decimal("600")})
    free: dict[str, Decimal] = field(default_factory=lambda: {"USDT": Decimal("10000"), "BTC": Decimal(0)})
    locked: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    lists: dict[int, list[int]] = field(default_factory=dict)
    working: dict[int, int] = field(default_factory=dict)  # OTOCO list id -> its working order id
    listeners: list[Callable[[dict[str, Any], str, dict[str, Any] | None], None]] = field(default_factory=list)
    _next: int = 1000

    def _tell(self, order: dict[str, Any], execution: str, trade: dict[str, Any] | None = None) -> None:
        for listener in self.listeners:
            listener(order, execution, trade)

    def _id(self) -> int:
        self._next += 1
        return self._next

    def market(self, symbol: str) -> Market:
        if symbol not in self.markets:
            raise BinanceError(-1121, "Invalid symbol.")
        return self.markets[symbol]

    # -- checks ------------------------------------------------------------------------------------------

    def _filters(self, m: Market, qty: Decimal, price: Decimal | None, stop: Decimal | None, market: bool) -> None:
        for p in (price, stop):
            if p is not None and (p <= 0 or p % m.tick != 0):
                raise BinanceError(-1013, "Filter failure: PRICE_FILTER")
        if qty < m.min_qty or qty > m.max_qty or qty % m.step != 0:
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        reference = self.prices[m.symbol] if market or price is None else price
        if qty * reference < m.min_notional:
            raise BinanceError(-1013, "Filter failure: NOTIONAL")

    def _need(self, m: Market, side: str, qty: Decimal, price: Decimal) -> tuple[str, Decimal]:
        asset, amount = (m.quote, qty * price) if side == "BUY" else (m.base, qty)
        if self.free.get(asset, Decimal(0)) < amount:
            raise BinanceError(-2010, "Account has insufficient balance for requested action.")
        return asset, amount

    def _move(self, asset: str, amount: Decimal, *, lock: bool) -> None:
        src, dst = (self.free, self.locked) if lock else (self.locked, self.free)
        src[asset] = src.get(asset, Decimal(0)) - amount
        dst[asset] = dst.get(asset, Decimal(0)) + amount

    # -- orders ------------------------------------------------------------------------------------------

    def by_client(self, symbol: str, cid: str) -> dict[str, Any] | None:
        found = [o for o in self.orders.values() if o["symbol"] == symbol and o["clientOrderId"] == cid]
        return found[-1] if found else None

    def find(self, symbol: str, order_id: int | None, cid: str | None) -> dict[str, Any]:
        self.market(symbol)
        order = self.orders.get(order_id) if order_id is not None else self.by_client(symbol, cid or "")
        if order is None or order["symbol"] != symbol:
            raise BinanceError(-2013, "Order does not exist.")
        return order

    def new_order(self, symbol: str, side: str, kind: str, qty: Decimal, price: Decimal | None,
                  stop: Decimal | None, tif: str | None, cid: str, list_id: int = -1,
                  trail: Decimal | None = None) -> dict[str, Any]:
        m = self.market(symbol)
        if trail is not None and (kind not in ("STOP_LOSS", "STOP_LOSS_LIMIT") or trail % 1 or not 10 <= trail <= 2000):
            raise BinanceError(-2010, "Invalid trailingDelta.")
        if kind in ("STOP_LOSS", "STOP_LOSS_LIMIT") and stop is None and trail is None:
            raise BinanceError(-1102, "Mandatory parameter 'stopPrice' was not sent, was empty/null, or malformed.")
        if any(o["clientOrderId"] == cid and o["status"] in OPEN for o in self.orders.values()):
            raise BinanceError(-2010, "Duplicate order sent.")
        self._filters(m, qty, price, stop, kind == "MARKET")
        last = self.prices[symbol]
        if kind == "LIMIT_MAKER" and price is not None and (price >= last if side == "BUY" else price <= last):
            raise BinanceError(-2010, "Order would immediately match and take.")
        if kind in ("STOP_LOSS", "STOP_LOSS_LIMIT") and stop is not None and self._triggered(side, stop, last):
            raise BinanceError(-2010, "Stop price would trigger immediately.")
        asset, amount = self._need(m, side, qty, price or last)
        at = now_ms()
        order = {"symbol": symbol, "orderId": self._id(), "orderListId": list_id, "clientOrderId": cid,
                 "price": price or Decimal(0), "origQty": qty, "executedQty": Decimal(0),
                 "cummulativeQuoteQty": Decimal(0), "status": "NEW", "timeInForce": tif or "GTC",
                 "type": kind, "side": side, "stopPrice": stop or Decimal(0), "time": at, "updateTime": at,
                 "workingTime": at if kind not in ("STOP_LOSS", "STOP_LOSS_LIMIT") else -1,
                 "fills": [], "_lock": (asset, amount)}
        if trail is not None:  # trailing from now (no activation price): `_level` is where it would trigger
            order |= {"trailingDelta": int(trail), "trailingTime": at}
            self._trail(order, last)
        self.orders[order["orderId"]] = order
        self._move(asset, amount, lock=True)
        self._tell(order, "NEW")
        if kind == "MARKET" or (kind == "LIMIT" and self._marketable(order, last)):
            self._execute(order, last if kind == "MARKET" else min(price or last, last) if side == "BUY"
                          else max(price or last, last))
        return order

    @staticmethod
    def _triggered(side: str, stop: Decimal, last: Decimal) -> bool:
        return last >= stop if side == "BUY" else last <= stop

    @staticmethod
    def _marketable(order: dict[str, Any], last: Decimal) -> bool:
        return last <= order["price"] if order["side"] == "BUY" else last >= order["price"]

    def _execute(self, order: dict[str, Any], price: Decimal) -> None:
        m = self.markets[order["symbol"]]
        qty = order["origQty"] - order["executedQty"]
        asset, locked = order["_lock"]
        self.locked[asset] = self.locked.get(asset, Decimal(0)) - locked
        quote = (qty * price).quantize(Decimal("0.00000001"), ROUND_DOWN)
        if order["side"] == "BUY":
            fee, fee_asset = (qty * FEE).quantize(Decimal("0.00000001")), m.base
            self.free[m.quote] = self.free.get(m.quote, Decimal(0)) + locked - quote
            self.free[m.base] = self.free.get(m.base, Decimal(0)) + qty - fee
        else:
            fee, fee_asset = (quote * FEE).quantize(Decimal("0.00000001")), m.quote
            self.free[m.base] = self.free.get(m.base, Decimal(0)) + locked - qty
            self.free[m.quote] = self.free.get(m.quote, Decimal(0)) + quote - fee
        order["_lock"] = (asset, Decimal(0))
        order["executedQty"] += qty
        order["cummulativeQuoteQty"] += quote
        order["status"] = "FILLED"
        order["updateTime"] = now_ms()
        trade = {"symbol": m.symbol, "id": self._id(), "orderId": order["orderId"], "orderListId": order["orderListId"],
                 "price": price, "qty": qty, "quoteQty": quote, "commission": fee, "commissionAsset": fee_asset,
                 "time": order["updateTime"], "isBuyer": order["side"] == "BUY",
                 "isMaker": order["type"] in ("LIMIT", "LIMIT_MAKER"), "isBestMatch": True}
        self.trades.append(trade)
        order["fills"].append({"price": s8(price), "qty": s8(qty), "commission": s8(fee), "commissionAsset": fee_asset,
                               "tradeId": trade["id"]})
        self._tell(order, "TRADE", trade)
        list_id = order["orderListId"]
        if self.working.get(list_id) == order["orderId"]:
            self._activate(list_id)
            return
        for sibling in self.lists.get(list_id, []):
            if sibling != order["orderId"] and self.orders[sibling]["status"] in OPEN:
                self._end(self.orders[sibling], "EXPIRED")

    def _activate(self, list_id: int) -> None:
        """The working order of an OTOCO filled: its pending pair goes on the book, locking its balance once."""
        legs = [self.orders[i] for i in self.lists[list_id] if self.orders[i]["status"] == PENDING]
        if not legs:
            return
        m, first = self.markets[legs[0]["symbol"]], legs[0]
        try:
            asset, amount = self._need(m, first["side"], first["origQty"], first["price"] or self.prices[m.symbol])
        except BinanceError:
            for leg in legs:
                leg["status"], leg["updateTime"] = "EXPIRED", now_ms()
            return
        self._move(asset, amount, lock=True)
        for n, leg in enumerate(legs):
            leg["status"], leg["updateTime"] = "NEW", now_ms()
            leg["workingTime"] = leg["updateTime"] if leg["type"] == "LIMIT_MAKER" else -1
            leg["_lock"] = (asset, amount if n == 0 else Decimal(0))
            self._tell(leg, "NEW")

    def _end(self, order: dict[str, Any], status: str) -> None:
        asset, amount = order["_lock"]
        self._move(asset, amount, lock=False)
        order["_lock"] = (asset, Decimal(0))
        order["status"] = status
        order["updateTime"] = now_ms()
        self._tell(order, status)

    def cancel(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        """Cancel an open order (and the rest of its OCO list); -2011 when it is no longer open."""
        if order["status"] not in (*OPEN, PENDING):
            raise BinanceError(-2011, "Unknown order sent.")
        ended = [order] + [self.orders[i] for i in self.lists.get(order["orderListId"], [])
                           if i != order["orderId"] and self.orders[i]["status"] in (*OPEN, PENDING)]
        for o in ended:
            self._end(o, "CANCELED")
        return ended

    def oco(self, symbol: str, side: str, qty: Decimal, above: dict[str, Any], below: dict[str, Any]) -> int:
        """Two orders in one list; both checked before either is placed, the locked balance counted once."""
        list_id = self._id()
        legs = []
        m = self.market(symbol)
        self._need(m, side, qty, self.prices[symbol])
        for leg in (above, below):
            self._filters(m, qty, leg.get("price"), leg.get("stopPrice"), False)
        for leg in (above, below):
            # each leg locks the same base balance in Binance's books only once; lock it on the first leg
            order = self.new_order(symbol, side, leg["type"], qty, leg.get("price"), leg.get("stopPrice"),
                                   leg.get("timeInForce"), leg["clientOrderId"], list_id)
            legs.append(order["orderId"])
            if len(legs) == 1 and side == "SELL":
                self._move(m.base, qty, lock=False)  # released again, so that the second leg can lock it
                order["_lock"] = (m.base, Decimal(0))
        self.lists[list_id] = legs
        return list_id

    def otoco(self, symbol: str, working: dict[str, Any], side: str, qty: Decimal, above: dict[str, Any],
              below: dict[str, Any]) -> int:
        """A working LIMIT order and the pending OCO that follows its fill; every filter checked first."""
        m = self.market(symbol)
        if working["type"] not in ("LIMIT", "LIMIT_MAKER"):
            raise BinanceError(-1116, "Invalid orderType.")
        for leg in (above, below):
            self._filters(m, qty, leg.get("price"), leg.get("stopPrice"), False)
            if any(o["clientOrderId"] == leg["clientOrderId"] and o["status"] in (*OPEN, PENDING)
                   for o in self.orders.values()):
                raise BinanceError(-2010, "Duplicate order sent.")
        list_id = self._id()
        self.lists[list_id] = []
        at = now_ms()
        pending = [{"symbol": symbol, "orderId": self._id(), "orderListId": list_id,
                    "clientOrderId": leg["clientOrderId"], "price": leg.get("price") or Decimal(0), "origQty": qty,
                    "executedQty": Decimal(0), "cummulativeQuoteQty": Decimal(0), "status": PENDING,
                    "timeInForce": leg.get("timeInForce") or "GTC", "type": leg["type"], "side": side,
                    "stopPrice": leg.get("stopPrice") or Decimal(0), "time": at, "updateTime": at,
                    "workingTime": -1, "fills": [], "_lock": (m.base, Decimal(0))} for leg in (above, below)]
        entry = self.new_order(symbol, working["side"], working["type"], working["quantity"], working["price"], None,
                               working.get("timeInForce"), working["clientOrderId"], list_id)
        self.working[list_id] = entry["orderId"]
        self.lists[list_id] = [entry["orderId"], *(o["orderId"] for o in pending)]
        for o in pending:
            self.orders[o["orderId"]] = o
        if entry["status"] == "FILLED":  # marketable at once: the pair goes on the book now
            self._activate(list_id)
        return list_id

    def _trail(self, order: dict[str, Any], price: Decimal) -> Decimal:
        """A trailing stop's trigger after the market traded at `price`: `trailingDelta` basis points from the
        best price since it was placed, on the tick grid away from the market."""
        best = order.get("_best")
        if best is None or (price < best if order["side"] == "BUY" else price > best):
            best = order["_best"] = price
            tick, delta = self.markets[order["symbol"]].tick, Decimal(order["trailingDelta"]) / 10000
            rounding = ROUND_UP if order["side"] == "BUY" else ROUND_DOWN
            order["_level"] = (best * (1 + delta if order["side"] == "BUY" else 1 - delta) / tick).to_integral_value(
                rounding) * tick
        return Decimal(order["_level"])

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = price
        for order in list(self.orders.values()):
            if order["symbol"] != symbol or order["status"] not in OPEN:
                continue
            kind = order["type"]
            trigger = self._trail(order, price) if "trailingDelta" in order else order["stopPrice"]
            if kind in ("STOP_LOSS", "STOP_LOSS_LIMIT") and self._triggered(order["side"], trigger, price):
                if kind == "STOP_LOSS":
                    self._execute(order, price)
                else:
                    order["type"] = "LIMIT"
                    order["_was"] = kind
            if order["status"] in OPEN and order["type"] in ("LIMIT", "LIMIT_MAKER") and \
                    self._marketable(order, price):
                self._execute(order, order["price"])
            if order.get("_was"):
                order["type"] = order.pop("_was")
