"""Alpaca Trading API v2 adapter (US stocks): orders, brackets, positions, account, fills by stream and polling.

Idempotency: every order carries the engine's `client_order_id`. When a placement's answer is lost
(timeout, connection reset, 5xx, 429) the adapter looks the order up with `/v2/orders:by_client_order_id`
before sending it again, and a 422 "client_order_id must be unique" returns the existing order, so an
order is never placed twice.

Fills and status changes arrive two ways, both started by `connect()` (`brokers.updates.Feed`): the
`trade_updates` websocket (`brokers.alpaca.stream`) and polling of FILL activities and orders, which runs
`stream_poll_factor` times slower while the stream is up (reconciling what it missed), at its normal pace
while it is down, and at once when it comes back. Both paths name a fill `<order id>:<cumulative qty>`
(`fill_key`: activity `order_id` + `cum_qty`, stream `order.id` + `order.filled_qty`); the activity `id`
and the stream's `execution_id` are not documented to match. Whichever path sees a fill first pushes it
(`brokers.updates.ReportGate`). Wire mapping: `brokers.alpaca.models`.

Market data: `bars()` reads stock bars from the data host (`data_url`, same key headers, its own request
budget) through `brokers.alpaca.bars`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from brokers.alpaca import bars as market
from brokers.alpaca import models as ap
from brokers.alpaca.stream import trade_stream
from brokers.base import BrokerBase, BrokerContext, BrokerUnavailable, OrderNotFound, OrderRejected, UnknownSymbol
from brokers.http import HttpBroker, RateLimiter, RetryPolicy, place_once
from brokers.stream import Backoff, ReconnectingStream
from brokers.symbols import is_continuous, normalize
from brokers.updates import Feed, ReportGate
from config.brokers import AlpacaSettings
from daemon.domain import AccountState, Bar, Fill, FlattenReport, Order, OrderRequest, OrderStatus, Position, utcnow

log = logging.getLogger(__name__)
ORDERS_PAGE = 500  # the most GET /v2/orders returns at once


class AlpacaBroker(BrokerBase):
    name = "alpaca"
    native_trailing = frozenset({"order", "order_percent"})  # a bracket's stop leg can only be a plain stop
    STREAM_GRACE = 120.0  # seconds a stream may be down (reconnecting) before healthy() says so

    def __init__(
        self,
        account: str,
        settings: AlpacaSettings,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        retry: RetryPolicy | None = None,
        poll_interval: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stream_backoff: Backoff | None = None,
    ) -> None:
        super().__init__(account)
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval

        def rest(name: str, url: str, client: httpx.AsyncClient | None) -> HttpBroker:
            """A REST client of one Alpaca host (trading, market data): same keys, budget and retries."""
            return HttpBroker(name, url, timeout=settings.timeout_seconds, auth_headers=self._auth_headers,
                              rate_limiter=RateLimiter.per_minute(settings.rate_limit_per_minute),
                              retry=retry or RetryPolicy(retries=settings.max_retries), client=client, sleep=sleep)

        self.http = rest("alpaca", settings.base_url, http)
        self.data = rest("alpaca data", settings.data_url, None)
        self.updates = Feed(f"alpaca {account}", self.poll_once, lambda: self.poll_interval,
                            lambda: self.poll_interval * self.settings.stream_poll_factor)
        if settings.stream:
            self.updates.stream = trade_stream(f"alpaca {account}", settings, self._on_trade_update,
                                               self.updates.wake, stream_backoff)
        self.reports = ReportGate(self.emit)
        self._parents: dict[str, str] = {}  # bracket leg id -> entry id (stream events carry legs alone)
        self._fills_after: datetime | None = None
        self._client_ids: dict[str, str] = {}  # order id -> client order id (activities lack it)
        self._assets: dict[str, bool] = {}

    @property
    def stream(self) -> ReconnectingStream | None:
        return self.updates.stream

    def _auth_headers(self) -> dict[str, str]:
        s = self.settings
        return {"APCA-API-KEY-ID": s.key_id.get_secret_value(), "APCA-API-SECRET-KEY": s.secret_key.get_secret_value()}

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self.http.json("GET", "/v2/account", what="alpaca connect (GET /v2/account)")
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"alpaca is unreachable at {self.settings.base_url}: {exc.reason}") from None
        self._fills_after = self.clock() - timedelta(seconds=1)
        self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.http.aclose()
        await self.data.aclose()

    def healthy(self) -> bool:
        """REST reachable and polling alive; a stream refused (bad keys) or down past the grace period too."""
        return self.http.healthy() and self.updates.healthy(self.STREAM_GRACE)

    async def _on_trade_update(self, data: dict[str, Any]) -> None:
        order = self._order(data["order"])
        fill = ap.stream_fill(data, order, self.clock())
        if fill is not None:
            await self.reports.fill(fill)
        await self.reports.order(order)

    # -- conversion --------------------------------------------------------------------------------------

    def _order(self, data: dict[str, Any], parent: str | None = None) -> Order:
        order_id = str(data["id"])
        if parent is not None:
            self._parents[order_id] = parent
        self._client_ids[order_id] = ap.client_id(data)
        return ap.to_order(data, self.account, parent or self._parents.get(order_id), self.clock())

    def _orders(self, data: dict[str, Any]) -> list[Order]:
        """An order and its bracket legs (nested in `legs`), legs pointing to their entry."""
        parent = self._order(data)
        return [parent] + [self._order(leg, parent.broker_order_id) for leg in data.get("legs") or []]

    # -- orders ------------------------------------------------------------------------------------------

    async def _check_symbol(self, raw: str) -> str:
        if is_continuous(raw):
            raise UnknownSymbol(f"{raw}: Alpaca trades stocks, not futures")
        symbol = normalize(raw)
        if symbol not in self._assets:
            try:
                asset = await self.http.json(
                    "GET", f"/v2/assets/{symbol}", what=f"alpaca asset {symbol}", not_found=UnknownSymbol
                )
            except UnknownSymbol:
                raise UnknownSymbol(f"{symbol} is not an Alpaca asset; nothing was sent") from None
            self._assets[symbol] = bool(asset.get("tradable")) and asset.get("status") == "active"
        if not self._assets[symbol]:
            raise UnknownSymbol(f"{symbol} is not tradable at Alpaca; nothing was sent")
        return symbol

    async def place_order(self, request: OrderRequest) -> Order:
        symbol = await self._check_symbol(request.symbol)
        body = ap.order_body(request, symbol)
        cid = request.client_order_id

        async def send() -> Order:
            try:
                data = await self.http.json(
                    "POST", "/v2/orders", json=body, safe=False, what=f"alpaca place {cid}", forbidden=OrderRejected
                )
            except OrderRejected as exc:
                if "client_order_id" in exc.reason and "unique" in exc.reason:
                    existing = await self.find_order(cid)
                    if existing is not None:
                        return existing
                raise
            orders = self._orders(data)
            self.reports.remember(orders[0])
            for leg in orders[1:]:  # the caller is told of the entry only: the legs are news for the engine
                await self.reports.order(leg)
            return orders[0]

        return await place_once("alpaca", cid, send, lambda: self.find_order(cid), self.http.retry, self._sleep,
                                deadline=request.expires_at, clock=self.clock)

    async def find_order(self, client_order_id: str) -> Order | None:
        try:
            data = await self.http.json(
                "GET",
                "/v2/orders:by_client_order_id",
                params={"client_order_id": client_order_id},
                what=f"alpaca find {client_order_id}",
            )
        except OrderNotFound:
            return None
        return self._order(data)

    async def _get_order(self, broker_order_id: str) -> dict[str, Any]:
        return await self.http.json("GET", f"/v2/orders/{broker_order_id}", what=f"alpaca order {broker_order_id}")

    async def cancel_order(self, broker_order_id: str) -> Order:
        try:
            await self.http.request(
                "DELETE", f"/v2/orders/{broker_order_id}", safe=True, what=f"alpaca cancel {broker_order_id}"
            )
        except OrderRejected:
            pass  # 422: no longer cancelable (filled, cancelled); answer with the order as it is
        return self._order(await self._get_order(broker_order_id))

    async def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order:
        current = self._order(await self._get_order(broker_order_id))
        patch: dict[str, Any] = {"client_order_id": f"{current.client_order_id}-r{uuid.uuid4().hex[:8]}"}
        for key, value in (("qty", quantity), ("limit_price", limit_price), ("stop_price", stop_price)):
            if value is not None:
                patch[key] = str(value)
        data = await self.http.json(
            "PATCH", f"/v2/orders/{broker_order_id}", json=patch, safe=False, what=f"alpaca modify {broker_order_id}"
        )
        order = self._order(data, self._parents.get(broker_order_id))  # a replaced leg stays in its bracket
        self.reports.remember(order)
        return order

    async def open_orders(self) -> list[Order]:
        data = await self.http.json(
            "GET", "/v2/orders", params={"status": "open", "limit": 500, "nested": "true"}, what="alpaca open orders"
        )
        return [o for item in data for o in self._orders(item) if o.status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        return [ap.to_position(p, self.account) for p in await self.http.json("GET", "/v2/positions",
                                                                             what="alpaca positions")]

    async def account_state(self) -> AccountState:
        data = await self.http.json("GET", "/v2/account", what="alpaca account")
        return ap.to_account_state(data, self.account, self.name, self.clock())

    async def _client_id_of(self, order_id: str) -> str:
        if order_id not in self._client_ids:
            try:
                self._order(await self._get_order(order_id))
            except OrderNotFound:
                self._client_ids[order_id] = ""
        return self._client_ids[order_id]

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        params: dict[str, Any] = {"direction": "asc", "page_size": 100}
        if since is not None:
            params["after"] = ap.iso(since)
        out: list[Fill] = []
        for _ in range(50):  # at most 5000 fills per call
            page = await self.http.json("GET", "/v2/account/activities/FILL", params=params, what="alpaca fills")
            for a in page:
                filled_at = ap.parse_time(a.get("transaction_time")) or self.clock()
                if since is None or filled_at >= since:
                    client_order_id = await self._client_id_of(str(a["order_id"]))
                    out.append(ap.activity_fill(a, self.account, client_order_id, filled_at))
            if len(page) < params["page_size"]:
                break
            params["page_token"] = page[-1]["id"]
        return out

    async def close_position(self, symbol: str) -> Order | None:
        symbol = normalize(symbol)
        try:
            data = await self.http.json(
                "DELETE", f"/v2/positions/{symbol}", safe=False, what=f"alpaca close {symbol}", forbidden=OrderRejected
            )
        except OrderNotFound:
            return None
        return self._order(data)

    async def flatten(self) -> FlattenReport:
        cancelled = await self.open_orders()
        data = await self.http.json(
            "DELETE", "/v2/positions", params={"cancel_orders": "true"}, safe=False, what="alpaca flatten"
        )
        closing, errors = [], []
        for entry in data or []:
            if entry.get("status") == 200 and entry.get("body"):
                closing.append(self._order(entry["body"]))
            else:
                message = (entry.get("body") or {}).get("message", "no detail")
                errors.append(f"{entry.get('symbol')}: HTTP {entry.get('status')}: {message}")
        return FlattenReport(
            account=self.account,
            cancelled=[o.model_copy(update={"status": OrderStatus.CANCELLED}) for o in cancelled],
            closing=closing,
            errors=errors,
        )

    # -- market data -------------------------------------------------------------------------------------

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]:
        """Closed bars of `timeframe_seconds` starting in [start, end), oldest first, from the data API."""
        market.timeframe_of(timeframe_seconds)  # refuse a length Alpaca cannot serve before any request
        wire = await self._check_symbol(symbol)

        async def get(params: Any) -> Any:
            return await self.data.json("GET", "/v2/stocks/bars", params=params, what=f"alpaca bars {wire}")

        return await market.fetch_bars(get, wire, symbol, timeframe_seconds, start, end, self.clock(),
                                       feed=self.settings.data_feed, adjustment=self.settings.data_adjustment)

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills and order status changes (each exactly once) to the report handler."""
        since = self._fills_after
        for fill in await self.fills(since - timedelta(seconds=2) if since else None):
            await self.reports.fill(fill)
            if self._fills_after is None or fill.filled_at > self._fills_after:
                self._fills_after = fill.filled_at
        params = {"status": "all", "limit": ORDERS_PAGE, "direction": "asc", "nested": "true"}
        if since is not None:
            params["after"] = ap.iso(since - timedelta(minutes=5))
        for _ in range(20):  # a page is the oldest 500 after `after`: the newest changes are on the last one
            data = await self.http.json("GET", "/v2/orders", params=params, what="alpaca order updates")
            for item in data:
                for order in self._orders(item):
                    await self.reports.order(order)
            if len(data) < ORDERS_PAGE or not data[-1].get("submitted_at"):
                break
            params["after"] = str(data[-1]["submitted_at"])


def build(account: str, settings: AlpacaSettings, context: BrokerContext) -> AlpacaBroker:
    """The registry's factory (Alpaca's own clock stamps its fills)."""
    return AlpacaBroker(account, settings)
