"""Websocket part of the Tradovate stand-in: `/v1/websocket` with authorize, user/syncrequest and props events.

The server opens with `o`, expects `authorize\\n0\\n\\n<accessToken>` (a token the REST stand-in issued and
that has not expired) and answers `a[{"s":200,"i":0}]`, or `a[{"s":401,"i":0,"d":"Access is denied"}]` and
closes. `user/syncrequest\\n<i>\\n\\n{"users":[<userId>]}` is answered with a (small) snapshot and subscribes
the connection: from then on every entity change the stand-in publishes reaches it as
`a[{"e":"props","d":{"entityType","eventType","entity"}}]`. The server beats `h` every `heartbeat`
seconds and counts the client's `[]`; with `client_timeout` set, a client silent that long is closed.
Like the real service nothing is replayed: an event published while a client is away is lost to it.
Knobs: `refuse` (handshake answered 503), `reject_auth`, `drop_all()`, `fills_after_orders` (a fill event
is held back until after the next order event: the order's Filled update overtakes its fill); records `connections`,
`authorized` (tokens accepted, in order), `heartbeats`, `published`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.standins.faults import dumps

PATH = "/v1/websocket"


class TradovateStream:
    def __init__(self, token_valid: Callable[[str], bool], user_id: int,
                 snapshot: Callable[[], dict[str, Any]] | None = None) -> None:
        self.token_valid, self.user_id = token_valid, user_id
        self.snapshot = snapshot or dict
        self.refuse = False
        self.reject_auth = False
        self.heartbeat = 2.5
        self.client_timeout: float | None = None
        self.fills_after_orders = False
        self._held: list[tuple[str, str, dict[str, Any]]] = []
        self.connections = 0  # handshakes accepted
        self.authorized: list[str] = []
        self.heartbeats = 0  # `[]` frames received
        self.published: list[dict[str, Any]] = []
        self._subscribed: dict[web.WebSocketResponse, asyncio.Queue[str | None]] = {}
        self._open: dict[web.WebSocketResponse, asyncio.Queue[str | None]] = {}

    def attach(self, app: web.Application) -> None:
        app.router.add_get(PATH, self._handle)

    @property
    def listening(self) -> int:
        return len(self._subscribed)

    def publish(self, entity_type: str, event_type: str, entity: dict[str, Any]) -> None:
        """Push one entity change to every subscribed client."""
        if self.fills_after_orders and entity_type == "fill":
            self._held.append((entity_type, event_type, entity))
            return
        data = {"entityType": entity_type, "eventType": event_type, "entity": entity}
        self.published.append(data)
        frame = "a" + dumps([{"e": "props", "d": data}])
        for queue in self._subscribed.values():
            queue.put_nowait(frame)
        if entity_type == "order" and self._held:
            held, self._held, self.fills_after_orders = self._held, [], False
            for item in held:
                self.publish(*item)
            self.fills_after_orders = True

    async def drop_all(self) -> None:
        """Close every client's connection (server side)."""
        for queue in self._open.values():
            queue.put_nowait(None)
        for _ in range(100):
            if not self._open:
                return
            await asyncio.sleep(0.01)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        out: asyncio.Queue[str | None] = asyncio.Queue()
        self._open[ws] = out
        writer = asyncio.create_task(self._write(ws, out))
        beater = asyncio.create_task(self._beat(out))
        out.put_nowait("o")
        try:
            await self._read(ws, out)
        finally:
            self._subscribed.pop(ws, None)
            self._open.pop(ws, None)
            out.put_nowait(None)
            beater.cancel()
            for task in (beater, writer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 2.0)
            await ws.close()
        return ws

    async def _write(self, ws: web.WebSocketResponse, out: asyncio.Queue[str | None]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while (frame := await out.get()) is not None:
                await ws.send_str(frame)
        await ws.close()  # ends the reader too

    async def _beat(self, out: asyncio.Queue[str | None]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            out.put_nowait("h")

    async def _read(self, ws: web.WebSocketResponse, out: asyncio.Queue[str | None]) -> None:
        authorized = False
        while True:
            try:
                msg = await ws.receive(timeout=self.client_timeout if authorized else 5.0)
            except TimeoutError:
                return  # a silent client is dropped
            if msg.type is not WSMsgType.TEXT:
                return
            text = str(msg.data)
            if text == "[]":
                self.heartbeats += 1
                continue
            endpoint, _, rest = text.partition("\n")
            request_id, _, rest = rest.partition("\n")
            _, _, body = rest.partition("\n")
            if not request_id.isdigit():
                continue
            rid = int(request_id)
            if endpoint == "authorize":
                if self.reject_auth or not self.token_valid(body):
                    out.put_nowait("a" + json.dumps([{"s": 401, "i": rid, "d": "Access is denied"}]))
                    out.put_nowait(None)
                    return
                authorized = True
                self.authorized.append(body)
                out.put_nowait("a" + json.dumps([{"s": 200, "i": rid}]))
            elif not authorized:
                out.put_nowait("a" + json.dumps([{"s": 401, "i": rid, "d": "Not authorized"}]))
            elif endpoint == "user/syncrequest":
                try:
                    users = json.loads(body).get("users") or []
                except (ValueError, AttributeError):
                    users = []
                if users != [self.user_id]:
                    out.put_nowait("a" + json.dumps([{"s": 404, "i": rid, "d": f"Unknown users {users}"}]))
                    continue
                out.put_nowait("a" + dumps([{"s": 200, "i": rid, "d": self.snapshot()}]))
                self._subscribed[ws] = out
            else:
                out.put_nowait("a" + json.dumps([{"s": 404, "i": rid, "d": f"Unknown operation {endpoint}"}]))
