"""A stateful stand-in of the tastytrade Open API on loopback, checked against the published Swagger and the SDK.

Serves the logins (`POST /oauth/token`: refresh token + client secret -> 15-minute access token;
`POST /sessions`: username + password or a single-use remember-token -> session token) and what a
broker adapter needs: the customer's accounts, positions, balances, orders (live, by received time with
pages, by id; place, dry run, replace, cancel) and complex orders (OTO / OTOCO / OCO) over the book of
`tests.standins.tastytrade_book`. Every request needs `User-Agent: product/version` (else 401, like the
real service). Answers wear tastytrade's envelope (`{data: ..., context}`, `{data: {items}}`) and errors
are `{error: {code, message}}`. Every API exchange is checked against the three Swagger files in
`contracts/tastytrade/` (merged; the payload inside the envelope is what they describe) and against the
SDK's models (`tests.standins.tastytrade_sdk`); the two logins are in neither spec.

Knobs: `set_price`, `fill(order_id)`, `expire_access_tokens()`, `revoke_logins()`, and `.faults`.
The account streamer (`tests.standins.tastytrade_stream`, `streamer`) is served on the same app at
`ws_url`, outside the REST checks; it tells subscribers what each request or knob changed.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.standins.contract import Contract, ContractViolation, contract_middleware, spec_path
from tests.standins.deviations import BY_BROKER, Deviation
from tests.standins.faults import Faults, Handler, StandinServer, dumps
from tests.standins.tastytrade_book import OPEN, Refused, TastytradeBook, now_text, qty
from tests.standins.tastytrade_sdk import sdk_errors
from tests.standins.tastytrade_stream import PATH as STREAM_PATH
from tests.standins.tastytrade_stream import AccountStreamer

ACCOUNT_NUMBER = "5WT00001"
SPECS = ("orders.json", "accounts-and-customers.json", "balances-and-positions.json")
LOGINS = ("/oauth/token", "/sessions")
AGENT = re.compile(r"^[\w.-]+/[\w.+-]+")


def merged_spec() -> dict[str, Any]:
    """The three published files as one Swagger 2.0 document (their paths and definitions do not collide)."""
    merged: dict[str, Any] = {"swagger": "2.0", "paths": {}, "definitions": {}}
    for name in SPECS:
        spec = json.loads(spec_path("tastytrade", name).read_text(encoding="utf-8"))
        merged["paths"].update(spec["paths"])
        merged["definitions"].update(spec.get("definitions", {}))
    return merged


def payload(body: Any) -> Any:
    """What the spec describes: the `data` (or `data.items`) inside tastytrade's envelope."""
    if not isinstance(body, dict) or "data" not in body:
        raise ContractViolation("response body has no `data` envelope")
    data = body["data"]
    return data["items"] if isinstance(data, dict) and isinstance(data.get("items"), list) else data


def error(status: int, code: str, message: str, *errors: str) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if errors:
        body["error"]["errors"] = [{"code": code, "message": e} for e in errors]
    return web.json_response(body, status=status)


class TastytradeStandin(StandinServer):
    def __init__(self, *, client_secret: str = "tt-client-secret", refresh_token: str = "tt-refresh-token",
                 username: str = "tasty-user", password: str = "tasty-pass", cash: Decimal = Decimal(100000),
                 access_ttl: float = 900, tolerated: Iterable[Deviation] | None = None) -> None:
        super().__init__()
        self.client_secret, self.refresh_token, self.username, self.password = (client_secret, refresh_token,
                                                                                 username, password)
        self.access_ttl = access_ttl
        self.book = TastytradeBook(ACCOUNT_NUMBER, cash)
        self.faults = Faults()
        self.tolerated = tuple(BY_BROKER["tastytrade"] if tolerated is None else tolerated)
        self.contract = Contract(merged_spec(), payload=payload)
        self.tokens: dict[str, float] = {}  # access or session token -> expiry (monotonic)
        self.remember: set[str] = set()
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every API request
        self.logins: list[tuple[str, bool]] = []  # (how, accepted) of every login request
        self.agents: set[str] = set()
        self.streamer = AccountStreamer(self.book, ACCOUNT_NUMBER,
                                        lambda token: self.tokens.get(token, 0.0) >= time.monotonic(), self.violations)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{STREAM_PATH}"

    # -- knobs -------------------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        self.book.set_price(symbol, price)
        self.streamer.publish()

    def fill(self, order_id: int | str, price: Decimal | None = None) -> None:
        self.book.fill(int(order_id), price)
        self.streamer.publish()

    def expire_access_tokens(self) -> None:
        self.tokens = {token: 0.0 for token in self.tokens}

    def revoke_logins(self) -> None:
        """The refresh token, the password and the remember-tokens stop working (a revoked grant)."""
        self.refresh_token, self.password = secrets.token_hex(8), secrets.token_hex(8)
        self.remember.clear()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.calls if m == method and p == path)

    def orders_for(self, symbol: str) -> list[dict[str, Any]]:
        return [o for o in self.book.orders.values() if o["legs"][0]["symbol"] == symbol]

    # -- app ---------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        checked = contract_middleware(self.contract, self.violations, self.tolerated)

        @web.middleware
        async def api_only(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path == STREAM_PATH:
                return await self.streamer.handle(request)  # the account streamer: not in the REST contract
            if request.path in LOGINS:
                return await handler(request)

            async def record(inner: web.Request) -> web.StreamResponse:
                raw = await inner.read()
                sent = json.loads(raw) if raw else None
                self.calls.append((inner.method, inner.path, sent))
                response = await handler(inner)
                if isinstance(response, web.Response) and isinstance(response.body, bytes):
                    answer = json.loads(response.body) if response.body else None
                    self.violations.extend(sdk_errors(inner.method, inner.path, response.status, sent, answer))
                return response

            try:
                return await checked(request, record)
            finally:
                self.streamer.publish()

        app = web.Application(middlewares=[api_only, self.faults.middleware, self._auth])
        r, acct = app.router, "/accounts/{account}"
        r.add_post("/oauth/token", self._oauth)
        r.add_post("/sessions", self._session)
        r.add_get("/customers/me/accounts", self._accounts)
        r.add_get(acct + "/positions", self._positions)
        r.add_get(acct + "/balances/{currency}", self._balances)
        r.add_get(acct + "/orders/live", self._live)
        r.add_post(acct + "/orders/dry-run", self._dry_run)
        r.add_get(acct + "/orders", self._orders)
        r.add_post(acct + "/orders", self._place)
        r.add_get(acct + r"/orders/{id:\d+}", self._order)
        r.add_put(acct + r"/orders/{id:\d+}", self._replace)
        r.add_delete(acct + r"/orders/{id:\d+}", self._cancel)
        r.add_post(acct + "/complex-orders/dry-run", self._dry_run)
        r.add_post(acct + "/complex-orders", self._place)
        r.add_get(acct + r"/complex-orders/{id:\d+}", self._complex)
        r.add_delete(acct + r"/complex-orders/{id:\d+}", self._cancel_complex)
        return app

    @staticmethod
    def _answer(request: web.Request, data: Any, status: int = 200, **extra: Any) -> web.Response:
        return web.Response(text=dumps({"data": data, "context": request.path, **extra}), status=status,
                            content_type="application/json")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        self.agents.add(agent)
        if not AGENT.match(agent):
            return error(401, "invalid_user_agent", "A User-Agent of the form product/version is required")
        if request.path not in LOGINS:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.tokens.get(token, 0.0) < time.monotonic():
                return error(401, "token_invalid", "This token is invalid or has expired")
            if request.match_info.get("account", ACCOUNT_NUMBER) != ACCOUNT_NUMBER:
                return error(403, "not_permitted", "You do not have access to this account")
        return await handler(request)

    # -- logins ------------------------------------------------------------------------------------------

    def _token(self, ttl: float) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + ttl
        return token

    async def _oauth(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = (body.get("grant_type") == "refresh_token" and body.get("refresh_token") == self.refresh_token
              and body.get("client_secret") == self.client_secret)
        self.logins.append(("oauth", ok))
        if not ok:
            return error(401, "invalid_grant", "Grant is invalid or has been revoked")
        return web.json_response({"access_token": self._token(self.access_ttl), "token_type": "Bearer",
                                  "expires_in": int(self.access_ttl)})

    async def _session(self, request: web.Request) -> web.Response:
        body = await request.json()
        remember = body.get("remember-token")
        ok = body.get("login") == self.username and (
            body.get("password") == self.password if remember is None else remember in self.remember)
        self.remember.discard(remember)
        self.logins.append(("remember" if remember else "password", ok))
        if not ok:
            return error(401, "invalid_credentials", "Invalid login, please check your username and password")
        new_remember = secrets.token_urlsafe(16)
        if body.get("remember-me"):
            self.remember.add(new_remember)
        return self._answer(request, {"user": {"email": "t@example.com", "username": self.username,
                                               "external-id": "U0001"},
                                      "session-token": self._token(24 * 3600),
                                      "remember-token": new_remember if body.get("remember-me") else None,
                                      "session-expiration": now_text()[:4] + "-12-31T00:00:00.000Z"}, 201)

    # -- accounts ----------------------------------------------------------------------------------------

    async def _accounts(self, request: web.Request) -> web.Response:
        account = {"account-number": ACCOUNT_NUMBER, "opened-at": "2024-01-02T15:00:00.000Z", "nickname": "Individual",
                   "account-type-name": "Individual", "is-closed": False, "day-trader-status": "false",
                   "is-firm-error": False, "is-firm-proprietary": False, "is-futures-approved": True,
                   "margin-or-cash": "Margin", "is-foreign": "false", "created-at": "2024-01-02T15:00:00.000Z"}
        return self._answer(request, {"items": [{"account": account, "authority-level": "owner"}]})

    async def _positions(self, request: web.Request) -> web.Response:
        return self._answer(request, {"items": self.book.position_rows()})

    async def _balances(self, request: web.Request) -> web.Response:
        book, equity = self.book, self.book.equity()
        zero = 0
        keys = ("long-equity-value short-equity-value long-derivative-value short-derivative-value long-futures-value "
                "short-futures-value long-futures-derivative-value short-futures-derivative-value "
                "long-margineable-value short-margineable-value maintenance-call-value reg-t-call-value "
                "day-trading-call-value day-equity-call-value pending-cash long-cryptocurrency-value "
                "short-cryptocurrency-value cryptocurrency-margin-requirement unsettled-cryptocurrency-fiat-amount "
                "closed-loop-available-balance equity-offering-margin-requirement long-bond-value "
                "bond-margin-requirement used-derivative-buying-power reg-t-margin-requirement "
                "futures-overnight-margin-requirement futures-intraday-margin-requirement futures-margin-requirement "
                "pending-margin-interest effective-cryptocurrency-buying-power maintenance-requirement").split()
        data: dict[str, Any] = {key: zero for key in keys}
        data.update({"account-number": ACCOUNT_NUMBER, "currency": request.match_info["currency"],
                     "cash-balance": book.cash, "margin-equity": equity, "net-liquidating-value": equity,
                     "equity-buying-power": equity * 2, "derivative-buying-power": equity,
                     "day-trading-buying-power": equity * 4, "available-trading-funds": book.cash,
                     "cash-available-to-withdraw": book.cash, "day-trade-excess": equity,
                     "maintenance-excess": equity, "snapshot-date": now_text()[:10], "updated-at": now_text()})
        return self._answer(request, data)

    # -- orders ------------------------------------------------------------------------------------------

    def _get(self, request: web.Request) -> dict[str, Any] | None:
        return self.book.orders.get(int(request.match_info["id"]))

    async def _live(self, request: web.Request) -> web.Response:
        rows = [self.book.render(o) for o in reversed(self.book.orders.values())]
        return self._answer(request, {"items": rows})

    async def _orders(self, request: web.Request) -> web.Response:
        q = request.query
        start = datetime.fromisoformat(q["start-at"].replace("Z", "+00:00")) if "start-at" in q else None
        end = datetime.fromisoformat(q["end-at"].replace("Z", "+00:00")) if "end-at" in q else None
        rows = [o for o in self.book.orders.values()
                if (start is None or datetime.fromisoformat(o["received-at"].replace("Z", "+00:00")) >= start)
                and (end is None or datetime.fromisoformat(o["received-at"].replace("Z", "+00:00")) <= end)]
        if q.get("sort") != "Asc":
            rows.reverse()
        per_page, page = int(q.get("per-page", 10)), int(q.get("page-offset", 0))
        pages = max(1, -(-len(rows) // per_page))
        items = [self.book.render(o) for o in rows[page * per_page:(page + 1) * per_page]]
        return self._answer(request, {"items": items}, pagination={
            "per-page": per_page, "page-offset": page, "item-offset": page * per_page, "total-items": len(rows),
            "total-pages": pages, "current-item-count": len(items), "previous-link": None, "next-link": None,
            "paging-link-template": None})

    async def _order(self, request: web.Request) -> web.Response:
        order = self._get(request)
        if order is None:
            return error(404, "record_not_found", "Order not found")
        return self._answer(request, self.book.render(order))

    def _effect(self, body: dict[str, Any]) -> dict[str, Any]:
        cash = self.book.cash
        return {"change-in-margin-requirement": 0, "change-in-margin-requirement-effect": "None",
                "change-in-buying-power": 0, "change-in-buying-power-effect": "None", "current-buying-power": cash,
                "current-buying-power-effect": "Credit", "new-buying-power": cash, "new-buying-power-effect": "Credit",
                "isolated-order-margin-requirement": 0, "isolated-order-margin-requirement-effect": "None",
                "is-spread": False, "impact": 0, "effect": "None"}

    def _fees(self) -> dict[str, Any]:
        return {key: 0 for key in ("regulatory-fees", "clearing-fees", "commission", "proprietary-index-option-fees",
                                   "total-fees")}

    async def _place(self, request: web.Request) -> web.Response:
        body = await request.json()
        is_complex = request.path.endswith("/complex-orders")
        try:
            if is_complex:
                data: dict[str, Any] = {"complex-order": self.book.place_complex(body)}
            else:
                data = {"order": self.book.render(self.book.place(body))}
        except Refused as exc:
            return error(422, exc.code, "One or more preflight checks failed", str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return error(400, "invalid_order", f"Invalid order: {exc}")
        data.update({"buying-power-effect": self._effect(body), "fee-calculation": self._fees(), "warnings": []})
        return self._answer(request, data, 201)

    async def _dry_run(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            for part in ([body.get("trigger-order"), *body.get("orders", [])] if "type" in body else [body]):
                if part is not None:
                    self.book.check(part)
        except Refused as exc:
            return error(422, exc.code, "One or more preflight checks failed", str(exc))
        leg = (body.get("trigger-order") or body.get("orders", [body])[0] if "type" in body else body)["legs"][0]
        unplaced = {"account-number": ACCOUNT_NUMBER, "time-in-force": "Day", "order-type": "Market",
                    "underlying-symbol": leg["symbol"], "underlying-instrument-type": leg["instrument-type"],
                    "status": "Received", "cancellable": True, "editable": True, "edited": False,
                    "updated-at": now_text(), "legs": [{**leg, "quantity": qty(Decimal(str(leg["quantity"])))}]}
        key, value = (("complex-order", {"account-number": ACCOUNT_NUMBER, "type": body["type"], "orders": [unplaced]})
                      if "type" in body else ("order", unplaced))
        return self._answer(request, {key: value, "buying-power-effect": self._effect(body),
                                      "fee-calculation": self._fees(), "warnings": []}, 201)

    async def _replace(self, request: web.Request) -> web.Response:
        order = self._get(request)
        if order is None:
            return error(404, "record_not_found", "Order not found")
        try:
            return self._answer(request, self.book.render(self.book.replace(int(order["id"]), await request.json())))
        except Refused as exc:
            return error(422, exc.code, str(exc))

    async def _cancel(self, request: web.Request) -> web.Response:
        order = self._get(request)
        if order is None:
            return error(404, "record_not_found", "Order not found")
        try:
            return self._answer(request, self.book.render(self.book.cancel(int(order["id"]))))
        except Refused as exc:
            return error(422, exc.code, str(exc))

    async def _complex(self, request: web.Request) -> web.Response:
        complex_id = int(request.match_info["id"])
        if complex_id not in self.book.complex:
            return error(404, "record_not_found", "Complex order not found")
        return self._answer(request, self.book.render_complex(complex_id))

    async def _cancel_complex(self, request: web.Request) -> web.Response:
        complex_id = int(request.match_info["id"])
        if complex_id not in self.book.complex:
            return error(404, "record_not_found", "Complex order not found")
        part = self.book.complex[complex_id]
        if not any(self.book.orders[i]["status"] in OPEN for i in [part["trigger"], *part["orders"]] if i):
            return error(422, "order_not_cancellable", "Complex order is not cancellable")
        return self._answer(request, self.book.cancel_complex(complex_id))
