"""Stateful stand-in of the Tradovate REST API (`/v1`) on loopback, validated against its OpenAPI spec.

`TradovateStandin` serves what a broker adapter needs: access-token request and renewal (bearer auth, 401
without it; wrong credentials are HTTP 200 with `errorText`), accounts, cash-balance snapshot, contracts
(`/contract/find`, `/contract/item`), orders (`placeorder`, `placeoso` brackets, `placeoco`, `cancelorder`,
`modifyorder`, `liquidateposition`), and the entity lists an adapter reconciles from: orders, order versions,
commands (the only entity carrying `clOrdId`), execution reports, fills and positions. Business failures are
HTTP 200 with `failureReason`/`failureText`. `clOrdId` is stored but NOT deduplicated, like the real service,
and orders without `isAutomated: true` are refused (`require_automated=False` turns that off).

`.stream` (a `TradovateStream` from `tests.standins.tradovate_stream`) serves `/v1/websocket` and publishes
every order, order version, command, execution report, fill and position change as a props event.

Knobs: `set_price`, `throttle_next` (HTTP 200 p-ticket answers; the retry must carry the ticket after
`p-time` seconds, or it is throttled again), `expire_tokens`, and `.faults` (`fail_next`, `delay_next`,
`drop_next`, from `tests.standins.faults`) shared with the ProjectX stand-in.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Self

from aiohttp import web

from tests.standins.contract import Contract, contract_middleware, spec_path
from tests.standins.deviations import BY_BROKER, Deviation
from tests.standins.faults import Faults, Handler, StandinServer, json_response
from tests.standins.tradovate_book import (
    CANCELED,
    SUSPENDED,
    WORKING,
    TradovateBook,
    TvContract,
    TvOrder,
    TvPosition,
    _compact,
    _dec,
    _failure,
    _trade_date,
    _ts,
)
from tests.standins.tradovate_stream import PATH as STREAM_PATH
from tests.standins.tradovate_stream import TradovateStream

SPEC = spec_path("tradovate", "swagger.json")
BASE = "/v1"
ORDER_TYPES = ("Limit", "MIT", "Market", "QTS", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit")


class TradovateStandin(TradovateBook, StandinServer):
    """The Tradovate stand-in; `.url` ends in `/v1` like `https://demo.tradovateapi.com/v1`."""

    url_suffix = BASE

    def __init__(
        self,
        *,
        name: str = "trader",
        password: str = "tv-password",
        cid: int | str = 8,
        sec: str = "tv-secret",
        token_ttl: timedelta = timedelta(minutes=80),
        require_automated: bool = True,
        tolerated: Iterable[Deviation] | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.name, self.password, self.cid, self.sec = name, password, str(cid), sec
        self.token_ttl, self.require_automated = token_ttl, require_automated
        self.faults = Faults(BASE)
        self.tokens: dict[str, datetime] = {}
        self.calls: list[tuple[str, str, Any]] = []
        default = BY_BROKER["tradovate"]
        self.tolerated = tuple(default if tolerated is None else tolerated)
        self.contract = Contract.load(SPEC, BASE) if validate else None
        self.accounts = {7001: "DEMO7001", 7002: "DEMO7002"}
        self.cash = {7001: Decimal("50000"), 7002: Decimal("50000")}
        self.realized = dict.fromkeys(self.accounts, Decimal(0))
        self.trading_locked: set[int] = set()
        d = Decimal
        self.contracts = {c.id: c for c in (
            TvContract(3001, "ESZ6", 51001, d("0.25"), d("50")), TvContract(3002, "NQZ6", 51002, d("0.25"), d("20")),
            TvContract(3003, "MESZ6", 51003, d("0.25"), d("5")), TvContract(3004, "MNQZ6", 51004, d("0.25"), d("2")),
        )}
        self.prices = {c.id: d("21000") if "NQ" in c.name else d("6000") for c in self.contracts.values()}
        self.orders: dict[int, TvOrder] = {}
        self.versions: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.reports: list[dict[str, Any]] = []
        self.fills: list[dict[str, Any]] = []
        self.positions: dict[tuple[int, int], TvPosition] = {}
        self.throttle_rules: list[dict[str, Any]] = []
        self.tickets: dict[str, tuple[str, float]] = {}  # ticket -> (path, not before, monotonic)
        self.outstanding: dict[str, str] = {}  # path -> ticket the next request to it must carry
        self.throttled = 0
        self._id = 100_000
        self.user_id = 4321
        self.stream = TradovateStream(self._token_valid, self.user_id, self._snapshot)
        self._announced: set[int] = set()  # orders whose Created event went out

    # knobs ---------------------------------------------------------------------------------------------------

    def set_price(self, symbol_or_id: str | int, price: Decimal | int | str) -> None:
        contract = self._contract(symbol_or_id)
        assert contract is not None, f"unknown contract {symbol_or_id}"
        self.prices[contract.id] = Decimal(str(price))
        self._match(contract.id)

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, datetime.now(UTC) - timedelta(seconds=1))

    def throttle_next(self, n: int = 1, p_time: int = 1, captcha: bool = False, path: str | None = None) -> None:
        """Answer the next `n` requests (to `path` under /v1, if given) with a p-ticket instead."""
        self.throttle_rules.append({"n": n, "time": p_time, "captcha": captcha, "path": path})

    async def start(self, port: int = 0) -> Self:
        self.stream.refuse = False
        return await super().start(port)

    async def stop(self) -> None:
        self.stream.refuse = True
        await self.stream.drop_all()  # open websockets would hold up the shutdown
        await super().stop()

    def _token_valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and expiry > datetime.now(UTC)

    def _snapshot(self) -> dict[str, Any]:
        return {"users": [{"id": self.user_id, "name": self.name}],
                "accounts": [self._account(i) for i in self.accounts],
                "orders": [o.model() for o in self.orders.values()], "fills": self.fills,
                "positions": [p.model() for p in self.positions.values()]}

    def _props(self, entity_type: str, event_type: str, entity: dict[str, Any]) -> None:
        self.stream.publish(entity_type, event_type, entity)

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.calls if p.lower() == (BASE + path).lower())

    def orders_with_clordid(self, cl_ord_id: str) -> list[int]:
        return [c["orderId"] for c in self.commands if c.get("clOrdId") == cl_ord_id and c["commandType"] == "New"]

    def _next(self) -> int:
        self._id += 1
        return self._id

    def _contract(self, key: str | int) -> TvContract | None:
        if isinstance(key, int) or str(key).isdigit():
            return self.contracts.get(int(key))
        return next((c for c in self.contracts.values() if c.name.upper() == str(key).upper()), None)

    # app -----------------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        middlewares: list[Any] = [self._websocket]
        if self.contract is not None:
            middlewares.append(contract_middleware(self.contract, self.violations, self.tolerated))
        middlewares += [self._record, self.faults.middleware, self._throttle, self._auth]
        app = web.Application(middlewares=middlewares)
        posts: dict[str, Callable[[dict[str, Any]], Any]] = {
            "/auth/accesstokenrequest": self._token_request,
            "/cashBalance/getcashbalancesnapshot": self._cash_snapshot,
            "/order/placeorder": lambda b: self._place(b, "placeorder"),
            "/order/placeoso": lambda b: self._place(b, "placeoso"),
            "/order/placeoco": lambda b: self._place(b, "placeoco"),
            "/order/cancelorder": self._cancel,
            "/order/modifyorder": self._modify,
            "/order/liquidateposition": self._liquidate,
        }
        gets: dict[str, Callable[[dict[str, str]], Any]] = {
            "/auth/renewaccesstoken": lambda q: self._issue(),
            "/account/list": lambda q: [self._account(i) for i in self.accounts],
            "/contract/find": lambda q: self._found(self._contract(q["name"]) if not q["name"].isdigit() else None),
            "/contract/item": lambda q: self._found(self.contracts.get(int(q["id"]))),
            "/order/list": lambda q: [o.model() for o in self.orders.values()],
            "/order/item": lambda q: self._found(self.orders.get(int(q["id"]))),
            "/order/deps": lambda q: [o.model() for o in self.orders.values() if o.account_id == int(q["masterid"])],
            "/orderVersion/list": lambda q: self.versions,
            "/orderVersion/deps": lambda q: [v for v in self.versions if v["orderId"] == int(q["masterid"])],
            "/command/list": lambda q: self.commands,
            "/command/deps": lambda q: [c for c in self.commands if c["orderId"] == int(q["masterid"])],
            "/executionReport/list": lambda q: self.reports,
            "/executionReport/deps": lambda q: [r for r in self.reports if r["orderId"] == int(q["masterid"])],
            "/fill/list": lambda q: self.fills,
            "/fill/deps": lambda q: [f for f in self.fills if f["orderId"] == int(q["masterid"])],
            "/position/list": lambda q: [p.model() for p in self.positions.values()],
            "/position/deps": lambda q: [
                p.model() for p in self.positions.values() if p.account_id == int(q["masterid"])
            ],
        }
        for path, post in posts.items():
            app.router.add_post(BASE + path, self._handler(post, body=True))
        for path, get in gets.items():
            app.router.add_get(BASE + path, self._handler(get, body=False))
        self.stream.attach(app)
        return app

    @web.middleware
    async def _websocket(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The websocket is not part of the REST spec, faults or bearer auth: straight to its handler."""
        if request.path == STREAM_PATH:
            return await request.match_info.handler(request)
        return await handler(request)

    @staticmethod
    def _handler(fn: Callable[[Any], Any], *, body: bool) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            try:
                arg = json.loads(await request.read() or b"null", parse_float=Decimal) if body else request.query
                if body and not isinstance(arg, dict):
                    raise ValueError("JSON object expected")
                result = fn(arg)
            except (KeyError, TypeError, ValueError) as exc:
                return web.Response(status=400, text=f"Bad request: {exc}")
            if result is None:
                return web.Response(status=404, text="Not found")
            return json_response(result)

        return handler

    @staticmethod
    def _found(entity: Any) -> Any:
        return None if entity is None else entity.model()

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read() if request.body_exists else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.calls.append((request.method, request.path, body))
        return await handler(request)

    @web.middleware
    async def _throttle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path[len(BASE) :]
        try:
            body = json.loads(await request.read() or b"null") if request.body_exists else None
        except ValueError:
            body = None
        ticket = (body.get("p-ticket") if isinstance(body, dict) else None) or request.query.get("p-ticket")
        held = self.tickets.get(str(ticket)) if ticket else None
        if held is not None and held[0] == path:
            del self.tickets[str(ticket)]
            self.outstanding.pop(path, None)
            wait = held[1] - time.monotonic()
            if wait <= 0:
                return await handler(request)
            return self._ticket(path, max(1, round(wait)) * 2, False)  # too early: a longer penalty
        if path in self.outstanding:  # retried without the ticket
            return self._ticket(path, 1, False)
        for rule in self.throttle_rules:
            if rule["n"] > 0 and rule["path"] in (None, path):
                rule["n"] -= 1
                return self._ticket(path, rule["time"], rule["captcha"])
        return await handler(request)

    def _ticket(self, path: str, p_time: int, captcha: bool) -> web.Response:
        self.throttled += 1
        ticket = secrets.token_hex(16)
        self.tickets[ticket] = (path, time.monotonic() + p_time)
        self.outstanding[path] = ticket
        return json_response({"p-ticket": ticket, "p-time": p_time, "p-captcha": captcha})

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == BASE + "/auth/accesstokenrequest":
            return await handler(request)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        expiry = self.tokens.get(token)
        if expiry is None or expiry <= datetime.now(UTC):
            return web.Response(status=401, text="Access is denied")
        return await handler(request)

    # auth, accounts, balances ------------------------------------------------------------------------------

    def _issue(self) -> dict[str, Any]:
        token = secrets.token_urlsafe(48)
        expiry = datetime.now(UTC) + self.token_ttl
        self.tokens[token] = expiry
        return {"accessToken": token, "expirationTime": _ts(expiry), "userStatus": "Active", "userId": self.user_id,
                "name": self.name, "hasLive": False}

    def _token_request(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["name"] != self.name or body["password"] != self.password:
            return {"errorText": "Incorrect username or password. Please try again. Note that passwords are "
                    "case-sensitive."}
        if str(body.get("cid")) != self.cid or body.get("sec") != self.sec:
            return {"errorText": "Application is not registered or its secret is wrong (cid/sec)."}
        return self._issue()

    def _account(self, account_id: int) -> dict[str, Any]:
        return {"id": account_id, "name": self.accounts[account_id], "userId": self.user_id, "accountType": "Customer",
                "active": True, "clearingHouseId": 2, "riskCategoryId": 2, "autoLiqProfileId": 2,
                "marginAccountType": "Speculator", "legalStatus": "Individual",
                "timestamp": "2026-01-02T14:30:00.000Z", "readonly": False}

    def _cash_snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return {"errorText": f"Account {account_id} not found"}
        open_pnl = sum(
            ((self.prices[p.contract.id] - p.avg) * p.net * p.contract.point_value
             for p in self.positions.values() if p.account_id == account_id and p.net),
            Decimal(0),
        )
        realized = self.realized[account_id]
        return {"totalCashValue": self.cash[account_id], "totalPnL": realized + open_pnl,
                "initialMargin": Decimal(0), "maintenanceMargin": Decimal(0),
                "netLiq": self.cash[account_id] + open_pnl, "openPnL": open_pnl, "realizedPnL": realized,
                "weekRealizedPnL": realized}

    # orders ------------------------------------------------------------------------------------------------

    def _resolve_account(self, body: dict[str, Any]) -> int | None:
        if body.get("accountId") is not None:
            return int(body["accountId"]) if int(body["accountId"]) in self.accounts else None
        spec = body.get("accountSpec")
        return next((i for i, name in self.accounts.items() if name == spec), None)

    @staticmethod
    def _leg_error(contract: TvContract, leg: dict[str, Any]) -> dict[str, Any] | None:
        kind = leg["orderType"]
        if kind not in ORDER_TYPES or kind in ("QTS", "TrailingStopLimit"):
            return _failure("Unsupported", f"Order type {kind} is not supported")
        price, stop, peg = _dec(leg.get("price")), _dec(leg.get("stopPrice")), _dec(leg.get("pegDifference"))
        needs = {"Limit": (price,), "MIT": (price,), "Stop": (stop,), "StopLimit": (price, stop),
                 "TrailingStop": (peg,)}.get(kind, ())
        if any(v is None for v in needs):
            return _failure("InvalidPrice", f"{kind} order needs its price")
        for value in (price, stop, peg):
            if value is not None and (value % contract.tick != 0 or (value <= 0 and value is not peg)):
                return _failure("InvalidPrice", f"Price {value} is not a multiple of the tick size {contract.tick}")
        return None

    def _place(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        account_id = self._resolve_account(body)
        if account_id is None:
            return _failure("AccountClosed", "Unknown account (accountId / accountSpec)")
        if self.require_automated and body.get("isAutomated") is not True:
            return _failure("UnknownReason", "Orders placed by software must set isAutomated: true")
        if account_id in self.trading_locked:
            return _failure("TradingLocked", "Trading is locked on this account")
        contract = self._contract(str(body["symbol"])) if not str(body["symbol"]).isdigit() else None
        if contract is None:
            return _failure("InvalidContract", f"Unknown symbol {body['symbol']}")
        qty = int(body["orderQty"])
        legs = [body] + [body[k] for k in ("bracket1", "bracket2", "other") if body.get(k) is not None]
        if qty <= 0 or body["action"] not in ("Buy", "Sell") or any(leg["action"] not in ("Buy", "Sell")
                                                                      for leg in legs):
            return _failure("UnknownReason", "Invalid quantity or action")
        if error := next((e for leg in legs if (e := self._leg_error(contract, leg))), None):
            return error
        automated = bool(body.get("isAutomated"))
        entry = self._create(account_id, contract, body, qty, body.get("clOrdId"), automated, WORKING)
        result: dict[str, Any] = {"orderId": entry.id}
        status = SUSPENDED if kind == "placeoso" else WORKING
        parent = entry.id if kind == "placeoso" else None
        children = [self._create(account_id, contract, leg, qty, leg.get("clOrdId"), automated, status, parent)
                    for leg in legs[1:]]
        pair = [entry, *children] if kind == "placeoco" else children
        if len(pair) == 2:
            pair[0].oco_id, pair[1].oco_id = pair[1].id, pair[0].id
        if kind == "placeoso":
            result.update({f"oso{i}Id": c.id for i, c in enumerate(children, start=1)})
        elif kind == "placeoco":
            result["ocoId"] = children[0].id
        self._match(contract.id)
        return result

    def _create(self, account_id: int, contract: TvContract, leg: dict[str, Any], qty: int, cl_ord_id: Any,
                automated: bool, status: str, parent_id: int | None = None) -> TvOrder:
        order = TvOrder(self._next(), account_id, contract, leg["action"], leg["orderType"], qty,
                        datetime.now(UTC), _dec(leg.get("price")), _dec(leg.get("stopPrice")),
                        _dec(leg.get("pegDifference")), status, parent_id)
        self.orders[order.id] = order
        self._command(order, "New", cl_ord_id=cl_ord_id, automated=automated)
        self._version(order)
        self._report(order, "New")
        return order

    def _command(self, order: TvOrder, kind: str, cl_ord_id: Any = None, automated: bool = True) -> int:
        command = _compact({"id": self._next(), "orderId": order.id, "timestamp": _ts(datetime.now(UTC)),
                            "clOrdId": None if cl_ord_id is None else str(cl_ord_id), "commandType": kind,
                            "commandStatus": "RiskPassed", "isAutomated": automated})
        self.commands.append(command)
        self._props("command", "Created", command)
        return int(command["id"])

    def _version(self, order: TvOrder) -> None:
        version = _compact({"id": self._next(), "orderId": order.id, "orderQty": order.qty,
                            "orderType": order.order_type, "price": order.price, "stopPrice": order.stop_price,
                            "pegDifference": order.peg, "timeInForce": "Day"})
        self.versions.append(version)
        self._props("orderVersion", "Created", version)

    def _report(self, order: TvOrder, exec_type: str, **extra: Any) -> None:
        command_id = next(c["id"] for c in reversed(self.commands) if c["orderId"] == order.id)
        self.reports.append({"id": self._next(), "commandId": command_id, "name": order.contract.name,
                             "accountId": order.account_id, "contractId": order.contract.id,
                             "timestamp": _ts(datetime.now(UTC)), "tradeDate": _trade_date(), "orderId": order.id,
                             "execType": exec_type, "ordStatus": order.status, "action": order.action, **extra})
        self._props("executionReport", "Created", self.reports[-1])
        self._props("order", "Updated" if order.id in self._announced else "Created", order.model())
        self._announced.add(order.id)

    def _working(self, body: dict[str, Any]) -> tuple[TvOrder | None, dict[str, Any] | None]:
        order = self.orders.get(int(body["orderId"]))
        if order is None:
            return None, _failure("UnknownReason", f"Order {body['orderId']} not found")
        if order.status not in (WORKING, SUSPENDED):
            return None, _failure("TooLate", f"Order {order.id} is {order.status}")
        return order, None

    def _cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._working(body)
        if order is None:
            return error or {}
        command_id = self._command(order, "Cancel", body.get("clOrdId"), bool(body.get("isAutomated")))
        self._cancel_order(order)
        return {"commandId": command_id}

    def _cancel_order(self, order: TvOrder) -> None:
        order.status = CANCELED
        self._report(order, "Canceled")
        for child in self.orders.values():
            if child.parent_id == order.id and child.status == SUSPENDED:
                self._cancel_order(child)

    def _modify(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._working(body)
        if order is None:
            return error or {}
        if error := self._leg_error(order.contract, body):
            return error
        if int(body["orderQty"]) <= 0:
            return _failure("UnknownReason", "Invalid quantity")
        order.qty, order.order_type = int(body["orderQty"]), body["orderType"]
        order.price, order.stop_price = _dec(body.get("price")), _dec(body.get("stopPrice"))
        order.peg = _dec(body.get("pegDifference"))
        command_id = self._command(order, "Modify", body.get("clOrdId"), bool(body.get("isAutomated")))
        self._version(order)
        self._report(order, "Replaced")
        self._match(order.contract.id)
        return {"commandId": command_id}

    def _liquidate(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id, contract = int(body["accountId"]), self.contracts.get(int(body["contractId"]))
        if account_id not in self.accounts or contract is None:
            return _failure("InvalidContract", "Unknown account or contract")
        for order in list(self.orders.values()):
            if (order.account_id, order.contract.id) == (account_id, contract.id) and order.status == WORKING:
                self._cancel_order(order)
        position = self.positions.get((account_id, contract.id))
        if position is None or position.net == 0:
            return _failure("UnknownReason", "No position to liquidate")
        leg = {"action": "Sell" if position.net > 0 else "Buy", "orderType": "Market"}
        order = self._create(account_id, contract, leg, abs(position.net), None, True, WORKING)
        self._match(contract.id)
        return {"orderId": order.id}
