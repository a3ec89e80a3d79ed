"""A stateful stand-in of Alpaca's Trading API v2 on loopback, validated against the published contract.

`AlpacaStandIn` keeps orders, fills (FILL activities), positions and cash; market orders fill at the
symbol's settable price, limit/stop orders rest until `fill_order` (or a marketable limit fills at once);
brackets create their take-profit/stop-loss legs when the entry fills. It checks the key headers, refuses a
duplicate `client_order_id` with 422, and has fault knobs (`inject`): N answers with a status (5xx, 429 with
Retry-After), a delayed answer (after the request was processed), or a dropped connection after an order was
accepted. Every exchange goes through `contract_middleware` against `contracts/alpaca/trading-api.json`.
Order events (`new`, `fill`, `partial_fill`, `canceled`) are published on the `trade_updates` websocket at
`/stream` (`.stream`, an `AlpacaStream` from `tests.standins.alpaca_stream`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.standins.alpaca_stream import AlpacaStream
from tests.standins.contract import Contract, contract_middleware, spec_path
from tests.standins.deviations import ALPACA, Deviation

SPEC = spec_path("alpaca", "trading-api.json")

KNOWN_ASSETS = {
    "AAPL": "NASDAQ",
    "MSFT": "NASDAQ",
    "TSLA": "NASDAQ",
    "SPY": "ARCA",
    "QQQ": "NASDAQ",
    "IBM": "NYSE",
}
OPEN_STATUSES = {"new", "partially_filled", "accepted", "pending_new", "held", "pending_replace"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _num(value: Any) -> Decimal:
    """A JSON number or string as a Decimal without float noise or trailing zeros (3.0 -> 3)."""
    d = Decimal(str(value))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def _s(value: Any) -> str | None:
    return None if value is None else str(_num(value))


@dataclass
class Fault:
    kind: str  # "status" | "delay" | "drop" | "hold" | "hang"
    # hold: wait up to `delay` s before handling (never handled if the caller left); hang: handle, then answer
    # only after up to `delay` s (while the caller is still there)
    count: int
    method: str | None = None
    path: str | None = None  # prefix
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    echo_headers: bool = False  # the error message quotes the request's headers (credentials included)

    def applies(self, request: web.Request) -> bool:
        return (self.method is None or request.method == self.method) and (
            self.path is None or request.path.startswith(self.path)
        )


class AlpacaStandIn:
    def __init__(
        self,
        key_id: str = "test-key-id",
        secret_key: str = "test-secret-key",
        *,
        cash: Decimal = Decimal("100000"),
        tolerated: tuple[Deviation, ...] = ALPACA,
    ) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.cash = cash
        self.prices: dict[str, Decimal] = {s: Decimal("100") for s in KNOWN_ASSETS}
        self.orders: dict[str, dict[str, Any]] = {}  # id -> order json (legs by id in "_legs")
        self.by_client: dict[str, str] = {}
        self.positions: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (signed qty, avg price)
        self.activities: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self.violations: list[str] = []
        self.contract = Contract.load(SPEC)
        self.tolerated = tolerated
        self.stream = AlpacaStream(key_id, secret_key)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        checked = contract_middleware(self.contract, self.violations, self.tolerated)

        @web.middleware
        async def rest_contract(request: web.Request, handler: Any) -> web.StreamResponse:
            return await (handler(request) if request.path == "/stream" else checked(request, handler))

        app = web.Application(middlewares=[rest_contract, self._faults_mw])
        r = app.router
        r.add_get("/v2/account", self._account)
        r.add_get("/v2/clock", self._clock)
        r.add_get("/v2/assets/{symbol}", self._asset)
        r.add_get("/v2/orders", self._list_orders)
        r.add_post("/v2/orders", self._post_order)
        r.add_delete("/v2/orders", self._cancel_all)
        r.add_get("/v2/orders:by_client_order_id", self._by_client)
        r.add_get("/v2/orders/{id}", self._get_order)
        r.add_delete("/v2/orders/{id}", self._cancel)
        r.add_patch("/v2/orders/{id}", self._replace)
        r.add_get("/v2/positions", self._positions)
        r.add_delete("/v2/positions", self._close_all)
        r.add_delete("/v2/positions/{symbol}", self._close_one)
        r.add_get("/v2/account/activities/{kind}", self._activities)
        self.stream.attach(app)
        return app

    async def start(self) -> str:
        self.stream.refuse = False
        self._runner = web.AppRunner(self.app(), handler_cancellation=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            self.stream.refuse = True
            await self.stream.drop_all()  # open websockets would hold up the shutdown
            await self._runner.cleanup()
            self._runner = None

    # -- knobs -------------------------------------------------------------------------------------------

    def inject(self, kind: str, count: int = 1, **kw: Any) -> Fault:
        fault = Fault(kind, count, **kw)
        self.faults.append(fault)
        return fault

    def set_price(self, symbol: str, price: Decimal) -> None:
        """The market trades at `price`: trailing stops follow it (their `hwm`) and fill when it reaches them."""
        self.prices[symbol] = price
        for order in list(self.orders.values()):
            if order["symbol"] == symbol and order["type"] == "trailing_stop" and order["status"] in OPEN_STATUSES:
                self._trail(order, price)

    def _trail(self, order: dict[str, Any], price: Decimal) -> None:
        sell = order["side"] == "sell"
        hwm = Decimal(order["hwm"])
        if (price > hwm) if sell else (price < hwm):
            hwm = price
        distance = (Decimal(order["trail_price"]) if order["trail_price"] is not None
                    else hwm * Decimal(order["trail_percent"]) / 100)
        stop = hwm - distance if sell else hwm + distance
        order.update(hwm=str(hwm), stop_price=str(stop), updated_at=_now())
        if (price <= stop) if sell else (price >= stop):
            self._apply_fill(order, Decimal(order["qty"]) - Decimal(order["filled_qty"]), price)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def order_by_client(self, client_order_id: str) -> dict[str, Any] | None:
        oid = self.by_client.get(client_order_id)
        return self.orders[oid] if oid else None

    # -- middleware --------------------------------------------------------------------------------------

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/stream":
            return await handler(request)
        self.requests.append((request.method, request.path))
        fault = next((f for f in self.faults if f.count > 0 and f.applies(request)), None)
        if fault is not None:
            fault.count -= 1
            if fault.kind == "hold" and not await self._held(request, fault.delay):
                return web.Response(status=503)  # the caller went away first: the request is never handled
            if fault.kind == "status":
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                message = f"injected {fault.status}"
                if fault.echo_headers:
                    message += f"; request headers: {dict(request.headers)}"
                return web.json_response(
                    {"code": fault.status * 100000, "message": message},
                    status=fault.status,
                    headers=headers,
                )
        if (
            request.headers.get("APCA-API-KEY-ID") != self.key_id
            or request.headers.get("APCA-API-SECRET-KEY") != self.secret_key
        ):
            return web.json_response({"code": 40110000, "message": "request is not authorized"}, status=401)
        response = await handler(request)
        if fault is not None and fault.kind == "hang":
            await self._held(request, fault.delay)  # handled; the answer waits until the caller leaves
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "drop" and request.transport is not None:
            request.transport.abort()  # the order is accepted, the client never hears back
        return response

    @staticmethod
    async def _held(request: web.Request, seconds: float) -> bool:
        """Hold a request before handling it; False when its connection closed meanwhile (the caller died)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            if request.transport is None or request.transport.is_closing():
                return False
            await asyncio.sleep(0.02)
        return True

    @staticmethod
    def _error(status: int, message: str, code: int | None = None) -> web.Response:
        return web.json_response({"code": code or status * 100000, "message": message}, status=status)

    # -- account, clock, assets --------------------------------------------------------------------------

    def _market_value(self) -> tuple[Decimal, Decimal]:
        long_mv = sum((q * self.prices[s] for s, (q, _) in self.positions.items() if q > 0), Decimal(0))
        short_mv = sum((q * self.prices[s] for s, (q, _) in self.positions.items() if q < 0), Decimal(0))
        return long_mv, short_mv

    async def _account(self, request: web.Request) -> web.Response:
        long_mv, short_mv = self._market_value()
        equity = self.cash + long_mv + short_mv
        mv, cash, eq2 = str(long_mv - short_mv), str(self.cash), str(equity * 2)
        body = {
            "id": "1d9eed04-be39-4e01-9b84-a48ac5bbafcf", "account_number": "PA0STANDIN", "status": "ACTIVE",
            "crypto_status": "ACTIVE", "currency": "USD", "cash": cash, "equity": str(equity),
            "last_equity": str(equity), "portfolio_value": str(equity), "buying_power": eq2,
            "regt_buying_power": eq2, "non_marginable_buying_power": cash, "long_market_value": str(long_mv),
            "short_market_value": str(short_mv), "position_market_value": mv, "initial_margin": "0",
            "maintenance_margin": "0", "last_maintenance_margin": "0", "multiplier": "2", "accrued_fees": "0",
            "sma": "0", "shorting_enabled": True, "trading_blocked": False, "transfers_blocked": False,
            "account_blocked": False, "trade_suspended_by_user": False, "created_at": "2024-01-02T15:00:00Z",
        }
        return web.json_response(body)

    async def _clock(self, request: web.Request) -> web.Response:
        return web.json_response({"timestamp": _now(), "is_open": True, "next_open": "2030-01-02T09:30:00-05:00",
                                  "next_close": "2030-01-02T16:00:00-05:00"})

    async def _asset(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        if symbol not in KNOWN_ASSETS:
            return self._error(404, f"asset not found for {symbol}", 40410000)
        return web.json_response({
            "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "class": "us_equity", "exchange": KNOWN_ASSETS[symbol],
            "symbol": symbol, "name": f"{symbol} stand-in", "status": "active", "tradable": True, "marginable": True,
            "shortable": True, "easy_to_borrow": True, "fractionable": True,
        })

    # -- orders ------------------------------------------------------------------------------------------

    def _new_order(self, body: dict[str, Any], order_class: str, client_order_id: str) -> dict[str, Any]:
        now = _now()
        symbol = body["symbol"]
        order = {
            "id": str(uuid.uuid4()), "client_order_id": client_order_id, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "canceled_at": None, "failed_at": None,
            "replaced_at": None, "replaced_by": None, "replaces": None,
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol, "asset_class": "us_equity",
            "notional": None, "qty": _s(body["qty"]), "filled_qty": "0", "filled_avg_price": None,
            "order_class": order_class, "order_type": body["type"], "type": body["type"], "side": body["side"],
            "time_in_force": body["time_in_force"], "limit_price": _s(body.get("limit_price")),
            "stop_price": _s(body.get("stop_price")), "status": "new", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None,
        }
        self.orders[order["id"]] = order
        self.by_client[client_order_id] = order["id"]
        return order

    def _render(self, order: dict[str, Any], nested: bool = True) -> dict[str, Any]:
        out = {k: v for k, v in order.items() if not k.startswith("_")}
        if order.get("_legs"):
            out["legs"] = [self._render(self.orders[i]) for i in order["_legs"]] if nested else None
        return out

    def _apply_fill(self, order: dict[str, Any], qty: Decimal, price: Decimal) -> None:
        now = _now()
        side = 1 if order["side"] == "buy" else -1
        filled = Decimal(order["filled_qty"]) + qty
        prev_avg = Decimal(order["filled_avg_price"] or 0)
        avg = (prev_avg * Decimal(order["filled_qty"]) + price * qty) / filled
        order.update(filled_qty=str(filled), filled_avg_price=str(avg.quantize(Decimal("0.0001"))), updated_at=now)
        done = filled >= Decimal(order["qty"])
        order["status"] = "filled" if done else "partially_filled"
        if done:
            order["filled_at"] = now
        self.cash -= side * qty * price
        held, avg_px = self.positions.get(order["symbol"], (Decimal(0), Decimal(0)))
        new_qty = held + side * qty
        if new_qty == 0:
            self.positions.pop(order["symbol"], None)
        else:
            same_direction = held == 0 or (held > 0) == (side > 0)
            new_avg = (avg_px * abs(held) + price * qty) / abs(new_qty) if same_direction else avg_px
            if held != 0 and (held > 0) != (new_qty > 0):
                new_avg = price  # flipped through zero
            self.positions[order["symbol"]] = (new_qty, new_avg)
        stamp = datetime.now(UTC)
        self.activities.append({
            "id": f"{stamp:%Y%m%d%H%M%S%f}"[:17] + f"::{uuid.uuid4()}", "activity_type": "FILL",
            "transaction_time": stamp.isoformat().replace("+00:00", "Z"), "type": "fill" if done else "partial_fill",
            "price": str(price), "qty": str(qty), "side": order["side"], "symbol": order["symbol"],
            "leaves_qty": str(Decimal(order["qty"]) - filled), "order_id": order["id"], "cum_qty": str(filled),
            "order_status": order["status"],
        })
        position_qty = self.positions.get(order["symbol"], (Decimal(0), Decimal(0)))[0]
        self.stream.publish("fill" if done else "partial_fill", self._render(order), price=str(price), qty=str(qty),
                            position_qty=str(position_qty))
        if done and order.get("_legs"):
            for leg_id in order["_legs"]:
                self.orders[leg_id]["status"] = "new"
                self.stream.publish("new", self._render(self.orders[leg_id]))

    def fill_order(self, order_id: str, price: Decimal | None = None, qty: Decimal | None = None) -> None:
        """Fill a resting order (all of what is left, or `qty`) at `price` or its limit/stop/the market."""
        order = self.orders[order_id]
        px = price or Decimal(order["limit_price"] or order["stop_price"] or self.prices[order["symbol"]])
        left = Decimal(order["qty"]) - Decimal(order["filled_qty"])
        self._apply_fill(order, min(qty or left, left), px)
        if order.get("_parent") and order["status"] == "filled":  # one bracket leg filled: cancel the other
            for sibling in self.orders[order["_parent"]]["_legs"]:
                if sibling != order_id and self.orders[sibling]["status"] in OPEN_STATUSES:
                    self.orders[sibling].update(status="canceled", canceled_at=_now())

    def _marketable(self, order: dict[str, Any]) -> bool:
        if order["type"] == "market":
            return True
        price = self.prices[order["symbol"]]
        if order["type"] == "limit":
            limit = Decimal(order["limit_price"])
            return price <= limit if order["side"] == "buy" else price >= limit
        return False

    async def _post_order(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "invalid JSON body", 40010000)
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if cid in self.by_client:
            return self._error(422, "client_order_id must be unique", 40010001)
        missing = [f for f in ("symbol", "qty", "side", "type", "time_in_force") if body.get(f) in (None, "")]
        if missing:
            return self._error(422, f"missing fields: {', '.join(missing)}", 40010000)
        if body["symbol"] not in KNOWN_ASSETS:
            return self._error(422, f"asset {body['symbol']} not found", 40010000)
        if body["type"] in ("limit", "stop_limit") and body.get("limit_price") is None:
            return self._error(422, "limit_price is required for limit orders", 40010000)
        qty = _num(body["qty"])
        if qty <= 0:
            return self._error(422, "qty must be > 0", 40010000)
        trails = [body.get("trail_price"), body.get("trail_percent")]
        if body["type"] == "trailing_stop" and sum(t is not None for t in trails) != 1:
            return self._error(422, "trailing_stop orders need one of trail_price or trail_percent", 40010000)
        if body["type"] != "trailing_stop" and any(t is not None for t in trails):
            return self._error(422, "trail_price and trail_percent are for trailing_stop orders", 40010000)
        ref = Decimal(str(body.get("limit_price") or self.prices[body["symbol"]]))
        if body["side"] == "buy" and qty * ref > self.cash * 2:
            return self._error(403, "insufficient buying power", 40310000)
        order_class = body.get("order_class") or "simple"
        order = self._new_order(body, order_class, cid)
        if body["type"] == "trailing_stop":
            order.update(trail_price=_s(body.get("trail_price")), trail_percent=_s(body.get("trail_percent")),
                         hwm=str(self.prices[body["symbol"]]))
            self._trail(order, self.prices[body["symbol"]])
        if order_class == "bracket":
            if not body.get("take_profit") or not body.get("stop_loss"):
                return self._error(422, "bracket orders require take_profit and stop_loss", 40010000)
            exit_side = "sell" if body["side"] == "buy" else "buy"
            legs = []
            for kind, extra in (
                ("limit", {"limit_price": body["take_profit"]["limit_price"]}),
                ("stop", {"stop_price": body["stop_loss"]["stop_price"]}),
            ):
                leg_body = {**body, "side": exit_side, "type": kind, "limit_price": None, **extra}
                leg = self._new_order(leg_body, "bracket", str(uuid.uuid4()))
                leg.update(status="held", _parent=order["id"])
                legs.append(leg["id"])
            order["_legs"] = legs
        self.stream.publish("new", self._render(order))
        if self._marketable(order):
            self._apply_fill(order, qty, self.prices[order["symbol"]])
        return web.json_response(self._render(order))

    def _nested(self, request: web.Request) -> bool:
        return request.query.get("nested", "false").lower() == "true"

    async def _list_orders(self, request: web.Request) -> web.Response:
        status = request.query.get("status", "open")
        nested = self._nested(request)
        after = request.query.get("after")
        limit = int(request.query.get("limit", "50"))
        symbols = set(filter(None, request.query.get("symbols", "").split(",")))
        out = []
        for order in self.orders.values():
            is_open = order["status"] in OPEN_STATUSES
            if nested:  # a parent is listed with its legs while any of them is open
                is_open = is_open or any(self.orders[i]["status"] in OPEN_STATUSES for i in order.get("_legs") or [])
            if (status == "open" and not is_open) or (status == "closed" and is_open):
                continue
            if nested and order.get("_parent"):
                continue
            if symbols and order["symbol"] not in symbols:
                continue
            if after and order["submitted_at"] <= after:
                continue
            out.append(self._render(order, nested))
        if request.query.get("direction", "desc") == "desc":
            out.reverse()
        return web.json_response(out[:limit])

    async def _get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return self._error(404, "order not found", 40410000)
        return web.json_response(self._render(order, self._nested(request)))

    async def _by_client(self, request: web.Request) -> web.Response:
        order = self.order_by_client(request.query.get("client_order_id", ""))
        if order is None:
            return self._error(404, "order not found", 40410000)
        return web.json_response(self._render(order))

    def _do_cancel(self, order: dict[str, Any]) -> bool:
        if order["status"] not in OPEN_STATUSES:
            return False
        order.update(status="canceled", canceled_at=_now(), updated_at=_now())
        self.stream.publish("canceled", self._render(order))
        for leg in order.get("_legs") or []:
            self._do_cancel(self.orders[leg])
        return True

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return self._error(404, "order not found", 40410000)
        if not self._do_cancel(order):
            return self._error(422, f'order is already in "{order["status"]}" state', 42210000)
        return web.Response(status=204)

    async def _cancel_all(self, request: web.Request) -> web.Response:
        done = [{"id": o["id"], "status": 200} for o in list(self.orders.values()) if self._do_cancel(o)]
        return web.json_response(done, status=207)

    async def _replace(self, request: web.Request) -> web.Response:
        old = self.orders.get(request.match_info["id"])
        if old is None:
            return self._error(404, "order not found", 40410000)
        if old["status"] not in ("new", "partially_filled"):
            return self._error(422, f'order is in "{old["status"]}" state and cannot be replaced', 42210000)
        patch = await request.json()
        cid = patch.get("client_order_id") or str(uuid.uuid4())
        if cid in self.by_client:
            return self._error(422, "client_order_id must be unique", 40010001)
        body = {
            "symbol": old["symbol"],
            "side": old["side"],
            "type": old["type"],
            "time_in_force": patch.get("time_in_force", old["time_in_force"]),
            "qty": patch.get("qty", old["qty"]),
            "limit_price": patch.get("limit_price", old["limit_price"]),
            "stop_price": patch.get("stop_price", old["stop_price"]),
        }
        new = self._new_order(body, old["order_class"], cid)
        new["replaces"] = old["id"]
        if old["type"] == "trailing_stop":  # `trail` changes the trail (a price, or a percent as it was)
            kind = "trail_price" if old["trail_price"] is not None else "trail_percent"
            new.update({kind: _s(patch.get("trail", old[kind])), "hwm": old["hwm"]})
            new["trail_price" if kind == "trail_percent" else "trail_percent"] = None
            self._trail(new, self.prices[new["symbol"]])
        if old.get("_parent"):  # a replaced bracket leg stays in its bracket (and its OCO)
            new["_parent"] = old["_parent"]
            legs = self.orders[old["_parent"]]["_legs"]
            legs[legs.index(old["id"])] = new["id"]
        old.update(status="replaced", replaced_by=new["id"], replaced_at=_now(), updated_at=_now())
        if self._marketable(new):
            self._apply_fill(new, Decimal(new["qty"]), self.prices[new["symbol"]])
        return web.json_response(self._render(new))

    # -- positions and activities ------------------------------------------------------------------------

    def _position_json(self, symbol: str) -> dict[str, Any]:
        qty, avg = self.positions[symbol]
        price = self.prices[symbol]
        cost = qty * avg
        mv = qty * price
        pl = mv - cost
        plpc = (pl / abs(cost)).quantize(Decimal("0.0001")) if cost else Decimal(0)
        return {
            "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol,
            "exchange": KNOWN_ASSETS[symbol], "asset_class": "us_equity", "asset_marginable": True,
            "avg_entry_price": str(avg), "qty": str(qty), "qty_available": str(qty),
            "side": "long" if qty > 0 else "short", "market_value": str(mv), "cost_basis": str(cost),
            "unrealized_pl": str(pl), "unrealized_plpc": str(plpc), "unrealized_intraday_pl": str(pl),
            "unrealized_intraday_plpc": str(plpc), "current_price": str(price), "lastday_price": str(price),
            "change_today": "0",
        }

    async def _positions(self, request: web.Request) -> web.Response:
        return web.json_response([self._position_json(s) for s in sorted(self.positions)])

    def _close(self, symbol: str) -> dict[str, Any]:
        qty, _ = self.positions[symbol]
        body = {"symbol": symbol, "qty": str(abs(qty)), "side": "sell" if qty > 0 else "buy"}
        order = self._new_order({**body, "type": "market", "time_in_force": "day"}, "simple", str(uuid.uuid4()))
        self._apply_fill(order, abs(qty), self.prices[symbol])
        return order

    async def _close_one(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"]
        if symbol not in self.positions:
            return self._error(404, "position does not exist", 40410000)
        return web.json_response(self._render(self._close(symbol)))

    async def _close_all(self, request: web.Request) -> web.Response:
        if request.query.get("cancel_orders", "false").lower() == "true":
            for order in list(self.orders.values()):
                self._do_cancel(order)
        out = [{"symbol": s, "status": 200, "body": self._render(self._close(s))} for s in sorted(self.positions)]
        return web.json_response(out, status=207)

    async def _activities(self, request: web.Request) -> web.Response:
        if request.match_info["kind"] != "FILL":
            return web.json_response([])
        after = request.query.get("after")
        items = [a for a in self.activities if not after or a["transaction_time"] > after]
        if request.query.get("direction", "desc") == "desc":
            items = list(reversed(items))
        token = request.query.get("page_token")
        if token:
            ids = [a["id"] for a in items]
            items = items[ids.index(token) + 1 :] if token in ids else []
        size = int(request.query.get("page_size", "100"))
        return web.json_response(items[:size])
