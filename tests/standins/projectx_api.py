"""Stateful stand-in of the ProjectX (TopstepX) Gateway API on loopback, validated against its Swagger spec.

`ProjectXStandin` runs an aiohttp app on 127.0.0.1 (ephemeral port) that behaves like the gateway for what a
broker adapter needs: API-key login and token renewal (bearer auth everywhere else, 401 without it),
accounts, contracts (ES/NQ/MES/MNQ front months), orders of every type with `customTag` unique per account,
fills driven by `set_price`, positions (close / partial close), half-turn trades, 200 requests / 60 s (429).
Business failures are HTTP 200 with `success: false`, `errorCode`, `errorMessage`, like the real service.

Every exchange goes through `contract_middleware`; violations not tolerated end up in `.violations`.
Fault knobs live on `.faults` (`Faults`, shared with the Tradovate stand-in): `fail_next`, `delay_next`,
`drop_next` (connection reset, optionally after the request changed the state), plus `expire_tokens()`.
The accounts, orders, positions and trades live in `ProjectXBroker` (`.broker`), a small matching engine.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from tests.standins.contract import Contract, assert_no_violations, contract_middleware
from tests.standins.deviations import BY_BROKER, Deviation

SPEC = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "projectx" / "swagger.json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Deviations these stand-ins need; the lead moves them into tests/standins/deviations.py (PROJECTX).
PROPOSED_DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        broker="projectx",
        reason="The gateway answers 401 (empty body) to a missing, invalid or expired bearer token on every "
        "endpoint; the spec documents only 200.",
        message=r"status 401 not documented",
        direction="response",
    ),
    Deviation(
        broker="projectx",
        reason="The gateway answers 429 beyond 200 requests / 60 s and 5xx during outages (fault injection); "
        "the spec documents only 200.",
        message=r"status (429|500|502|503|504) not documented",
        direction="response",
    ),
)


def dumps(obj: Any) -> str:
    """JSON with Decimal rendered as a JSON number (the spec's `number`/`decimal`)."""

    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    return json.dumps(obj, default=default)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json")


# -- fault injection (shared with tradovate_api) -------------------------------------------------


@dataclass
class _Rule:
    kind: str  # "status" | "delay" | "drop"
    remaining: int
    path: str | None
    status: int = 500
    seconds: float = 0.0
    after_handling: bool = False
    body: str = ""


class Faults:
    """Fault knobs applied to the next matching requests (path relative to the API base, or any path)."""

    def __init__(self, base_path: str = "") -> None:
        self.base_path = base_path
        self._rules: list[_Rule] = []

    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None, body: str = "") -> None:
        """The next `n` requests (to `path`, if given) get `status` without reaching the API."""
        self._rules.append(_Rule("status", n, path, status=status, body=body))

    def delay_next(
        self, seconds: float, n: int = 1, path: str | None = None, after_handling: bool = False
    ) -> None:
        """Delay the next `n` responses; `after_handling`: the request is processed first (state changes)."""
        self._rules.append(_Rule("delay", n, path, seconds=seconds, after_handling=after_handling))

    def drop_next(self, n: int = 1, path: str | None = None, after_handling: bool = True) -> None:
        """Reset the connection instead of answering; with `after_handling` the state has already changed."""
        self._rules.append(_Rule("drop", n, path, after_handling=after_handling))

    def clear(self) -> None:
        self._rules.clear()

    def _take(self, path: str) -> _Rule | None:
        rel = path[len(self.base_path) :] if self.base_path and path.startswith(self.base_path) else path
        for rule in self._rules:
            if rule.remaining > 0 and (rule.path is None or rule.path.lower() == rel.lower()):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
                return rule
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = self._take(request.path)
        if rule is None:
            return await handler(request)
        if rule.kind == "status":
            return web.Response(status=rule.status, text=rule.body)
        if rule.kind == "delay":
            if not rule.after_handling:
                await asyncio.sleep(rule.seconds)
                return await handler(request)
            response = await handler(request)
            await asyncio.sleep(rule.seconds)
            return response
        response = await handler(request) if rule.after_handling else web.Response(status=500)
        if request.transport is not None:
            request.transport.abort()
        return response


class StandinServer:
    """Runs an aiohttp app on 127.0.0.1; `.url` is the API base, `.violations` the contract violations."""

    url_suffix = ""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def build_app(self) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_suffix}"

    async def start(self, port: int = 0) -> Self:
        """Start listening (`port=0`: ephemeral; pass the old `.port` to come back after `stop()`)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def assert_no_violations(self) -> None:
        assert_no_violations(self.violations)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# -- the ProjectX app ----------------------------------------------------------------------------


class ProjectXStandin(StandinServer):
    """The ProjectX Gateway stand-in. State lives in `.broker` (a `ProjectXBroker`)."""

    def __init__(
        self,
        *,
        user_name: str = "trader",
        api_key: str = "px-api-key",
        token_ttl: timedelta = timedelta(hours=24),
        rate_limit: int = 200,
        rate_window: float = 60.0,
        tolerated: Iterable[Deviation] | None = None,
        validate: bool = True,
    ) -> None:
        super().__init__()
        self.user_name, self.api_key, self.token_ttl = user_name, api_key, token_ttl
        self.rate_limit, self.rate_window = rate_limit, rate_window
        self.broker = ProjectXBroker()
        self.faults = Faults()
        self.tokens: dict[str, datetime] = {}
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every request
        self._recent: deque[float] = deque()
        default = BY_BROKER["projectx"] + PROPOSED_DEVIATIONS
        self.tolerated = tuple(default if tolerated is None else tolerated)
        self.contract = Contract.load(SPEC) if validate else None

    # helpers for tests ---------------------------------------------------------------------------

    def set_price(self, contract_id: str, price: Decimal | int | str) -> None:
        """Move the market of one contract; resting orders that become marketable fill."""
        self.broker.set_price(contract_id, Decimal(str(price)))

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (401) from now on."""
        self.tokens = dict.fromkeys(self.tokens, datetime.now(UTC) - timedelta(seconds=1))

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.calls if p.lower() == path.lower())

    # app -----------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        middlewares: list[Any] = []
        if self.contract is not None:
            middlewares.append(contract_middleware(self.contract, self.violations, self.tolerated))
        middlewares += [self._record, self.faults.middleware, self._rate_limited, self._auth]
        app = web.Application(middlewares=middlewares)
        routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/api/Auth/loginKey": self._login_key,
            "/api/Account/search": self._account_search,
            "/api/Contract/search": self._contract_search,
            "/api/Contract/searchById": self._contract_by_id,
            "/api/Contract/available": self._contract_available,
            "/api/Order/place": self.broker.place,
            "/api/Order/search": self.broker.search_orders,
            "/api/Order/searchOpen": self.broker.search_open_orders,
            "/api/Order/cancel": self.broker.cancel,
            "/api/Order/modify": self.broker.modify,
            "/api/Position/searchOpen": self.broker.search_positions,
            "/api/Position/closeContract": self.broker.close_contract,
            "/api/Position/partialCloseContract": self.broker.partial_close_contract,
            "/api/Trade/search": self.broker.search_trades,
        }
        for path, fn in routes.items():
            app.router.add_post(path, self._json_handler(fn))
        app.router.add_post("/api/Auth/validate", self._validate)
        app.router.add_post("/api/Auth/logout", self._logout)
        app.router.add_get("/api/Status/ping", self._ping)
        return app

    @staticmethod
    def _json_handler(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            try:
                body = json.loads(await request.read() or b"null", parse_float=Decimal)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return json_response(
                    {"title": "One or more validation errors occurred.", "status": 400}, status=400
                )
            try:
                return json_response(fn(body))
            except (KeyError, TypeError, ValueError) as exc:  # missing/ill-typed field: ASP.NET model binding
                return json_response(
                    {"title": "One or more validation errors occurred.", "status": 400, "detail": str(exc)},
                    status=400,
                )

        return handler

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
    async def _rate_limited(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= self.rate_window:
            self._recent.popleft()
        if len(self._recent) >= self.rate_limit:
            return web.Response(status=429, headers={"Retry-After": str(int(self.rate_window))})
        self._recent.append(now)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/api/Auth/loginKey", "/api/Auth/loginApp", "/api/Status/ping"):
            return await handler(request)
        if self._token(request) is None:
            return web.Response(status=401)
        return await handler(request)

    def _token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        expiry = self.tokens.get(token)
        return token if expiry is not None and expiry > datetime.now(UTC) else None

    def _issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = datetime.now(UTC) + self.token_ttl
        return token

    # auth and reference data ---------------------------------------------------------------------

    def _login_key(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["userName"] != self.user_name or body["apiKey"] != self.api_key:
            return {"success": False, "errorCode": 3, "errorMessage": "Invalid credentials."}
        return {"success": True, "errorCode": 0, "token": self._issue_token()}

    async def _validate(self, request: web.Request) -> web.Response:
        return json_response({"success": True, "errorCode": 0, "newToken": self._issue_token()})

    async def _logout(self, request: web.Request) -> web.Response:
        token = self._token(request)
        self.tokens.pop(token or "", None)
        return json_response({"success": True, "errorCode": 0})

    async def _ping(self, request: web.Request) -> web.Response:
        return json_response("pong")  # the spec's schema is {"type": "string"}, as JSON

    def _account_search(self, body: dict[str, Any]) -> dict[str, Any]:
        only_active = bool(body["onlyActiveAccounts"])
        accounts = [a.model() for a in self.broker.accounts.values() if a.active or not only_active]
        return {"success": True, "errorCode": 0, "accounts": accounts}

    def _contract_search(self, body: dict[str, Any]) -> dict[str, Any]:
        bool(body["live"])
        text = str(body.get("searchText") or "").upper()
        found = [
            c.model()
            for c in self.broker.contracts.values()
            if not text or text in c.name.upper() or text in c.description.upper() or text in c.id.upper()
        ]
        return {"success": True, "errorCode": 0, "contracts": found}

    def _contract_by_id(self, body: dict[str, Any]) -> dict[str, Any]:
        contract = self.broker.contracts.get(str(body["contractId"]))
        if contract is None:
            return {"success": False, "errorCode": 1, "errorMessage": "Contract not found."}
        return {"success": True, "errorCode": 0, "contract": contract.model()}

    def _contract_available(self, body: dict[str, Any]) -> dict[str, Any]:
        bool(body["live"])
        return _ok(contracts=[c.model() for c in self.broker.contracts.values()])


# -- the matching engine -------------------------------------------------------------------------

LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK = 1, 2, 3, 4, 5, 6, 7
OPEN, FILLED, CANCELLED = 1, 2, 3
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


def _ok(**extra: Any) -> dict[str, Any]:
    return {"success": True, "errorCode": 0, **extra}


def _fail(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errorCode": code, "errorMessage": message}


class ProjectXBroker:
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
            return _fail(1, "Account not found.")
        if not account.can_trade:
            return _fail(10, "Account is not allowed to trade.")
        contract = self.contracts.get(str(body["contractId"]))
        if contract is None:
            return _fail(8, "Contract not found.")
        if not contract.active:
            return _fail(9, "Contract is not active.")
        kind, side, size = int(body["type"]), int(body["side"]), int(body["size"])
        limit, stop, trail = (_dec(body.get(k)) for k in ("limitPrice", "stopPrice", "trailPrice"))
        tag = body.get("customTag")
        if not LIMIT <= kind <= JOIN_ASK or side not in (BID, ASK):
            return _fail(2, f"Invalid order type {kind} or side {side}.")
        if size <= 0:
            return _fail(2, "Invalid order size.")
        if tag is not None and (account.id, str(tag)) in self.custom_tags:
            return _fail(2, f"An order with custom tag '{tag}' already exists on this account.")
        if kind in (JOIN_BID, JOIN_ASK):
            limit = self.prices[contract.id]
        missing = {LIMIT: limit is None, STOP: stop is None, STOP_LIMIT: limit is None or stop is None,
                   TRAILING_STOP: trail is None}.get(kind, False)
        if missing:
            return _fail(2, "Price missing for this order type.")
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
        self._match(contract.id)
        return _ok(orderId=order.id)

    @staticmethod
    def _price_error(contract: PxContract, *prices: Decimal | None) -> dict[str, Any] | None:
        for price in prices:
            if price is not None and (price <= 0 or price % contract.tick_size != 0):
                return _fail(2, f"Invalid price {price}: not a positive multiple of the tick size.")
        return None

    def _find_order(self, body: dict[str, Any]) -> tuple[PxOrder | None, dict[str, Any] | None]:
        if int(body["accountId"]) not in self.accounts:
            return None, _fail(1, "Account not found.")
        order = self.orders.get(int(body["orderId"]))
        if order is None or order.account_id != int(body["accountId"]):
            return None, _fail(2, "Order not found.")
        if order.status != OPEN:
            return None, _fail(3, "Order is not open.")
        return order, None

    def cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._find_order(body)
        if order is None:
            return error or _fail(5, "Unknown error.")
        order.status, order.updated = CANCELLED, datetime.now(UTC)
        return _ok()

    def modify(self, body: dict[str, Any]) -> dict[str, Any]:
        order, error = self._find_order(body)
        if order is None:
            return error or _fail(5, "Unknown error.")
        limit, stop, trail = (_dec(body.get(k)) for k in ("limitPrice", "stopPrice", "trailPrice"))
        if (size := body.get("size")) is not None and int(size) <= 0:
            return _fail(3, "Invalid order size.")
        if error := self._price_error(order.contract, limit, stop, trail):
            return {**error, "errorCode": 3}
        order.size = int(size) if size is not None else order.size
        order.limit_price = limit if limit is not None else order.limit_price
        order.stop_price = stop if stop is not None else order.stop_price
        order.trail_price = trail if trail is not None else order.trail_price
        order.updated = datetime.now(UTC)
        self._match(order.contract.id)
        return _ok()

    def _orders_between(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return _fail(1, "Account not found.")
        start = parse_time(body["startTimestamp"])
        end = parse_time(body["endTimestamp"]) if body.get("endTimestamp") else None
        found = [o.model() for o in self.orders.values()
                 if o.account_id == account_id and o.created >= start and (end is None or o.created <= end)]
        return _ok(orders=found)

    def search_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._orders_between(body)

    def search_open_orders(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return _fail(1, "Account not found.")
        return _ok(orders=[o.model() for o in self.orders.values()
                           if o.account_id == account_id and o.status == OPEN])

    # positions and trades ------------------------------------------------------------------------

    def search_positions(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return _fail(1, "Account not found.")
        return _ok(positions=[p.model() for p in self.positions.values() if p.account_id == account_id])

    def close_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._close(int(body["accountId"]), str(body["contractId"]), None)

    def partial_close_contract(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._close(int(body["accountId"]), str(body["contractId"]), int(body["size"]))

    def _close(self, account_id: int, contract_id: str, size: int | None) -> dict[str, Any]:
        if account_id not in self.accounts:
            return _fail(1, "Account not found.")
        if contract_id not in self.contracts:
            return _fail(3, "Contract not found.")
        position = self.positions.get((account_id, contract_id))
        if position is None:
            return _fail(2, "Position not found.")
        if size is not None and not 0 < size <= abs(position.size):
            return _fail(5, "Invalid close size.")
        order = PxOrder(self._next("order"), account_id, self.contracts[contract_id], MARKET,
                        ASK if position.size > 0 else BID, size or abs(position.size), datetime.now(UTC))
        self.orders[order.id] = order
        self._match(contract_id)
        return _ok()

    def search_trades(self, body: dict[str, Any]) -> dict[str, Any]:
        account_id = int(body["accountId"])
        if account_id not in self.accounts:
            return _fail(1, "Account not found.")
        start = parse_time(body["startTimestamp"]) if body.get("startTimestamp") else None
        end = parse_time(body["endTimestamp"]) if body.get("endTimestamp") else None
        return _ok(trades=[t.model() for t in self.trades if t.account_id == account_id
                           and (start is None or t.created >= start) and (end is None or t.created <= end)])

    # matching ------------------------------------------------------------------------------------

    def _fill_price(self, order: PxOrder, price: Decimal) -> Decimal | None:
        buy = order.side == BID
        if order.type == MARKET:
            return price
        if order.type == TRAILING_STOP and order.trail_price is not None:
            order.anchor = price if order.anchor is None else (min if buy else max)(order.anchor, price)
            order.stop_price = order.anchor + order.trail_price if buy else order.anchor - order.trail_price
        stop = order.stop_price
        stop_hit = stop is not None and (price >= stop if buy else price <= stop)
        if order.type in (STOP, TRAILING_STOP):
            return price if stop_hit else None
        if order.type == STOP_LIMIT and not order.triggered:
            if not stop_hit:
                return None
            order.triggered = True
        limit = order.limit_price
        if limit is None or (price > limit if buy else price < limit):
            return None
        return min(price, limit) if buy else max(price, limit)

    def _match(self, contract_id: str) -> None:
        for _ in range(1000):
            price = self.prices[contract_id]
            for order in sorted(self.orders.values(), key=lambda o: o.id):
                if order.status == OPEN and order.contract.id == contract_id:
                    fill_price = self._fill_price(order, price)
                    if fill_price is not None:
                        self._fill(order, fill_price)
                        break
            else:
                return

    def _fill(self, order: PxOrder, price: Decimal) -> None:
        now = datetime.now(UTC)
        order.status, order.fill_volume, order.filled_price, order.updated = FILLED, order.size, price, now
        contract, account = order.contract, self.accounts[order.account_id]
        pnl = self._apply(order.account_id, contract, order.size if order.side == BID else -order.size, price)
        fees = contract.fee * order.size
        self.trades.append(PxTrade(self._next("trade"), order.account_id, contract.id, now, price, pnl, fees,
                                   order.side, order.size, order.id))
        account.balance += (pnl or Decimal(0)) - fees
        siblings = [o for o in self.orders.values() if o.status == OPEN and o.oco_id is not None]
        for other in siblings:  # the other leg of a bracket, or every bracket once the position is flat
            if other.oco_id == order.oco_id or (
                (order.account_id, contract.id) not in self.positions and other.contract.id == contract.id
            ):
                other.status, other.updated = CANCELLED, now
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
