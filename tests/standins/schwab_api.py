"""A stateful stand-in of Schwab's OAuth endpoints and Trader API (`/trader/v1`) on loopback, contract-checked.

`SchwabStandin` serves `/v1/oauth/authorize` + `/v1/oauth/token` (authorization-code and refresh-token
grants, HTTP Basic with the app key and secret; `issue_code()` stands in for the browser login) and the
Trader API a broker adapter needs: account numbers with their `hashValue`, the account with positions and
balances, orders (place -> 201 + `Location`, get, list by entered time, cancel, replace -> new id) over
the book of `tests.standins.schwab_book`, and the Market Data API's price history (`.history`,
`tests.standins.schwab_prices`, not contract-checked: no contract covers it). Every Trader API request
and response is checked against `contracts/schwab/trader_api.openapi.json` (the OAuth endpoints are not
in that spec). Paths take the
hash only: a plain account number is a 404, like the real service.

Knobs: `set_price`, `fill(order_id)`, `expire_access_tokens()`, `revoke_refresh_tokens()`, and `.faults`
(`fail_next`, `delay_next`, `drop_next` from `tests.standins.faults`, paths relative to `/trader/v1`).
`GET /userPreference` names the streamer (`tests.standins.schwab_stream`, `streamer`), served on the same
app; it tells subscribers of every order that a Trader API request or a knob changed.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.standins.contract import Contract, contract_middleware, spec_path
from tests.standins.deviations import BY_BROKER, Deviation
from tests.standins.faults import Faults, Handler, StandinServer, json_response
from tests.standins.schwab_book import Refused, SchwabBook
from tests.standins.schwab_prices import PriceHistory
from tests.standins.schwab_stream import PATH as STREAM_PATH
from tests.standins.schwab_stream import Streamer, streamer_info

SPEC = spec_path("schwab", "trader_api.openapi.json")
BASE = "/trader/v1"
MARKETDATA = "/marketdata/v1"
ACCOUNT_NUMBER, ACCOUNT_HASH = "12345678", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"


def _parse_time(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class SchwabStandin(StandinServer):
    def __init__(self, *, app_key: str = "app-key-123", app_secret: str = "app-secret-456",
                 callback_url: str = "https://127.0.0.1:8182", cash: Decimal = Decimal(100000),
                 access_ttl: float = 1800, tolerated: Iterable[Deviation] | None = None) -> None:
        super().__init__()
        self.app_key, self.app_secret, self.callback_url = app_key, app_secret, callback_url
        self.access_ttl = access_ttl
        self.book = SchwabBook(ACCOUNT_NUMBER, cash)
        self.history = PriceHistory(self.violations)
        self.faults = Faults(BASE)
        self.tolerated = tuple(BY_BROKER["schwab"] if tolerated is None else tolerated)
        self.contract = Contract.load(SPEC)
        self.codes: set[str] = set()
        self.access: dict[str, float] = {}  # access token -> expiry (monotonic)
        self.refresh: set[str] = set()
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every Trader API request
        self.grants: list[str] = []  # grant_type of every token request
        self.streamer = Streamer(self.book, ACCOUNT_NUMBER,
                                 lambda token: self.access.get(token, 0.0) >= time.monotonic(), self.violations)

    # -- knobs -------------------------------------------------------------------------------------------

    def set_price(self, symbol: str, price: Decimal | str | int) -> None:
        self.book.set_price(symbol, price)
        self.streamer.publish()

    def fill(self, order_id: int | str, price: Decimal | None = None) -> None:
        self.book.fill(int(order_id), price)
        self.streamer.publish()

    def issue_code(self) -> str:
        code = f"C0.{secrets.token_urlsafe(24)}@"
        self.codes.add(code)
        return code

    def expire_access_tokens(self) -> None:
        self.access = {token: 0.0 for token in self.access}

    def revoke_refresh_tokens(self) -> None:
        self.refresh.clear()

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.calls if m == method and p == BASE + path)

    def orders_for(self, symbol: str) -> list[dict[str, Any]]:
        return [n for n in self.book.nodes.values() if n.get("orderLegCollection")
                and n["orderLegCollection"][0]["instrument"]["symbol"] == symbol]

    # -- app ---------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        checked = contract_middleware(self.contract, self.violations, self.tolerated)

        @web.middleware
        async def trader_only(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith(BASE):
                return await handler(request)

            async def record(inner: web.Request) -> web.StreamResponse:
                body = await inner.read()  # already read (and kept) by the contract check
                self.calls.append((inner.method, inner.path, json.loads(body) if body else None))
                return await handler(inner)

            try:
                return await checked(request, record)
            finally:
                self.streamer.publish()

        app = web.Application(middlewares=[trader_only, self.faults.middleware, self._auth])
        r = app.router
        r.add_get("/v1/oauth/authorize", self._authorize)
        r.add_post("/v1/oauth/token", self._token)
        r.add_get(BASE + "/accounts/accountNumbers", self._numbers)
        r.add_get(BASE + "/userPreference", self._preferences)
        r.add_get(STREAM_PATH, self.streamer.handle)
        r.add_get(BASE + "/accounts/{hash}", self._account)
        r.add_get(BASE + "/accounts/{hash}/orders", self._orders)
        r.add_post(BASE + "/accounts/{hash}/orders", self._place)
        r.add_get(BASE + "/accounts/{hash}/orders/{id}", self._order)
        r.add_delete(BASE + "/accounts/{hash}/orders/{id}", self._cancel)
        r.add_put(BASE + "/accounts/{hash}/orders/{id}", self._replace)
        r.add_get(MARKETDATA + "/pricehistory", self._price_history)
        return app

    @staticmethod
    def _error(status: int, message: str, *errors: str) -> web.Response:
        return web.json_response({"message": message, "errors": list(errors) or [message]}, status=status,
                                 headers={"Schwab-Client-CorrelId": secrets.token_hex(8)})

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith((BASE, MARKETDATA)):
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if self.access.get(token, 0.0) < time.monotonic():
                return self._error(401, "Client not authorized", "The access token is invalid or has expired")
            if "hash" in request.match_info and request.match_info["hash"] != ACCOUNT_HASH:
                return self._error(404, "Invalid account number", "Use the encrypted hashValue of the account")
        return await handler(request)

    async def _price_history(self, request: web.Request) -> web.Response:
        status, body = self.history.answer(dict(request.query))
        return web.json_response(body, status=status)

    # -- OAuth -------------------------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        ok = request.query.get("client_id") == self.app_key and request.query.get("redirect_uri") == self.callback_url
        return web.Response(text="Schwab login page (stand-in)" if ok else "invalid client", status=200 if ok else 400)

    def _client_ok(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.app_key}:{self.app_secret}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    def _tokens(self, refresh: str) -> web.Response:
        access = secrets.token_urlsafe(24)
        self.access[access] = time.monotonic() + self.access_ttl
        return web.json_response({"expires_in": int(self.access_ttl), "token_type": "Bearer", "scope": "api",
                                  "refresh_token": refresh, "access_token": access, "id_token": "stand-in"})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.grants.append(str(form.get("grant_type")))
        if not self._client_ok(request):
            return web.json_response({"error": "invalid_client", "error_description": "Unauthorized"}, status=401)
        if form.get("grant_type") == "authorization_code":
            code = str(form.get("code"))
            if code not in self.codes or form.get("redirect_uri") != self.callback_url:
                return web.json_response({"error": "invalid_grant", "error_description": "bad code"}, status=400)
            self.codes.discard(code)
            refresh = secrets.token_urlsafe(32)
            self.refresh.add(refresh)
            return self._tokens(refresh)
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh:
                return web.json_response({"error": "refresh_token_authentication_error",
                                          "error_description": "Failed refresh token authentication"}, status=400)
            return self._tokens(str(form["refresh_token"]))
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    # -- Trader API --------------------------------------------------------------------------------------

    async def _preferences(self, request: web.Request) -> web.Response:
        # one object, as the live API answers and schwab-py reads it (the spec says a list: `deviations`)
        return json_response({
            "accounts": [{"accountNumber": ACCOUNT_NUMBER, "primaryAccount": True, "type": "BROKERAGE",
                          "nickName": "Individual", "displayAcctId": "...678", "autoPositionEffect": False,
                          "accountColor": "Green"}],
            "streamerInfo": [streamer_info(f"ws://127.0.0.1:{self.port}{STREAM_PATH}")],
            "offers": [{"level2Permissions": False, "mktDataPermission": "NP"}]})

    async def _numbers(self, request: web.Request) -> web.Response:
        return json_response([{"accountNumber": ACCOUNT_NUMBER, "hashValue": ACCOUNT_HASH}])

    async def _account(self, request: web.Request) -> web.Response:
        book = self.book
        equity = book.equity()
        sa: dict[str, Any] = {
            "type": "MARGIN", "accountNumber": ACCOUNT_NUMBER, "roundTrips": 0, "isDayTrader": False,
            "isClosingOnlyRestricted": False, "pfcbFlag": False,
            "initialBalances": {"cashBalance": book.cash, "accountValue": equity, "equity": equity},
            "currentBalances": {"cashBalance": book.cash, "equity": equity, "buyingPower": equity * 2,
                                "dayTradingBuyingPower": equity * 4, "availableFunds": book.cash,
                                "maintenanceRequirement": Decimal(0)},
            "projectedBalances": {"buyingPower": equity * 2},
        }
        if request.query.get("fields") == "positions":
            sa["positions"] = book.position_rows()
        return json_response({"securitiesAccount": sa})

    async def _orders(self, request: web.Request) -> web.Response:
        try:
            start, end = _parse_time(request.query["fromEnteredTime"]), _parse_time(request.query["toEnteredTime"])
        except (KeyError, ValueError):
            return self._error(400, "fromEnteredTime and toEnteredTime are required ISO-8601 times")
        status = request.query.get("status")
        out = [self.book.render(t) for t in reversed(self.book.trees)
               if start <= _parse_time(t["enteredTime"]) <= end and (status is None or t["status"] == status)]
        return json_response(out[: int(request.query.get("maxResults", 3000))])

    def _node(self, request: web.Request) -> dict[str, Any] | None:
        raw = request.match_info["id"]
        return self.book.nodes.get(int(raw)) if raw.isdigit() else None

    async def _order(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if node is None:
            return self._error(404, "Order not found")
        return json_response(self.book.render(node))

    def _created(self, order_id: int) -> web.Response:
        location = f"http://127.0.0.1:{self.port}{BASE}/accounts/{ACCOUNT_HASH}/orders/{order_id}"
        return web.Response(status=201, headers={"Location": location,
                                                 "Schwab-Client-CorrelId": secrets.token_hex(8)})

    async def _place(self, request: web.Request) -> web.Response:
        try:
            return self._created(self.book.place(await request.json()))
        except Refused as exc:
            return self._error(400, str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return self._error(400, f"Invalid order: {exc}")

    async def _cancel(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if node is None:
            return self._error(404, "Order not found")
        try:
            self.book.cancel(int(node["orderId"]))
        except Refused as exc:
            return self._error(400, str(exc))
        return web.Response(status=200)

    async def _replace(self, request: web.Request) -> web.Response:
        node = self._node(request)
        if node is None:
            return self._error(404, "Order not found")
        try:
            return self._created(self.book.replace(int(node["orderId"]), await request.json()))
        except Refused as exc:
            return self._error(400, str(exc))
