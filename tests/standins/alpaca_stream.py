"""Websocket part of the Alpaca stand-in: the `trade_updates` stream at `/stream`, as Alpaca documents it.

A client authenticates (`{"action":"authenticate","data":{"key_id","secret_key"}}`, or the newer
`{"action":"auth","key","secret"}`), is answered on the `authorization` stream (`authorized` or
`unauthorized`, then closed), sends `{"action":"listen","data":{"streams":["trade_updates"]}}` and is
acknowledged on `listening`. From then on it receives every order event the stand-in publishes
(`new`, `fill`, `partial_fill`, `canceled`), in binary frames like the paper endpoint (`binary=False` for
text). Like the real service, nothing is replayed: an event published while a client is away is lost to it.
Knobs: `refuse` (handshake answered 503), `reject_auth`, `drop_all()`, `connections`, `published`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web


class AlpacaStream:
    def __init__(self, key_id: str, secret_key: str, *, binary: bool = True) -> None:
        self.key_id, self.secret_key, self.binary = key_id, secret_key, binary
        self.refuse = False
        self.reject_auth = False
        self.connections = 0  # handshakes accepted
        self.published: list[dict[str, Any]] = []
        self._listeners: dict[web.WebSocketResponse, asyncio.Queue[dict[str, Any] | None]] = {}

    def attach(self, app: web.Application) -> None:
        app.router.add_get("/stream", self._handle)

    @property
    def listening(self) -> int:
        return len(self._listeners)

    def publish(self, event: str, order: dict[str, Any], **extra: Any) -> None:
        """Send one trade update (the order as it is now) to every listening client."""
        data = {"event": event, "order": order, "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        if event in ("fill", "partial_fill"):
            data["execution_id"] = str(uuid.uuid4())
        data.update({k: v for k, v in extra.items() if v is not None})
        message = {"stream": "trade_updates", "data": data}
        self.published.append(message)
        for queue in self._listeners.values():
            queue.put_nowait(message)

    async def drop_all(self) -> None:
        """Close every client's connection (server side)."""
        for queue in self._listeners.values():
            queue.put_nowait(None)
        for _ in range(100):
            if not self._listeners:
                return
            await asyncio.sleep(0.01)

    async def _send(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        text = json.dumps(message)
        await (ws.send_bytes(text.encode()) if self.binary else ws.send_str(text))

    async def _receive(self, ws: web.WebSocketResponse) -> dict[str, Any] | None:
        try:
            msg = await ws.receive(timeout=5)
        except TimeoutError:
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        raw = msg.data if isinstance(msg.data, str) else bytes(msg.data).decode()
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _authorized(self, msg: dict[str, Any]) -> bool:
        if msg.get("action") == "authenticate":
            data = msg.get("data") or {}
            key, secret = data.get("key_id"), data.get("secret_key")
        elif msg.get("action") == "auth":
            key, secret = msg.get("key"), msg.get("secret")
        else:
            return False
        return not self.reject_auth and (key, secret) == (self.key_id, self.secret_key)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        first = await self._receive(ws)
        ok = first is not None and self._authorized(first)
        status = "authorized" if ok else "unauthorized"
        await self._send(ws, {"stream": "authorization", "data": {"action": "authenticate", "status": status}})
        if not ok:
            await ws.close()
            return ws
        listen = await self._receive(ws)
        streams = ((listen or {}).get("data") or {}).get("streams") or []
        await self._send(ws, {"stream": "listening", "data": {"streams": [s for s in streams if s == "trade_updates"]}})
        if "trade_updates" not in streams:
            await ws.close()
            return ws
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._listeners[ws] = queue
        reader = asyncio.create_task(self._drain(ws, queue.put_nowait))
        try:
            while (message := await queue.get()) is not None:
                await self._send(ws, message)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._listeners.pop(ws, None)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await ws.close()
        return ws

    @staticmethod
    async def _drain(ws: web.WebSocketResponse, done: Callable[[None], None]) -> None:
        """Read (and ignore) what the client sends until it closes; then end the writer."""
        async for _ in ws:
            pass
        done(None)
