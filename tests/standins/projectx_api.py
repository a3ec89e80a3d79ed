"""Stateful stand-in of the ProjectX (TopstepX) Gateway API on loopback, validated against its Swagger spec.

`ProjectXStandin` runs an aiohttp app on 127.0.0.1 (ephemeral port) that behaves like the gateway for what a
broker adapter needs: API-key login and token renewal (bearer auth everywhere else, 401 without it),
accounts, contracts (ES/NQ/MES/MNQ front months), orders of every type with `customTag` unique per account,
fills driven by `set_price`, positions (close / partial close), half-turn trades, 200 requests / 60 s (429).
Business failures are HTTP 200 with `success: false`, `errorCode`, `errorMessage`, like the real service.

Every exchange goes through `contract_middleware`; violations not tolerated end up in `.violations`.
Fault knobs live on `.faults` (`tests.standins.faults.Faults`, shared with the Tradovate stand-in):
`fail_next`, `delay_next`, `drop_next` (connection reset, optionally after the request changed the state),
plus `expire_tokens()`. The accounts, orders, positions and trades live in `.broker`, a `ProjectXEngine`
(`tests.standins.projectx_engine`), a small matching engine. `.hub` is the real-time user hub on the same
server (`/hubs/user`, `tests.standins.signalr`), fed by the engine; `.history` the bars of retrieveBars
(`tests.standins.projectx_history`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.standins.contract import Contract, contract_middleware, spec_path
from tests.standins.deviations import BY_BROKER, Deviation
from tests.standins.faults import Faults, Handler, StandinServer, json_response
from tests.standins.projectx_engine import ProjectXEngine, ok
from tests.standins.projectx_history import BarHistory
from tests.standins.signalr import UserHubStandin

SPEC = spec_path("projectx", "swagger.json")


class ProjectXStandin(StandinServer):
    """The ProjectX Gateway stand-in. State lives in `.broker` (a `ProjectXEngine`)."""

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
        self.broker = ProjectXEngine()
        self.faults = Faults()
        self.tokens: dict[str, datetime] = {}
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every request
        self._recent: deque[float] = deque()
        default = BY_BROKER["projectx"]
        self.tolerated = tuple(default if tolerated is None else tolerated)
        self.contract = Contract.load(SPEC) if validate else None
        self.history = BarHistory(self.broker.contracts)
        self.hub = UserHubStandin(self._token_valid, self.contract, self.violations)
        self.broker.listeners.append(self.hub.on_engine_event)

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
        middlewares: list[Any] = [self._hub_route]  # the websocket hub is not part of the REST spec
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
            "/api/History/retrieveBars": self.history.retrieve_bars,
        }
        for path, fn in routes.items():
            app.router.add_post(path, self._json_handler(fn))
        app.router.add_post("/api/Auth/validate", self._validate)
        app.router.add_post("/api/Auth/logout", self._logout)
        app.router.add_get("/api/Status/ping", self._ping)
        app.router.add_get("/hubs/user", self.hub.handle)
        app.on_shutdown.append(lambda _: self.hub.drop())  # open websockets would hold the shutdown up
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
    async def _hub_route(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/hubs/"):
            return await request.match_info.handler(request)  # skips the REST middlewares
        return await handler(request)

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
        return token if self._token_valid(token) else None

    def _token_valid(self, token: str) -> bool:
        expiry = self.tokens.get(token)
        return expiry is not None and expiry > datetime.now(UTC)

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
        return ok(contracts=[c.model() for c in self.broker.contracts.values()])
