"""Tradovate wire layer: validated response models, the authenticated session, maps, point values, journal.

The models read only the fields the adapter uses and ignore the rest, so a broker adding fields breaks
nothing; a missing or mistyped field we rely on is a `BrokerError` naming the call. `OrderJournal` is the
adapter's memory of the client order ids it has sent (Tradovate does not deduplicate `clOrdId`): an
append-only JSON-lines file, fsynced before each placement, so a restart still knows what it may have sent.
`TradovateSession` is the authenticated request wrapper on `brokers.http.HttpBroker` (tokens, p-tickets).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from brokers.base import AuthenticationFailed, BrokerError, BrokerUnavailable, OrderNotFound, OrderRejected
from brokers.http import HttpBroker, RateLimiter, RetryPolicy, Throttled
from config.brokers import TradovateSettings
from daemon.domain import Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

STATUS = {
    "Filled": OrderStatus.FILLED,
    "Completed": OrderStatus.FILLED,
    "Canceled": OrderStatus.CANCELLED,
    "Expired": OrderStatus.EXPIRED,
    "Rejected": OrderStatus.REJECTED,
}  # Working, Suspended (bracket legs waiting for their entry), Pending*, Unknown: still open
ORDER_TYPE_OUT = {
    OrderType.MARKET: "Market", OrderType.LIMIT: "Limit", OrderType.STOP: "Stop", OrderType.STOP_LIMIT: "StopLimit",
}
ORDER_TYPE_IN = {v: k for k, v in ORDER_TYPE_OUT.items()} | {"MIT": OrderType.LIMIT, "TrailingStop": OrderType.STOP}
TIF_OUT = {TimeInForce.DAY: "Day", TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}
TIF_IN = {v: k for k, v in TIF_OUT.items()}


def parse_time(value: str | None) -> datetime | None:
    """Tradovate timestamps (`2026-01-02T14:30:00.000Z`) as aware UTC datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def wire_number(value: Decimal) -> int | float:
    """A Decimal price/quantity as a JSON number (the API has no string decimals); ints stay ints."""
    return int(value) if value == value.to_integral_value() else float(value)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AccessToken(_Wire):
    accessToken: str
    expirationTime: str
    userId: int | None = None  # the websocket's `user/syncrequest` subscribes to this user


class TvAccount(_Wire):
    id: int
    name: str
    active: bool = True
    userId: int | None = None


class TvContract(_Wire):
    id: int
    name: str


class TvOrder(_Wire):
    id: int
    accountId: int
    contractId: int
    timestamp: str
    action: str
    ordStatus: str | None = None
    parentId: int | None = None
    ocoId: int | None = None


class TvOrderVersion(_Wire):
    id: int
    orderId: int
    orderQty: int
    orderType: str
    price: Decimal | None = None
    stopPrice: Decimal | None = None
    timeInForce: str | None = None


class TvCommand(_Wire):
    id: int
    orderId: int
    clOrdId: str | None = None
    commandType: str


class TvFill(_Wire):
    id: int
    orderId: int
    contractId: int
    timestamp: str
    action: str
    qty: int
    price: Decimal
    active: bool = True


class TvPosition(_Wire):
    id: int
    accountId: int
    contractId: int
    netPos: int
    netPrice: Decimal | None = None


class TvCashSnapshot(_Wire):
    errorText: str | None = None
    totalCashValue: Decimal = Decimal(0)
    netLiq: Decimal | None = None
    openPnL: Decimal = Decimal(0)
    realizedPnL: Decimal = Decimal(0)
    totalPnL: Decimal | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def parse_list(model: type[M], data: Any, what: str) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data or [])  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BrokerError(f"{what}: unexpected answer from Tradovate ({exc.error_count()} field errors: "
                          f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']})") from None


def failure_of(data: Any) -> str | None:
    """The broker's reason when an HTTP 200 answer is a business failure; None when it succeeded."""
    if not isinstance(data, dict):
        return None
    reason = data.get("failureReason")
    if reason and reason != "Success":
        text = data.get("failureText") or ""
        return f"{reason}: {text}" if text else str(reason)
    if data.get("errorText"):
        return str(data["errorText"])
    return None


def order_state(order: TvOrder, fills: Iterable[TvFill]) -> tuple[OrderStatus, Decimal]:
    """(status, filled quantity) of an order from its `ordStatus` and its fills."""
    filled = Decimal(sum(f.qty for f in fills if f.orderId == order.id))
    status = STATUS.get(order.ordStatus or "")
    if status is None:
        status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
    return status, filled


def build_order(raw: TvOrder, fills: Iterable[TvFill], version: TvOrderVersion | None, cid: str, account: str,
                symbol: str, now: datetime) -> Order:
    """The domain Order from the Order entity, its latest OrderVersion (qty, type, prices) and its fills."""
    mine = [f for f in fills if f.orderId == raw.id]
    status, filled = order_state(raw, mine)
    average = sum((f.price * f.qty for f in mine), Decimal(0)) / filled if filled else None
    created = parse_time(raw.timestamp) or now
    latest = max((t for f in mine if (t := parse_time(f.timestamp))), default=created)
    return Order(
        broker_order_id=str(raw.id), client_order_id=cid, account=account, symbol=symbol,
        side=Side.BUY if raw.action == "Buy" else Side.SELL,
        quantity=Decimal(version.orderQty) if version else filled,
        order_type=ORDER_TYPE_IN.get(version.orderType, OrderType.MARKET) if version else OrderType.MARKET,
        status=status, filled_quantity=filled, average_fill_price=average,
        limit_price=version.price if version else None,
        stop_price=version.stopPrice if version else None,
        time_in_force=TIF_IN.get((version.timeInForce if version else None) or "Day", TimeInForce.DAY),
        parent_order_id=str(raw.parentId) if raw.parentId else None,
        oco_group=str(raw.parentId or min(raw.id, raw.ocoId)) if raw.ocoId else None,
        created_at=created, updated_at=max(latest, created),
    )


def provisional_order(request: OrderRequest, order_id: int, symbol: str, now: datetime) -> Order:
    """What we know of a placed order whose read-back failed; polling and reconciliation correct it."""
    return Order(broker_order_id=str(order_id), client_order_id=request.client_order_id, account=request.account,
                 symbol=symbol, side=request.side, quantity=request.quantity, order_type=request.order_type,
                 status=OrderStatus.NEW, limit_price=request.limit_price, stop_price=request.stop_price,
                 time_in_force=request.time_in_force, created_at=now, updated_at=now)


def order_body(
    request: OrderRequest, contract: str, account_id: int | None, account_spec: str | None
) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) of a placement: `placeorder`, or `placeoso` with take-profit/stop-loss legs."""
    cid, qty = request.client_order_id, request.quantity
    if qty != qty.to_integral_value():
        raise OrderRejected(f"order {cid}: Tradovate trades whole contracts, not {qty.normalize():f}")
    kind = request.order_type
    needs_limit = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
    needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
    if (needs_limit and request.limit_price is None) or (needs_stop and request.stop_price is None):
        raise OrderRejected(f"order {cid}: a {kind.value} order needs its price; nothing was sent")
    body: dict[str, Any] = {
        "accountSpec": account_spec, "accountId": account_id, "clOrdId": cid,
        "action": "Buy" if request.side is Side.BUY else "Sell", "symbol": contract, "orderQty": int(qty),
        "orderType": ORDER_TYPE_OUT[kind], "timeInForce": TIF_OUT[request.time_in_force], "isAutomated": True,
    }
    if needs_limit and request.limit_price is not None:
        body["price"] = wire_number(request.limit_price)
    if needs_stop and request.stop_price is not None:
        body["stopPrice"] = wire_number(request.stop_price)
    exit_side = "Sell" if request.side is Side.BUY else "Buy"
    legs = []
    if request.take_profit is not None:
        legs.append({"action": exit_side, "orderType": "Limit", "price": wire_number(request.take_profit),
                     "clOrdId": f"{cid}-tp"})
    if request.stop_loss is not None:
        legs.append({"action": exit_side, "orderType": "Stop", "stopPrice": wire_number(request.stop_loss),
                     "clOrdId": f"{cid}-sl"})
    body = {k: v for k, v in body.items() if v is not None}
    if not legs:
        return "/order/placeorder", body
    for number, leg in enumerate(legs, start=1):
        body[f"bracket{number}"] = leg
    return "/order/placeoso", body


class OrderJournal:
    """Client order ids sent to Tradovate, with the broker order id once known; survives restarts.

    One JSON object per line: `{"cid", "state": "sending"|"placed"|"refused", "symbol", "contract",
    "order_id"?, "at"}`; later lines for the same id update earlier ones. Each line is flushed and fsynced
    before the request it describes is sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    self.entries.setdefault(str(entry["cid"]), {}).update(entry)
                except (ValueError, KeyError, TypeError):  # a torn last line after a crash
                    log.warning("tradovate journal %s: unreadable line %d ignored", self.path, number)

    def get(self, cid: str) -> dict[str, Any] | None:
        return self.entries.get(cid)

    def record(self, cid: str, state: str, **fields: Any) -> None:
        entry = {"cid": cid, "state": state, **fields, "at": datetime.now(UTC).isoformat()}
        self.entries.setdefault(cid, {}).update(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def aliases(self) -> dict[str, str]:
        """Contract name -> the ticker the engine last used for it (`ESZ6` -> `ES1!`)."""
        return {e["contract"]: e["symbol"] for e in self.entries.values() if e.get("contract") and e.get("symbol")}


MAX_TICKETS = 5  # p-tickets honoured for one request before giving up
TICKET_MARGIN = 0.05  # seconds added to p-time so the retry is not early (an early retry is penalised)
EXPIRY_MARGIN = timedelta(seconds=60)


def decode(response: httpx.Response, what: str) -> Any:
    """JSON body with exact decimals (prices as Decimal, never float)."""
    if not response.content:
        return None
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise BrokerUnavailable(f"{what}: answer is not JSON") from None


class TradovateSession:
    """Authenticated calls to one Tradovate user: token request/renewal, re-login on 401, p-ticket waits.

    `self.http` carries the 401 hook; token calls go through `self.auth_http` (same client, limiter and
    policy, no hook) so a refused login cannot recurse into another login.
    """

    def __init__(
        self,
        settings: TradovateSettings,
        client: httpx.AsyncClient | None,
        *,
        clock: Callable[[], datetime],
        retry: RetryPolicy | None,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.settings, self.clock, self._sleep = settings, clock, sleep
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(settings.timeout_seconds))
        common: dict[str, Any] = {
            "timeout": settings.timeout_seconds,
            "auth_headers": self._auth_headers,
            "rate_limiter": RateLimiter.per_minute(settings.rate_limit_per_minute),
            "retry": retry or RetryPolicy(retries=settings.max_retries),
            "client": self.client,
            "sleep": sleep,
        }
        self.http = HttpBroker("tradovate", settings.base_url, on_unauthorized=self._reauthenticate, **common)
        self.auth_http = HttpBroker("tradovate", settings.base_url, **common)
        self.token: str | None = None
        self.user_id: int | None = None
        self._token_at: datetime | None = None
        self._token_expires: datetime | None = None
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def healthy(self) -> bool:
        return self.token is not None and self.http.healthy()

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _credentials(self) -> dict[str, Any]:
        s = self.settings
        return {"name": s.username, "password": s.password.get_secret_value(), "appId": s.app_id,
                "appVersion": s.app_version, "cid": str(s.cid), "sec": s.sec.get_secret_value(),
                "deviceId": s.device_id}

    def _set_token(self, data: Any, what: str) -> None:
        token = parse(AccessToken, data, what)
        self.token, self._token_at = token.accessToken, self.clock()
        self._token_expires = parse_time(token.expirationTime)
        self.user_id = token.userId if token.userId is not None else self.user_id

    async def login(self) -> None:
        what = "tradovate login"
        data = await self.call("POST", "/auth/accesstokenrequest", json=self._credentials(), safe=True, what=what,
                               auth=False)
        if not isinstance(data, dict) or data.get("errorText") or not data.get("accessToken"):
            message = data.get("errorText") if isinstance(data, dict) else None
            self.token = None
            raise AuthenticationFailed(
                f"tradovate refused the login of user {self.settings.username!r}: {message or 'no access token'}"
            )
        self._set_token(data, what)

    async def renew(self) -> None:
        what = "tradovate token renewal"
        try:
            data = await self.call("GET", "/auth/renewaccesstoken", what=what, auth=False)
        except AuthenticationFailed:  # already expired: only a new login helps
            data = None
        if isinstance(data, dict) and data.get("accessToken") and not data.get("errorText"):
            self._set_token(data, what)
        else:
            await self.login()

    def _renew_due(self) -> bool:
        if self.token is None or self._token_at is None:
            return True
        now = self.clock()
        if now >= self._token_at + timedelta(seconds=self.settings.token_renew_seconds):
            return True
        return self._token_expires is not None and now >= self._token_expires - EXPIRY_MARGIN

    async def ensure_token(self) -> None:
        if not self._renew_due():
            return
        async with self._lock:
            if self._renew_due():
                await (self.login() if self.token is None else self.renew())

    async def _reauthenticate(self) -> bool:
        """The 401 hook of `self.http`: log in again unless another task already did."""
        stale = self.token
        async with self._lock:
            if self.token == stale:
                self.token = None
                await self.login()
        return True

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        safe: bool | None = None,
        what: str,
        not_found: type[BrokerError] = OrderNotFound,
        auth: bool = True,
    ) -> Any:
        """One logical call: token first, then send; p-ticket answers are waited out and resent with the ticket.

        A p-ticket answer means the request was not processed, so resending is safe even for placements.
        TODO(http.py): this loop could become a response hook of HttpBroker.
        """
        http = self.http if auth else self.auth_http
        if auth:
            await self.ensure_token()
        wait = 0.0
        for _ in range(MAX_TICKETS + 1):
            response = await http.request(method, path, params=params, json=json, safe=safe, what=what,
                                          not_found=not_found)
            data = decode(response, what)
            if not (isinstance(data, dict) and "p-ticket" in data):
                return data
            ticket, wait = str(data["p-ticket"]), float(data.get("p-time") or 0)
            if data.get("p-captcha"):
                raise BrokerUnavailable(f"{what}: Tradovate demands a captcha (too many requests or logins); "
                                        "log in once on the Tradovate web site to clear it")
            if wait > http.retry.max_retry_after:
                raise Throttled(f"{what}: Tradovate throttled us for {wait:g}s (p-ticket)", wait)
            log.info("%s: throttled by Tradovate, retrying with its p-ticket in %.1fs", what, wait)
            await self._sleep(wait + TICKET_MARGIN)
            if method.upper() == "GET":
                params = {**(params or {}), "p-ticket": ticket}
            else:
                json = {**(json or {}), "p-ticket": ticket}
        raise Throttled(f"{what}: still throttled after {MAX_TICKETS} p-tickets", wait)

    async def get(self, path: str, what: str, not_found: type[BrokerError] = OrderNotFound, **params: Any) -> Any:
        return await self.call("GET", path, params=params or None, what=what, not_found=not_found)
