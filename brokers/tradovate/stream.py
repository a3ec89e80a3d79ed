"""Tradovate real-time user stream (websocket `user/syncrequest` props events), mixed into `TradovateBroker`.

Protocol (`wss://<host>/v1/websocket`, derived from `base_url`): the server opens with `o`; the client sends
`authorize\\n0\\n\\n<accessToken>` and is answered `a[{"s":200,"i":0}]` (any other `s` is a refusal); the
client then sends `user/syncrequest\\n1\\n\\n{"users":[<userId>]}` (the id comes with the access token) and
the server pushes `a[{"e":"props","d":{"entityType","eventType","entity"}}]` frames. The server beats `h`;
the client sends `[]` every `heartbeat` seconds (2.5 by default). `c[code,"reason"]` announces a close.

`TradovateStreaming` turns `order`, `fill`, `orderVersion` and `command` events into the same reports the
poller makes, through the same `brokers.updates.ReportGate`: a fill is named by Tradovate's own fill `id`
(as `/fill/list` names it), so stream, poller and reconciliation agree and each fill reaches the engine
once; an order's status only moves forward. Events of other accounts of the same user are ignored. When
the session's token changes (renewal, re-login) the stream reconnects and authorizes with the new one. The
poller stays on as the safety net: `stream_poll_factor` times slower while the stream is up, woken at once
when it goes down or comes back (catch-up).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, StreamClosed, receive_text, ws_url
from brokers.tradovate.models import M, TvCommand, TvFill, TvOrder, TvOrderVersion, order_state, parse
from brokers.tradovate.session import TradovateSession
from brokers.updates import ReportGate
from config.brokers import TradovateSettings
from daemon.domain import Fill, Order, OrderStatus

log = logging.getLogger(__name__)

AUTHORIZE_ID, SYNC_ID = 0, 1


def request_frame(endpoint: str, request_id: int, body: str = "") -> str:
    """A websocket request: `endpoint\\nid\\n\\nbody` (query line left empty)."""
    return f"{endpoint}\n{request_id}\n\n{body}"


def parse_frame(text: str) -> tuple[str, list[Any]]:
    """(`o`|`h`|`a`|`c`, payload) of a server frame; `a` carries a list of responses and events."""
    kind, rest = text[:1], text[1:]
    if kind in ("a", "c") and rest:
        payload = json.loads(rest, parse_float=Decimal)
        return kind, payload if isinstance(payload, list) else [payload]
    return kind, []


async def await_response(ws: Socket, request_id: int, within: float) -> dict[str, Any]:
    """The answer `{"s", "i", "d"?}` to request `request_id`, skipping heartbeats and early events."""
    while True:
        kind, payload = parse_frame(await receive_text(ws, within))
        if kind == "c":
            raise StreamClosed(f"tradovate closed the stream: {payload}"[:200])
        for item in payload if kind == "a" else []:
            if isinstance(item, dict) and item.get("i") == request_id:
                return item


class TradovateStreaming:
    """The stream half of `TradovateBroker` (see the module docstring); the host provides the REST half."""

    account: str
    account_id: int | None
    settings: TradovateSettings
    session: TradovateSession
    reports: ReportGate
    _versions: dict[int, TvOrderVersion]
    _clordids: dict[int, str]

    if TYPE_CHECKING:  # provided by TradovateBroker
        async def _list(self, model: type[M], path: str, what: str, **params: Any) -> list[M]: ...
        async def _to_order(self, raw: TvOrder, fills: list[TvFill]) -> Order: ...
        async def _fill(self, raw: TvFill) -> Fill: ...
        def _learn_commands(self, commands: Iterable[TvCommand]) -> None: ...

    def _init_stream(self, name: str, backoff: Backoff | None, heartbeat: float, wake: Callable[[], None]
                     ) -> StreamClient | None:
        """The user stream (None when `stream` is off); `wake` hears it go up or down."""
        s = self.settings
        self._order_accounts: dict[int, int] = {}  # order id -> account id (fills carry no account)
        self._raw_orders: dict[int, TvOrder] = {}  # this account's orders, latest view
        self._order_fills: dict[int, dict[int, TvFill]] = {}  # order id -> fill id -> fill
        self._stream_token: str | None = None
        if not s.stream:
            return None
        return StreamClient(
            name, lambda: s.stream_url or ws_url(s.base_url, "/websocket"),
            authenticate=self._stream_auth, on_message=self._on_stream, heartbeat=self._stream_beat,
            heartbeat_interval=heartbeat, idle_timeout=max(15.0, 6 * heartbeat),
            connect_timeout=s.timeout_seconds, backoff=backoff, on_up=wake, on_down=wake,
        )

    # -- shared reporting --------------------------------------------------------------------------------

    def _learn(self, orders: Iterable[TvOrder], fills: Iterable[TvFill]) -> None:
        """Remember orders (this account's) and their fills, from a poll or from the stream."""
        for order in orders:
            self._order_accounts[order.id] = order.accountId
            if order.accountId == self.account_id:
                self._raw_orders[order.id] = order
        for fill in fills:
            self._order_fills.setdefault(fill.orderId, {})[fill.id] = fill

    def _fills_of(self, order_id: int) -> list[TvFill]:
        return [f for f in self._order_fills.get(order_id, {}).values() if f.active]

    # -- stream ------------------------------------------------------------------------------------------

    async def _stream_auth(self, ws: Socket) -> None:
        within = self.settings.timeout_seconds
        kind, _ = parse_frame(await receive_text(ws, within))
        if kind != "o":
            raise StreamClosed(f"tradovate stream did not open (first frame {kind!r})")
        await self.session.ensure_token()
        token = self.session.token
        if token is None:
            raise StreamAuthFailed("tradovate: no access token for the stream")
        await ws.send_str(request_frame("authorize", AUTHORIZE_ID, token))
        answer = await await_response(ws, AUTHORIZE_ID, within)
        if answer.get("s") != 200:
            raise StreamAuthFailed(f"tradovate refused the stream token: {answer.get('s')} {answer.get('d') or ''}"
                                   .strip()[:200])
        self._stream_token = token
        if self.session.user_id is None:
            raise StreamAuthFailed("tradovate: the access token answer carried no userId to subscribe to")
        await ws.send_str(request_frame("user/syncrequest", SYNC_ID, json.dumps({"users": [self.session.user_id]})))
        answer = await await_response(ws, SYNC_ID, within)
        if answer.get("s") != 200:
            raise StreamAuthFailed(f"tradovate refused the user sync: {answer.get('s')} {answer.get('d') or ''}"
                                   .strip()[:200])
        # the sync answer is a snapshot of everything; what happened while we were away is the poller's catch-up

    async def _stream_beat(self, ws: Socket) -> None:
        """Tradovate's heartbeat `[]`; a renewed token makes the stream reconnect and authorize with it."""
        await ws.send_str("[]")
        if self.session.token is not None and self.session.token != self._stream_token:
            log.info("tradovate %s: access token renewed; re-authorizing the stream", self.account)
            self._stream_token = self.session.token
            await ws.close()

    async def _on_stream(self, text: str) -> None:
        kind, payload = parse_frame(text)
        if kind == "c":
            log.warning("tradovate %s: stream closing: %s", self.account, str(payload)[:200])
        if kind != "a":
            return
        for item in payload:
            if not isinstance(item, dict):
                continue
            if item.get("e") == "props" and isinstance(item.get("d"), dict):
                await self._on_props(item["d"])
            elif item.get("e") == "shutdown":
                log.warning("tradovate %s: stream shutdown notice: %s", self.account, str(item.get("d"))[:200])

    async def _on_props(self, data: dict[str, Any]) -> None:
        kind, event, entity = data.get("entityType"), data.get("eventType"), data.get("entity")
        if not isinstance(entity, dict):
            return
        what = f"tradovate stream {kind}"
        if kind == "command":
            self._learn_commands([parse(TvCommand, entity, what)])
        elif kind == "orderVersion":
            version = parse(TvOrderVersion, entity, what)
            current = self._versions.get(version.orderId)
            if current is None or version.id >= current.id:
                self._versions[version.orderId] = version
        elif kind == "order" and event != "Deleted":
            await self._stream_order(parse(TvOrder, entity, what))
        elif kind == "fill" and event != "Deleted":
            await self._stream_fill(parse(TvFill, entity, what))

    async def _account_of(self, order_id: int) -> int | None:
        if order_id not in self._order_accounts:
            order = parse(TvOrder, await self.session.get("/order/item", f"tradovate order {order_id}", id=order_id),
                          "tradovate order")
            self._learn([order], [])
        return self._order_accounts.get(order_id)

    async def _details_of(self, order_id: int, *, refresh: bool = False) -> None:
        """Version (qty, type, prices) and clOrdId of one order, when no stream event brought them; with
        `refresh` the version is read again (after a modify)."""
        what = f"tradovate order {order_id}"
        if refresh or order_id not in self._versions:
            versions = await self._list(TvOrderVersion, "/orderVersion/deps", what, masterid=order_id)
            if versions:
                self._versions[order_id] = max(versions, key=lambda v: v.id)
        if order_id not in self._clordids:
            self._learn_commands(await self._list(TvCommand, "/command/deps", what, masterid=order_id))
            self._clordids.setdefault(order_id, "")

    async def _stream_fill(self, raw: TvFill) -> None:
        if str(raw.id) in self.reports.seen_fills or not raw.active:
            return
        if await self._account_of(raw.orderId) != self.account_id:
            return
        self._learn([], [raw])
        await self._details_of(raw.orderId)
        await self.reports.fill(await self._fill(raw))
        order, version = self._raw_orders.get(raw.orderId), self._versions.get(raw.orderId)
        filled = sum(f.qty for f in self._fills_of(raw.orderId))
        if order is not None and version is not None and filled < version.orderQty:  # now partially filled
            await self.reports.order(await self._to_order(order, self._fills_of(order.id)))
        # a fill completing the order is followed by the order's own update (Filled): that one reports it

    async def _stream_order(self, raw: TvOrder) -> None:
        self._learn([raw], [])
        if raw.accountId != self.account_id:
            return
        await self._details_of(raw.id)
        status, filled = order_state(raw, self._fills_of(raw.id))
        version = self._versions.get(raw.id)
        if status is OrderStatus.FILLED and filled < (version.orderQty if version else 1):
            # the order says filled before its fill events arrived (or they were missed): read them
            fills = await self._list(TvFill, "/fill/deps", f"tradovate fills of {raw.id}", masterid=raw.id)
            self._learn([], fills)
            for fill in sorted((f for f in fills if f.active), key=lambda f: (f.timestamp, f.id)):
                await self.reports.fill(await self._fill(fill))
        await self.reports.order(await self._to_order(raw, self._fills_of(raw.id)))
