"""Stand-in of the ProjectX (TopstepX) real-time user hub: SignalR's JSON hub protocol over an aiohttp websocket.

`UserHubStandin.handle` serves `GET /hubs/user?access_token=<JWT>` (skipNegotiation: websocket straight away)
on the ProjectX stand-in's server: 401 for a token the gateway did not issue or that expired, 503 while
`.refuse` is set. It checks the handshake (`{"protocol":"json","version":1}` + `\\x1e`), answers invocations
of `SubscribeAccounts`, `SubscribeOrders/Positions/Trades(accountId)` with a completion, and pushes the
engine's changes to the connections subscribed to that account as `GatewayUserOrder`, `GatewayUserTrade`,
`GatewayUserPosition` invocations. Every pushed model is validated against the REST model of the gateway's
Swagger spec (OrderModel, HalfTradeModel, PositionModel); a mismatch is a contract violation.

Knobs: `refuse`, `drop()` (close every connection from the server side), `hold()` / `release()` (keep events
back, then send them), `wrap` (send `{"action": 1, "data": model}` instead of the bare model).
`tokens_seen` lists the token of every accepted connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.standins.contract import Contract
from tests.standins.faults import dumps

RS = "\x1e"
SCHEMAS = {"GatewayUserOrder": "OrderModel", "GatewayUserTrade": "HalfTradeModel",
           "GatewayUserPosition": "PositionModel"}
TOPICS = {"GatewayUserOrder": "SubscribeOrders", "GatewayUserTrade": "SubscribeTrades",
          "GatewayUserPosition": "SubscribePositions"}


def frame(message: dict[str, Any]) -> str:
    return dumps(message) + RS


@dataclass
class _Connection:
    ws: web.WebSocketResponse
    token: str
    subscriptions: set[tuple[str, Any]] = field(default_factory=set)
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)


class UserHubStandin:
    """The user hub; `token_valid` says whether the gateway issued a token and it is still good."""

    def __init__(self, token_valid: Callable[[str], bool], contract: Contract | None, violations: list[str]) -> None:
        self.token_valid, self.contract, self.violations = token_valid, contract, violations
        self.connections: list[_Connection] = []
        self.tokens_seen: list[str] = []
        self.refuse = False
        self.wrap = False
        self.pings = 0
        self._held: list[tuple[str, int, str]] | None = None

    # knobs -------------------------------------------------------------------------------------------

    def subscribed(self, account_id: int) -> bool:
        wanted = {(topic, account_id) for topic in TOPICS.values()} | {("SubscribeAccounts", None)}
        return any(wanted <= c.subscriptions for c in self.connections)

    async def drop(self) -> None:
        """Close every connection from the server side (the hub restarting, a network cut)."""
        for conn in list(self.connections):
            await conn.ws.close()

    def hold(self) -> None:
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for topic, account_id, text in held:
            self._push(topic, account_id, text)

    # engine events -----------------------------------------------------------------------------------

    def on_engine_event(self, event: str, account_id: int, model: dict[str, Any]) -> None:
        if self.contract is not None:
            instance = json.loads(dumps(model))
            self.violations.extend(self.contract._schema_errors(f"/definitions/{SCHEMAS[event]}", instance,
                                                                f"hub {event}"))
        payload = {"action": 1, "data": model} if self.wrap else model
        text = frame({"type": 1, "target": event, "arguments": [payload]})
        if self._held is not None:
            self._held.append((TOPICS[event], account_id, text))
        else:
            self._push(TOPICS[event], account_id, text)

    def _push(self, topic: str, account_id: int, text: str) -> None:
        for conn in self.connections:
            if (topic, account_id) in conn.subscriptions:
                conn.outbox.put_nowait(text)

    # websocket ---------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503)
        token = request.query.get("access_token", "")
        if not self.token_valid(token):
            return web.Response(status=401)
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        first = await ws.receive(timeout=5.0)
        if first.type != WSMsgType.TEXT or json.loads(first.data.split(RS)[0]) != {"protocol": "json",
                                                                                   "version": 1}:
            await ws.send_str(frame({"error": "Requested protocol 'json' version 1 is not available."}))
            await ws.close()
            return ws
        await ws.send_str(frame({}))
        conn = _Connection(ws, token)
        self.tokens_seen.append(token)
        self.connections.append(conn)
        writer = asyncio.create_task(self._write(conn))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                for record in filter(None, msg.data.split(RS)):
                    await self._on_record(conn, json.loads(record))
        finally:
            self.connections.remove(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _on_record(self, conn: _Connection, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == 6:
            self.pings += 1
        elif kind == 7:
            await conn.ws.close()
        elif kind == 1:
            target, arguments = message.get("target"), message.get("arguments") or []
            error = None
            if target == "SubscribeAccounts" and not arguments:
                conn.subscriptions.add((target, None))
            elif target in TOPICS.values() and len(arguments) == 1 and isinstance(arguments[0], int):
                conn.subscriptions.add((target, arguments[0]))
            else:
                error = f"Unknown hub method '{target}' or bad arguments."
            if message.get("invocationId") is not None:
                reply: dict[str, Any] = {"type": 3, "invocationId": message["invocationId"]}
                reply.update({"error": error} if error else {"result": None})
                conn.outbox.put_nowait(frame(reply))

    @staticmethod
    async def _write(conn: _Connection) -> None:
        while True:
            text = await conn.outbox.get()
            if conn.ws.closed:
                return
            await conn.ws.send_str(text)
