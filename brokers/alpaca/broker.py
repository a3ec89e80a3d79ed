"""Alpaca Trading API v2 adapter (US stocks): orders, brackets, positions, account, fills by stream and polling.

Idempotency: every order carries the engine's `client_order_id`. When a placement's answer is lost
(timeout, connection reset, 5xx, 429) the adapter looks the order up with `/v2/orders:by_client_order_id`
before sending it again, and a 422 "client_order_id must be unique" returns the existing order, so an
order is never placed twice.

Fills and status changes arrive two ways, both started by `connect()`: the `trade_updates` websocket
(`brokers.stream.StreamClient`, `wss://<host>/stream`) and polling of FILL activities and orders, which runs
`stream_poll_factor` times slower while the stream is up (reconciling what it missed), at its normal pace
while it is down, and at once when it comes back. Both paths name a fill `<order id>:<cumulative qty>`
(`fill_key`: activity `order_id` + `cum_qty`, stream `order.id` + `order.filled_qty`); the activity `id`
and the stream's `execution_id` are not documented to match. Whichever path sees a fill first pushes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from brokers.base import (
    BrokerBase,
    BrokerReport,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    UnknownSymbol,
)
from brokers.http import HttpBroker, Poller, RateLimiter, RetryPolicy, place_once
from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, receive_text, ws_url
from brokers.symbols import is_continuous, normalize
from config.brokers import AlpacaSettings
from daemon.domain import (
    AccountState,
    Fill,
    FlattenReport,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    utcnow,
)

log = logging.getLogger(__name__)

_STATUS = {
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "replaced": OrderStatus.CANCELLED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
    "suspended": OrderStatus.REJECTED,
}  # everything else (new, accepted, pending_*, held, done_for_day, ...) is a resting order
_TYPES = {"limit": OrderType.LIMIT, "stop": OrderType.STOP, "stop_limit": OrderType.STOP_LIMIT}
_TIF = {t.value: t for t in TimeInForce}
_REPLACE_SUFFIX = re.compile(r"-r[0-9a-f]{8}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str | None) -> datetime | None:
    """Alpaca timestamps (RFC 3339, up to nanoseconds, `Z`) as aware datetimes."""
    if not value:
        return None
    parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dec(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fill_key(order_id: str, cumulative_qty: Decimal) -> str:
    """The fill id both the stream and the activities can name: order id + cumulative quantity after it."""
    return f"{order_id}:{cumulative_qty.normalize():f}"


class AlpacaBroker(BrokerBase):
    name = "alpaca"
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
        self.http = HttpBroker(
            "alpaca",
            settings.base_url,
            timeout=settings.timeout_seconds,
            auth_headers=self._auth_headers,
            rate_limiter=RateLimiter.per_minute(settings.rate_limit_per_minute),
            retry=retry or RetryPolicy(retries=settings.max_retries),
            client=http,
            sleep=sleep,
        )
        self._poller = Poller(f"alpaca {account}", self.poll_once, self._poll_pace)
        self.stream: StreamClient | None = None
        if settings.stream:
            self.stream = StreamClient(
                f"alpaca {account}", lambda: settings.stream_url or ws_url(settings.base_url, "/stream"),
                authenticate=self._stream_auth, on_message=self._on_stream, ws_heartbeat=20.0,
                idle_timeout=300.0, connect_timeout=settings.timeout_seconds, backoff=stream_backoff,
                on_up=self._poller.wake, on_down=self._poller.wake,
            )
        self._report_lock = asyncio.Lock()
        self._parents: dict[str, str] = {}  # bracket leg id -> entry id (stream events carry legs alone)
        self._seen_fills: set[str] = set()
        self._fills_after: datetime | None = None
        self._known: dict[str, tuple[OrderStatus, Decimal]] = {}  # order id -> last reported state
        self._client_ids: dict[str, str] = {}  # order id -> client order id (activities lack it)
        self._assets: dict[str, bool] = {}

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
        self._poller.start()
        if self.stream is not None:
            self.stream.start()

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.stop()
        await self._poller.stop()
        await self.http.aclose()

    def healthy(self) -> bool:
        """REST reachable and polling alive; a stream refused (bad keys) or down past the grace period too."""
        stream_ok = self.stream is None or self.stream.within_grace(self.STREAM_GRACE)
        return self.http.healthy() and self._poller.healthy() and stream_ok

    def _poll_pace(self) -> float:
        up = self.stream is not None and self.stream.healthy()
        return self.poll_interval * (self.settings.stream_poll_factor if up else 1)

    # -- stream ------------------------------------------------------------------------------------------

    async def _stream_auth(self, ws: Socket) -> None:
        s = self.settings
        await ws.send_str(json.dumps({"action": "authenticate", "data": {
            "key_id": s.key_id.get_secret_value(), "secret_key": s.secret_key.get_secret_value()}}))
        answer = json.loads(await receive_text(ws, s.timeout_seconds))
        data = answer.get("data") or {}
        if answer.get("stream") != "authorization" or data.get("status") != "authorized":
            raise StreamAuthFailed(f"alpaca refused the stream keys: {data.get('status') or answer}"[:200])
        await ws.send_str(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        while (ack := json.loads(await receive_text(ws, s.timeout_seconds))).get("stream") != "listening":
            continue
        if "trade_updates" not in ((ack.get("data") or {}).get("streams") or []):
            raise StreamAuthFailed(f"alpaca did not grant the trade_updates stream: {ack}"[:200])

    async def _on_stream(self, text: str) -> None:
        message = json.loads(text)
        if not isinstance(message, dict) or message.get("stream") != "trade_updates":
            return
        data = message["data"]
        order = self._order(data["order"])
        if data.get("event") in ("fill", "partial_fill") and data.get("qty") and data.get("price"):
            fill = Fill(fill_id=fill_key(order.broker_order_id, order.filled_quantity),
                        broker_order_id=order.broker_order_id, client_order_id=order.client_order_id,
                        account=self.account, symbol=order.symbol, side=order.side, quantity=Decimal(str(data["qty"])),
                        price=Decimal(str(data["price"])), filled_at=parse_time(data.get("timestamp")) or self.clock())
            await self._report_fill(fill)
        await self._report_order(order)

    async def _report_fill(self, fill: Fill) -> None:
        """Push a fill unless the stream or the poller already did (marked after the handler took it)."""
        async with self._report_lock:
            if fill.fill_id in self._seen_fills:
                return
            await self.emit(BrokerReport(fill=fill))
            self._seen_fills.add(fill.fill_id)

    async def _report_order(self, order: Order) -> None:
        """Push a status change once; an older view (a poll that raced the stream) never moves it back."""
        async with self._report_lock:
            known = self._known.get(order.broker_order_id)
            state = (order.status, order.filled_quantity)
            if known == state or (known is not None and (
                    order.filled_quantity < known[1] or (not known[0].is_open and order.status.is_open))):
                return
            self._known[order.broker_order_id] = state
            await self.emit(BrokerReport(order=order))

    # -- conversion --------------------------------------------------------------------------------------

    def _order(self, data: dict[str, Any], parent: str | None = None) -> Order:
        order_id = str(data["id"])
        if parent is not None:
            self._parents[order_id] = parent
        parent = parent or self._parents.get(order_id)
        client_id = _REPLACE_SUFFIX.sub("", str(data.get("client_order_id") or ""))
        self._client_ids[order_id] = client_id
        created = parse_time(data.get("created_at")) or self.clock()
        return Order(
            broker_order_id=order_id,
            client_order_id=client_id,
            account=self.account,
            symbol=str(data.get("symbol") or ""),
            side=Side(data.get("side", "buy")),
            quantity=_dec(data.get("qty")) or Decimal(0),
            order_type=_TYPES.get(str(data.get("type")), OrderType.MARKET)
            if data.get("type") != "trailing_stop"
            else OrderType.STOP,
            status=_STATUS.get(str(data.get("status")), OrderStatus.NEW),
            filled_quantity=_dec(data.get("filled_qty")) or Decimal(0),
            average_fill_price=_dec(data.get("filled_avg_price")),
            limit_price=_dec(data.get("limit_price")),
            stop_price=_dec(data.get("stop_price")),
            time_in_force=_TIF.get(str(data.get("time_in_force")), TimeInForce.DAY),
            parent_order_id=parent,
            oco_group=parent if parent and data.get("order_class") in ("bracket", "oco") else None,
            created_at=created,
            updated_at=parse_time(data.get("updated_at")) or created,
        )

    def _orders(self, data: dict[str, Any]) -> list[Order]:
        """An order and its bracket legs (nested in `legs`), legs pointing to their entry."""
        parent = self._order(data)
        return [parent] + [self._order(leg, parent.broker_order_id) for leg in data.get("legs") or []]

    def _remember(self, order: Order) -> None:
        self._known[order.broker_order_id] = (order.status, order.filled_quantity)

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

    def _order_body(self, request: OrderRequest, symbol: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "symbol": symbol,
            "qty": str(request.quantity),
            "side": request.side.value,
            "type": request.order_type.value,
            "time_in_force": request.time_in_force.value,
            "client_order_id": request.client_order_id,
        }
        if request.limit_price is not None:
            body["limit_price"] = str(request.limit_price)
        if request.stop_price is not None:
            body["stop_price"] = str(request.stop_price)
        if request.take_profit is not None or request.stop_loss is not None:
            both = request.take_profit is not None and request.stop_loss is not None
            body["order_class"] = "bracket" if both else "oto"
            if request.take_profit is not None:
                body["take_profit"] = {"limit_price": str(request.take_profit)}
            if request.stop_loss is not None:
                body["stop_loss"] = {"stop_price": str(request.stop_loss)}
        return body

    async def place_order(self, request: OrderRequest) -> Order:
        symbol = await self._check_symbol(request.symbol)
        body = self._order_body(request, symbol)
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
            for order in orders:
                self._remember(order)
            return orders[0]

        return await place_once("alpaca", cid, send, lambda: self.find_order(cid), self.http.retry, self._sleep)

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
        order = self._order(data)
        self._remember(order)
        return order

    async def open_orders(self) -> list[Order]:
        data = await self.http.json(
            "GET", "/v2/orders", params={"status": "open", "limit": 500, "nested": "true"}, what="alpaca open orders"
        )
        return [o for item in data for o in self._orders(item) if o.status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        data = await self.http.json("GET", "/v2/positions", what="alpaca positions")
        return [
            Position(
                account=self.account,
                symbol=p["symbol"],
                quantity=Decimal(p["qty"]),
                average_price=Decimal(p["avg_entry_price"]),
                market_price=_dec(p.get("current_price")),
                unrealized_pnl=_dec(p.get("unrealized_pl")) or Decimal(0),
            )
            for p in data
        ]

    async def account_state(self) -> AccountState:
        a = await self.http.json("GET", "/v2/account", what="alpaca account")
        equity = Decimal(a.get("equity") or a.get("portfolio_value") or "0")
        return AccountState(
            account=self.account,
            broker=self.name,
            currency=a.get("currency") or "USD",
            cash=Decimal(a.get("cash") or "0"),
            equity=equity,
            buying_power=_dec(a.get("buying_power")),
            day_trading_buying_power=_dec(a.get("daytrading_buying_power")),
            prior_close_equity=_dec(a.get("last_equity")),
            maintenance_margin=_dec(a.get("last_maintenance_margin")),
            fees=_dec(a.get("accrued_fees")) or Decimal(0),
            as_of=self.clock(),
        )

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
            params["after"] = _iso(since)
        out: list[Fill] = []
        for _ in range(50):  # at most 5000 fills per call
            page = await self.http.json("GET", "/v2/account/activities/FILL", params=params, what="alpaca fills")
            for a in page:
                filled_at = parse_time(a.get("transaction_time")) or self.clock()
                if since is not None and filled_at < since:
                    continue
                order_id = str(a["order_id"])
                cumulative = _dec(a.get("cum_qty"))
                out.append(
                    Fill(
                        fill_id=fill_key(order_id, cumulative) if cumulative is not None else str(a["id"]),
                        broker_order_id=str(a["order_id"]),
                        client_order_id=await self._client_id_of(str(a["order_id"])),
                        account=self.account,
                        symbol=a["symbol"],
                        side=Side(a["side"].split("_")[0]),
                        quantity=Decimal(a["qty"]),
                        price=Decimal(a["price"]),
                        filled_at=filled_at,
                    )
                )
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

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills and order status changes (each exactly once) to the report handler."""
        since = self._fills_after
        for fill in await self.fills(since - timedelta(seconds=2) if since else None):
            await self._report_fill(fill)
            if self._fills_after is None or fill.filled_at > self._fills_after:
                self._fills_after = fill.filled_at
        params = {"status": "all", "limit": 500, "direction": "asc", "nested": "true"}
        if since is not None:
            params["after"] = _iso(since - timedelta(minutes=5))
        data = await self.http.json("GET", "/v2/orders", params=params, what="alpaca order updates")
        for item in data:
            for order in self._orders(item):
                await self._report_order(order)

