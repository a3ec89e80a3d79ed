"""How the ProjectX adapter hears about fills and order changes: the real-time user hub, with polling under it.

`SignalRHub` is a minimal client of ASP.NET Core SignalR's JSON hub protocol on the shared reconnecting
websocket loop `brokers.stream.StreamClient` (`skipNegotiation`: straight to the websocket, token as
`?access_token=`): handshake `{"protocol":"json","version":1}` + `\\x1e`, then records terminated by `\\x1e`
(1 invocation, 3 completion, 6 ping, 7 close). Every (re)connect takes the current token and invokes the
subscriptions again; backoff, bounded waits (connect, handshake, silence) and health come from the
StreamClient. `restart()` drops the connection so the next one uses a renewed token.

`ProjectXUpdates` is the half of `ProjectXBroker` that turns what the gateway says into reports: TopstepX's
user hub (`SubscribeAccounts`, `SubscribeOrders/Positions/Trades(accountId)`; the server invokes
`GatewayUserAccount/Order/Position/Trade` with the REST models, bare or wrapped in `{"action", "data"}`) and
the REST poller (`/api/Trade/search`, `/api/Order/searchOpen`). While the hub is down the poller runs at
`poll_interval_seconds` (woken at once when the hub drops); while it is up, at `reconcile_interval_seconds`.
Both paths deliver through one `brokers.updates.ReportGate` keyed by the gateway's trade id (`fill_id`),
so a fill seen by both reaches the engine exactly once. Only the poller advances its search window, so a
fill missed by the hub is still found by the next poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from yarl import URL

from brokers.projectx import models as px
from brokers.stream import Backoff, Socket, StreamClient, StreamClosed, receive_text
from daemon.domain import Fill, Order, OrderStatus

if TYPE_CHECKING:
    from brokers.projectx.contracts import Contracts
    from brokers.projectx.session import ProjectXSession
    from brokers.updates import Feed, ReportGate

log = logging.getLogger(__name__)

RS = "\x1e"  # SignalR record separator
INVOCATION, COMPLETION, PING, CLOSE = 1, 3, 6, 7
LOOKBACK = timedelta(days=7)  # how far back order/fill searches go when no start is known
USER_EVENTS = ("GatewayUserAccount", "GatewayUserOrder", "GatewayUserPosition", "GatewayUserTrade")


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + RS


def decode(text: str) -> list[dict[str, Any]]:
    """The records of one websocket frame; a record that is not a JSON object is skipped (and logged)."""
    out = []
    for record in text.split(RS):
        if not record.strip():
            continue
        try:
            item = json.loads(record)
        except ValueError:
            log.warning("signalr: unreadable record %r", record[:120])
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def hub_url(url: str, token: str) -> str:
    """The hub URL with the token as `access_token` and a websocket scheme."""
    parsed = URL(url)
    scheme = {"http": "ws", "https": "wss"}.get(parsed.scheme, parsed.scheme)
    return str(parsed.with_scheme(scheme).update_query(access_token=token))


class SignalRHub:
    """One SignalR hub on a `brokers.stream.StreamClient`: handshake and subscriptions on every connect."""

    def __init__(
        self, name: str, url: str, token: Callable[[], str | None],
        on_event: Callable[[str, list[Any]], Awaitable[None]],
        subscriptions: Callable[[], Iterable[tuple[str, list[Any]]]], *,
        on_state: Callable[[bool], None] | None = None, backoff: tuple[float, float] = (0.5, 30.0),
        connect_timeout: float = 10.0, keepalive: float = 15.0, server_timeout: float = 30.0,
    ) -> None:
        self.name, self.url = name, url
        self._token, self._on_event, self._subscriptions = token, on_event, subscriptions
        self._on_state = on_state or (lambda up: None)
        self.connect_timeout = connect_timeout
        self.token_in_use: str | None = None
        self._dialing: str | None = None
        self._ids = 0
        self.stream = StreamClient(
            name, self._url, authenticate=self._handshake, on_message=self._on_message, heartbeat=self._ping,
            heartbeat_interval=keepalive, idle_timeout=server_timeout, connect_timeout=connect_timeout,
            backoff=Backoff(initial=backoff[0], maximum=backoff[1]),
            on_up=lambda: self._on_state(True), on_down=lambda: self._on_state(False),
        )

    @property
    def connected(self) -> bool:
        return self.stream.healthy()

    @property
    def connects(self) -> int:
        return self.stream.connects

    @property
    def last_error(self) -> str | None:
        return self.stream.last_error

    def start(self) -> None:
        self.stream.start()

    async def stop(self) -> None:
        await self.stream.stop()

    def restart(self) -> None:
        """Drop the connection; the stream reconnects (with whatever token is current by then)."""
        asyncio.get_running_loop().create_task(self.stream.drop())

    def healthy(self, grace: float) -> bool:
        """Connected, or down for less than `grace` seconds (a reconnect in progress, not a refused login)."""
        return self.stream.within_grace(grace)

    def _url(self) -> str:
        token = self._token()
        if not token:
            raise ValueError("no session token yet")
        self._dialing = token
        return hub_url(self.url, token)

    async def _handshake(self, ws: Socket) -> None:
        await ws.send_str(encode({"protocol": "json", "version": 1}))
        records = decode(await receive_text(ws, self.connect_timeout))
        if not records or records[0].get("error"):
            raise StreamClosed(f"handshake refused: {records[0].get('error') if records else 'empty answer'}")
        for target, arguments in self._subscriptions():
            self._ids += 1
            await ws.send_str(encode({"type": INVOCATION, "invocationId": str(self._ids), "target": target,
                                      "arguments": arguments}))
        self.token_in_use = self._dialing
        for message in records[1:]:  # events that came in the same frame as the handshake answer
            await self._dispatch(message)

    async def _on_message(self, text: str) -> None:
        for message in decode(text):
            if message.get("type") == CLOSE:
                log.warning("%s: closed by the hub: %s", self.name, message.get("error") or "no reason")
                await self.stream.drop()
                return
            await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == INVOCATION and isinstance(message.get("target"), str):
            arguments = message.get("arguments")
            await self._on_event(message["target"], arguments if isinstance(arguments, list) else [])
        elif kind == COMPLETION and message.get("error"):
            log.warning("%s: hub call %s failed: %s", self.name, message.get("invocationId"), message["error"])

    @staticmethod
    async def _ping(ws: Socket) -> None:
        await ws.send_str(encode({"type": PING}))


def hub_payload(arguments: list[Any]) -> dict[str, Any] | None:
    """The model in a user-hub event: the last object argument, unwrapped from `{"action", "data"}`."""
    payload = next((a for a in reversed(arguments) if isinstance(a, dict)), None)
    if payload is not None and isinstance(payload.get("data"), dict):
        return payload["data"]
    return payload


class ProjectXUpdates:
    """Fills and order changes for `ProjectXBroker`: hub events and polling through one exactly-once gate."""

    if TYPE_CHECKING:
        account: str
        account_id: int | None
        clock: Callable[[], datetime]
        poll_interval: float
        reconcile_interval: float
        _hub: SignalRHub | None
        session: ProjectXSession
        contracts: Contracts
        updates: Feed
        reports: ReportGate
        _fills_after: datetime | None
        _created: dict[int, datetime]
        _tags: dict[int, str]

        @property
        def _acct(self) -> int: ...
        async def _search(self, since: datetime | None = None) -> list[px.PxOrder]: ...
        async def _order(self, o: px.PxOrder) -> Order: ...
        async def open_orders(self) -> list[Order]: ...

    # -- polling pace ------------------------------------------------------------------------------------

    def _reconcile_pace(self) -> float:
        """Polling while the hub is up: reconciliation only, no faster than `reconcile_interval`."""
        return max(self.poll_interval, self.reconcile_interval) if self.poll_interval > 0 else self.poll_interval

    def _hub_state(self, up: bool) -> None:
        log.info("projectx %s: user hub %s", self.account, "connected" if up else "down; polling")
        if not up:
            self.updates.wake()

    def _hub_subscriptions(self) -> list[tuple[str, list[Any]]]:
        acct = self._acct
        return [("SubscribeAccounts", []), ("SubscribeOrders", [acct]), ("SubscribePositions", [acct]),
                ("SubscribeTrades", [acct])]

    # -- fills -------------------------------------------------------------------------------------------

    async def _tag_of(self, order_id: int) -> str:
        if order_id not in self._tags:
            for o in await self._search():
                await self._order(o)
            self._tags.setdefault(order_id, "")
        return self._tags[order_id]

    async def _to_fill(self, t: px.PxTrade) -> Fill:
        return px.to_fill(t, account=self.account, symbol=await self.contracts.symbol_of(t.contract_id),
                          client_order_id=await self._tag_of(t.order_id), filled_at=t.created or self.clock())

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        start = since or self.clock() - LOOKBACK
        body = {"accountId": self._acct, "startTimestamp": px.iso(start)}
        answer = await self.session.post("/api/Trade/search", body, px.TradesAnswer, what="projectx trades", safe=True)
        out = []
        for t in answer.trades or []:
            if t.voided or (since is not None and (t.created or self.clock()) < since):
                continue
            out.append(await self._to_fill(t))
        return out

    async def _deliver(self, fill: Fill) -> None:
        """A fill to the engine through the gate (keyed by the gateway's trade id), whichever path saw it."""
        if fill.fill_id in self.reports.seen_fills:
            return
        if (oid := fill.broker_order_id) not in self.reports.known:  # e.g. placed on the platform by hand
            self._created.setdefault(int(oid), fill.filled_at)
            self.reports.known[oid] = (OrderStatus.NEW, Decimal(0))  # open until a report or a poll says otherwise
        await self.reports.fill(fill)

    # -- hub events --------------------------------------------------------------------------------------

    async def _on_hub_event(self, target: str, arguments: list[Any]) -> None:
        payload = hub_payload(arguments)
        if payload is None or target not in ("GatewayUserTrade", "GatewayUserOrder"):
            return  # accounts and positions: read by REST when asked; nothing to report
        if payload.get("accountId") not in (None, self.account_id):
            return
        try:
            if target == "GatewayUserTrade":
                trade = px.PxTrade.model_validate(payload)
                if not trade.voided:
                    await self._deliver(await self._to_fill(trade))
            else:
                await self.reports.order(await self._order(px.PxOrder.model_validate(payload)))
        except ValidationError as exc:
            log.warning("projectx %s: %s not understood (%s); polling will catch up", self.account, target,
                        exc.errors()[0]["msg"] if exc.errors() else exc)

    # -- polling -----------------------------------------------------------------------------------------

    async def poll_once(self) -> None:
        """Push new fills, then order status changes, each exactly once, to the report handler."""
        since = self._fills_after
        for fill in await self.fills(since - timedelta(seconds=5) if since else None):
            if self._fills_after is None or fill.filled_at > self._fills_after:
                self._fills_after = fill.filled_at  # only the poller moves its window: the hub may miss fills
            await self._deliver(fill)
        working = await self.open_orders()
        still_open = {int(o.broker_order_id) for o in working}
        gone = [int(oid) for oid, (status, _) in self.reports.known.items() if status.is_open
                and int(oid) not in still_open]
        updates = list(working)
        if gone:
            start = min(self._created.get(oid, self.clock() - LOOKBACK) for oid in gone)
            finished = [o for o in await self._search(start) if o.id in gone]
            updates += [await self._order(o) for o in finished]
            for oid in set(gone) - {o.id for o in finished}:
                self.reports.known.pop(str(oid), None)  # no longer visible: stop asking
        for order in updates:
            await self.reports.order(order)
