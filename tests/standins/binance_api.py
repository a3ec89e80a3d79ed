"""A stateful stand-in of Binance's spot REST API on loopback, validated against the published spec.

Serves what traderd's ccxt adapter uses (`exchangeInfo`, `ticker/24hr`, `klines`, `account`, `order`
POST/GET/DELETE, `openOrders` GET/DELETE, `allOrders`, `myTrades`, `orderList/oco`, `orderList/otoco`,
`order/cancelReplace`, `time`, `ping`) over the bookkeeping of `tests.standins.binance_book` (candles:
`binance_klines`). Signed endpoints check `X-MBX-APIKEY` (401 -2015), `timestamp` within `recvWindow` (400
-1021) and the HMAC-SHA256 `signature` over the query string followed by the form body (400 -1022), as
Binance does. Every exchange is checked against `contracts/binance/spot_api.yaml`: the parameters of a
form-encoded body are checked as the query parameters the spec declares (Binance takes either;
`deviations.BINANCE`). Fault knobs: `faults` (status, delay, drop after the request took effect;
`tests.standins.faults.Faults`), `throttle_next` (429 / 418 with `Retry-After`) and `unknown_next` (the
request takes effect, the answer is `-1007` "execution status unknown"). `requests` lists every (method,
path) seen; `hosts_seen` of `watched_session` shows where a client went.
The same app serves the WebSocket API's user data stream at `ws_url` (`tests.standins.binance_stream`,
over the same book: `stream`), outside the REST contract checks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import yaml
from aiohttp import web

from tests.standins.binance_book import OPEN, PENDING, BinanceError, Book, s8
from tests.standins.binance_klines import Klines
from tests.standins.binance_stream import PATH as WS_PATH
from tests.standins.binance_stream import UserDataStream
from tests.standins.contract import Contract, ContractViolation, spec_path
from tests.standins.deviations import BINANCE, Deviation
from tests.standins.faults import Faults, StandinServer, json_response

SPEC = spec_path("binance", "spot_api.yaml")
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]
_CONTRACT: Contract | None = None


def load_contract() -> Contract:
    global _CONTRACT
    if _CONTRACT is None:  # the YAML is 1 MB: read it once per test session
        _CONTRACT = Contract(yaml.safe_load(SPEC.read_text(encoding="utf-8")))
    return _CONTRACT


def watched_session() -> tuple[aiohttp.ClientSession, list[str]]:
    """An aiohttp session recording the host of every request made through it (for ccxt's `session`)."""
    hosts: list[str] = []

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        hosts.append(str(params.url.host))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[trace]), hosts


@dataclass
class _Knob:
    kind: str
    remaining: int
    path: str | None
    status: int = 429
    retry_after: float = 1.0


def _d(value: str | None) -> Decimal | None:
    return None if value in (None, "") else Decimal(value)


class BinanceStandIn(StandinServer):
    def __init__(self, api_key: str = "test-api-key", secret: str = "test-secret", *,
                 tolerated: tuple[Deviation, ...] = BINANCE) -> None:
        super().__init__()
        self.api_key, self.secret = api_key, secret
        self.book = Book()
        self.klines = Klines()
        self.faults = Faults()
        self.contract = load_contract()
        self.tolerated = tolerated
        self.requests: list[tuple[str, str]] = []
        self._knobs: list[_Knob] = []
        self.stream = UserDataStream(self.book, api_key, secret, self.violations)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    # -- knobs -------------------------------------------------------------------------------------------

    def throttle_next(self, n: int = 1, status: int = 429, retry_after: float = 1.0, path: str | None = None) -> None:
        self._knobs.append(_Knob("throttle", n, path, status, retry_after))

    def unknown_next(self, n: int = 1, path: str | None = None) -> None:
        self._knobs.append(_Knob("unknown", n, path, 503))

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p == path)

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.book.set_price(symbol, price)

    # -- app ---------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._contract_mw, self.faults.middleware, self._knobs_mw, self._auth_mw])
        r, v3 = app.router, "/api/v3"
        r.add_get(f"{v3}/ping", self._ping)
        r.add_get(f"{v3}/time", self._time)
        r.add_get(f"{v3}/exchangeInfo", self._exchange_info)
        r.add_get(f"{v3}/ticker/24hr", self._ticker)
        r.add_get(f"{v3}/klines", self._klines)
        r.add_get(f"{v3}/account", self._account)
        r.add_post(f"{v3}/order", self._new_order)
        r.add_get(f"{v3}/order", self._get_order)
        r.add_delete(f"{v3}/order", self._cancel_order)
        r.add_get(f"{v3}/openOrders", self._open_orders)
        r.add_delete(f"{v3}/openOrders", self._cancel_all)
        r.add_get(f"{v3}/allOrders", self._all_orders)
        r.add_get(f"{v3}/myTrades", self._my_trades)
        r.add_post(f"{v3}/orderList/oco", self._oco)
        r.add_post(f"{v3}/orderList/otoco", self._otoco)
        r.add_post(f"{v3}/order/cancelReplace", self._cancel_replace)
        r.add_get(WS_PATH, self.stream.handle)
        return app

    @staticmethod
    def _error(exc: BinanceError) -> web.Response:
        return json_response({"code": exc.code, "msg": exc.msg}, status=exc.status)

    async def _params(self, request: web.Request) -> dict[str, str]:
        body = (await request.read()).decode() if request.body_exists else ""
        return {**dict(request.query), **dict(parse_qsl(body, keep_blank_values=True))}

    def _tolerated(self, message: str, direction: str, request: web.Request) -> bool:
        return any(d.matches(message, direction=direction, method=request.method, path=request.path)
                   for d in self.tolerated)

    @web.middleware
    async def _contract_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == WS_PATH:
            return await self.stream.handle(request)  # the WebSocket API: not in the REST contract
        self.requests.append((request.method, request.path))
        params = await self._params(request)
        try:
            self.contract.check_request(request.method, request.path, params, request.headers, None)
        except ContractViolation as exc:
            self.violations += [e for e in exc.errors if not self._tolerated(e, "request", request)]
        response = await handler(request)
        if isinstance(response, web.Response):
            raw = response.body if isinstance(response.body, bytes) else b""
            try:
                self.contract.check_response(request.method, request.path, response.status, response.headers, raw)
            except ContractViolation as exc:
                self.violations += [e for e in exc.errors if not self._tolerated(e, "response", request)]
        return response

    @web.middleware
    async def _knobs_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        knob = next((k for k in self._knobs if k.remaining > 0 and k.path in (None, request.path)), None)
        if knob is None:
            return await handler(request)
        knob.remaining -= 1
        if knob.kind == "throttle":
            msg = "Way too much request weight used; IP banned." if knob.status == 418 else \
                "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."
            return web.Response(status=knob.status, content_type="application/json",
                                text=f'{{"code":-1003,"msg":"{msg}"}}',
                                headers={"Retry-After": f"{knob.retry_after:g}"})
        await handler(request)  # the request takes effect; the answer says nobody knows
        return json_response({"code": -1007, "msg": "Timeout waiting for response from backend server. "
                                                    "Send status unknown; execution status unknown."}, status=503)

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        query = request.rel_url.raw_query_string
        if "signature=" not in query and not (request.body_exists and request.method == "POST"):
            return await handler(request)  # public endpoint
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            return self._error(BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401))
        body = (await request.read()).decode() if request.body_exists else ""
        total = query + body
        unsigned, _, signature = total.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return self._error(BinanceError(-1022, "Signature for this request is not valid."))
        params = dict(parse_qsl(unsigned))
        window = int(params.get("recvWindow", "5000"))
        stamp, now = int(params.get("timestamp", "0")), int(time.time() * 1000)
        if not (stamp < now + 1000 and now - stamp <= window) or window > 60000:
            return self._error(BinanceError(-1021, "Timestamp for this request is outside of the recvWindow."))
        try:
            return await handler(request)
        except BinanceError as exc:
            return self._error(exc)

    # -- rendering ---------------------------------------------------------------------------------------

    def _details(self, o: dict[str, Any]) -> dict[str, Any]:
        out = {k: (s8(v) if isinstance(v, Decimal) else v) for k, v in o.items() if not k.startswith("_")}
        out.pop("fills", None)
        return out | {"icebergQty": "0.00000000", "isWorking": o["workingTime"] != -1,
                      "origQuoteOrderQty": "0.00000000", "selfTradePreventionMode": "EXPIRE_MAKER"}

    def _result(self, o: dict[str, Any], resp_type: str = "FULL") -> dict[str, Any]:
        d = self._details(o)
        out = {k: d[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "price", "origQty",
                                 "executedQty", "cummulativeQuoteQty", "status", "timeInForce", "type", "side",
                                 "workingTime", "selfTradePreventionMode")} | {"transactTime": o["updateTime"]}
        if o["type"] not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            out["stopPrice"] = d["stopPrice"]
        for key in ("trailingDelta", "trailingTime"):  # Binance's conditional fields of a trailing stop
            if key in d:
                out[key] = d[key]
        if resp_type == "ACK":
            return {k: out[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")}
        return out | ({"fills": o["fills"]} if resp_type == "FULL" else {})

    def _cancelled(self, o: dict[str, Any]) -> dict[str, Any]:
        d = self._result(o, "RESULT")
        d.pop("workingTime")
        return d | {"origClientOrderId": o["clientOrderId"], "clientOrderId": f"cancel{o['orderId']}"}

    # -- handlers ----------------------------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": int(time.time() * 1000)})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        symbols = []
        for m in self.book.markets.values():
            symbols.append({
                "symbol": m.symbol, "status": "TRADING", "baseAsset": m.base, "baseAssetPrecision": 8,
                "quoteAsset": m.quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ORDER_TYPES, "icebergAllowed": True,
                "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True, "cancelReplaceAllowed": True, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": s8(m.tick), "maxPrice": "1000000.00000000",
                     "tickSize": s8(m.tick)},
                    {"filterType": "LOT_SIZE", "minQty": s8(m.min_qty), "maxQty": s8(m.max_qty),
                     "stepSize": s8(m.step)},
                    {"filterType": "NOTIONAL", "minNotional": s8(m.min_notional), "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [], "permissionSets": [["SPOT"]], "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]})
        return json_response({
            "timezone": "UTC", "serverTime": int(time.time() * 1000), "exchangeFilters": [], "symbols": symbols,
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                           {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100}]})

    async def _ticker(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        try:
            self.book.market(symbol)
        except BinanceError as exc:
            return self._error(exc)
        p, now = s8(self.book.prices[symbol]), int(time.time() * 1000)
        return json_response({
            "symbol": symbol, "priceChange": "0.00000000", "priceChangePercent": "0.000", "weightedAvgPrice": p,
            "prevClosePrice": p, "lastPrice": p, "lastQty": "0.00100000", "bidPrice": p, "bidQty": "1.00000000",
            "askPrice": p, "askQty": "1.00000000", "openPrice": p, "highPrice": p, "lowPrice": p,
            "volume": "100.00000000", "quoteVolume": "1000000.00000000", "openTime": now - 86_400_000,
            "closeTime": now, "firstId": 1, "lastId": 100, "count": 100})

    async def _klines(self, request: web.Request) -> web.Response:
        try:
            self.book.market(request.query.get("symbol", ""))
            return json_response(self.klines.answer(dict(request.query)))
        except BinanceError as exc:
            return self._error(exc)

    async def _account(self, request: web.Request) -> web.Response:
        assets = sorted(set(self.book.free) | set(self.book.locked))
        balances = [{"asset": a, "free": s8(self.book.free.get(a, Decimal(0))),
                     "locked": s8(self.book.locked.get(a, Decimal(0)))} for a in assets]
        return json_response({
            "makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000",
                                "seller": "0.00000000"},
            "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": int(time.time() * 1000),
            "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868})

    def _place(self, p: dict[str, str], prefix: str = "") -> dict[str, Any]:
        kind = p[f"{prefix}type"]
        if kind not in ORDER_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        qty = _d(p.get(f"{prefix}quantity"))
        if qty is None:
            raise BinanceError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        cid = p.get(f"{prefix}newClientOrderId") or f"auto{int(time.time() * 1e6)}"
        return self.book.new_order(p["symbol"], p["side"], kind, qty, _d(p.get(f"{prefix}price")),
                                   _d(p.get(f"{prefix}stopPrice")), p.get(f"{prefix}timeInForce"), cid,
                                   trail=_d(p.get(f"{prefix}trailingDelta")))

    async def _new_order(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        order = self._place(p)
        return json_response(self._result(order, p.get("newOrderRespType", "FULL")))

    def _find(self, p: dict[str, str]) -> dict[str, Any]:
        order_id = int(p["orderId"]) if p.get("orderId") else None
        return self.book.find(p.get("symbol", ""), order_id, p.get("origClientOrderId"))

    async def _get_order(self, request: web.Request) -> web.Response:
        return json_response(self._details(self._find(await self._params(request))))

    async def _cancel_order(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        try:
            order = self._find(p)
        except BinanceError:
            raise BinanceError(-2011, "Unknown order sent.") from None
        self.book.cancel(order)
        return json_response(self._cancelled(order))

    async def _open_orders(self, request: web.Request) -> web.Response:
        symbol = (await self._params(request)).get("symbol")
        if symbol:
            self.book.market(symbol)
        return json_response([self._details(o) for o in self.book.orders.values()
                              if o["status"] in (*OPEN, PENDING) and symbol in (None, o["symbol"])])

    async def _cancel_all(self, request: web.Request) -> web.Response:
        symbol = (await self._params(request)).get("symbol", "")
        self.book.market(symbol)
        ended = [o for o in list(self.book.orders.values()) if o["symbol"] == symbol and o["status"] in OPEN]
        if not ended:
            raise BinanceError(-2011, "Unknown order sent.")
        for o in ended:
            if o["status"] in OPEN:
                self.book.cancel(o)
        return json_response([self._cancelled(o) for o in ended])

    async def _all_orders(self, request: web.Request) -> web.Response:
        symbol = (await self._params(request)).get("symbol", "")
        self.book.market(symbol)
        return json_response([self._details(o) for o in self.book.orders.values() if o["symbol"] == symbol])

    async def _my_trades(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        self.book.market(p.get("symbol", ""))
        limit = min(int(p.get("limit", "500")), 1000)
        start, end = int(p.get("startTime", "0")), int(p.get("endTime", str(2**62)))
        if "startTime" in p and "endTime" in p and end - start > 86_400_000:
            raise BinanceError(-1127, "More than 24 hours between startTime and endTime.")
        trades = [t for t in self.book.trades if t["symbol"] == p["symbol"] and start <= t["time"] <= end
                  and t["id"] >= int(p.get("fromId", "0"))]
        if "startTime" not in p and "fromId" not in p:
            trades = trades[-limit:]
        return json_response([{k: (s8(v) if isinstance(v, Decimal) else v) for k, v in t.items()}
                              for t in trades[:limit]])

    @staticmethod
    def _leg(p: dict[str, str], side: str) -> dict[str, Any]:
        return {"type": p[f"{side}Type"], "price": _d(p.get(f"{side}Price")),
                "stopPrice": _d(p.get(f"{side}StopPrice")), "timeInForce": p.get(f"{side}TimeInForce"),
                "clientOrderId": p.get(f"{side}ClientOrderId") or f"auto{side}{int(time.time() * 1e6)}"}

    def _list_answer(self, p: dict[str, str], list_id: int, kind: str) -> web.Response:
        legs = [self.book.orders[i] for i in self.book.lists[list_id]]
        reports = []
        for o in legs:
            r = self._result(o, "RESULT")
            reports.append(r | {"stopPrice": r.get("stopPrice", "0.00000000")})
        return json_response({
            "orderListId": list_id, "contingencyType": kind, "listStatusType": "EXEC_STARTED",
            "listOrderStatus": "EXECUTING", "listClientOrderId": p.get("listClientOrderId") or f"list{list_id}",
            "transactionTime": legs[0]["time"], "symbol": p["symbol"],
            "orders": [{"symbol": o["symbol"], "orderId": o["orderId"], "clientOrderId": o["clientOrderId"]}
                       for o in legs], "orderReports": reports})

    async def _oco(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        qty = _d(p.get("quantity")) or Decimal(0)
        list_id = self.book.oco(p["symbol"], p["side"], qty, self._leg(p, "above"), self._leg(p, "below"))
        return self._list_answer(p, list_id, "OCO")

    async def _otoco(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        working = {"type": p["workingType"], "side": p["workingSide"], "price": _d(p.get("workingPrice")),
                   "quantity": _d(p.get("workingQuantity")) or Decimal(0), "timeInForce": p.get("workingTimeInForce"),
                   "clientOrderId": p.get("workingClientOrderId") or f"autow{int(time.time() * 1e6)}"}
        qty = _d(p.get("pendingQuantity")) or Decimal(0)
        list_id = self.book.otoco(p["symbol"], working, p["pendingSide"], qty, self._leg(p, "pendingAbove"),
                                  self._leg(p, "pendingBelow"))
        return self._list_answer(p, list_id, "OTOCO")

    async def _cancel_replace(self, request: web.Request) -> web.Response:
        p = await self._params(request)
        try:
            old = self.book.find(p["symbol"], int(p["cancelOrderId"]) if p.get("cancelOrderId") else None,
                                 p.get("cancelOrigClientOrderId"))
            self.book.cancel(old)
        except BinanceError as exc:
            raise BinanceError(-2022, f"Order cancel-replace failed. ({exc.msg})") from None
        new = self._place(p)
        result = self._result(new, "RESULT") | {"fills": []}
        return json_response({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
                              "cancelResponse": self._cancelled(old), "newOrderResponse": result})
