"""The Binance spot stand-in's WebSocket API side: the user data stream, as ccxt.pro's binance speaks it.

No published contract covers Binance's WebSocket API (the REST spec in `contracts/binance` lists only the
removed `/api/v3/userDataStream` listen keys), so the reference is the client: ccxt.pro's `binance`
(`ccxt/pro/binance.py`, ccxt 4.5) and the Binance docs it cites. Served at `/ws-api/v3` of the REST
stand-in's app (one port, one `Book`):
- request `{"id", "method": "userDataStream.subscribe.signature", "params": {"apiKey", "timestamp",
  "recvWindow"?, "signature"}}`, signed with HMAC-SHA256 over the other params sorted by name and joined
  as `k=v&...`; answered `{"id", "status": 200, "result": {"subscriptionId": n}}`, or, for a wrong key,
  `{"id", "status": 401, "error": {"code": -2015, "msg"}}` (`-1022` bad signature, `-1021` stale timestamp);
- then every change of an order in the book as `{"subscriptionId": n, "event": {"e": "executionReport",
  ...}}` with Binance's one-letter fields (`x` execution type, `X` status, `i` order id, `c` / `C` client
  order ids, `l` / `z` / `L` last and cumulative quantity and last price, `n` / `N` commission, `t` trade id).
Anything else a client sends is a violation. Knobs: `refuse` (answer every subscription with -2015, as for
a key without the permission), `down` (refuse the upgrade with 503), `drop()` (close every connection);
`connects` counts sessions subscribed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.standins.binance_book import Book, now_ms, s8
from tests.standins.sockets import json_frames, stop_writer

PATH = "/ws-api/v3"
ZERO8 = "0.00000000"


def execution_report(order: dict[str, Any], execution: str, trade: dict[str, Any] | None) -> dict[str, Any]:
    """The `executionReport` event Binance sends for one change of `order`."""
    cancelled = execution == "CANCELED"
    return {
        "e": "executionReport", "E": now_ms(), "s": order["symbol"],
        "c": f"cancel{order['orderId']}" if cancelled else order["clientOrderId"],
        "S": order["side"], "o": order.get("_was", order["type"]), "f": order["timeInForce"],
        "q": s8(order["origQty"]), "p": s8(order["price"]), "P": s8(order["stopPrice"]), "F": ZERO8,
        "g": order["orderListId"], "C": order["clientOrderId"] if cancelled else "", "x": execution,
        "X": order["status"], "r": "NONE", "i": order["orderId"],
        "l": s8(trade["qty"]) if trade else ZERO8, "z": s8(order["executedQty"]),
        "L": s8(trade["price"]) if trade else ZERO8,
        "n": s8(trade["commission"]) if trade else "0", "N": trade["commissionAsset"] if trade else None,
        "T": trade["time"] if trade else order["updateTime"], "t": trade["id"] if trade else -1,
        "I": order["orderId"] * 10, "w": order["status"] in ("NEW", "PARTIALLY_FILLED") and order["workingTime"] != -1,
        "m": bool(trade and trade["isMaker"]), "M": False, "O": order["time"],
        "Z": s8(order["cummulativeQuoteQty"]), "Y": s8(trade["quoteQty"]) if trade else ZERO8, "Q": ZERO8,
        "W": order["workingTime"], "V": "EXPIRE_MAKER",
    }


class UserDataStream:
    def __init__(self, book: Book, api_key: str, secret: str, violations: list[str]) -> None:
        self.book, self.api_key, self.secret, self.violations = book, api_key, secret, violations
        self.refuse = False
        self.down = False
        self.connects = 0
        self.events_sent = 0
        self._queues: dict[web.WebSocketResponse, tuple[int, asyncio.Queue[str]]] = {}
        self._next_subscription = 0
        book.listeners.append(self._on_change)

    def _on_change(self, order: dict[str, Any], execution: str, trade: dict[str, Any] | None) -> None:
        event = execution_report(order, execution, trade)
        for subscription, queue in self._queues.values():
            queue.put_nowait(json.dumps({"subscriptionId": subscription, "event": event}))

    async def drop(self) -> None:
        """Close every connection, as Binance does on maintenance or a network fault."""
        for ws in list(self._queues):
            await ws.close()
        self._queues.clear()

    def subscribed(self) -> int:
        return len(self._queues)

    def _error(self, request_id: Any, status: int, code: int, msg: str) -> str:
        return json.dumps({"id": request_id, "status": status, "error": {"code": code, "msg": msg}})

    def _subscribe(self, request_id: Any, params: dict[str, Any]) -> str | None:
        """The answer to a subscription, or None when it is granted (the caller answers and registers)."""
        if self.refuse or params.get("apiKey") != self.api_key:
            return self._error(request_id, 401, -2015, "Invalid API-key, IP, or permissions for action.")
        unsigned = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
        expected = hmac.new(self.secret.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(str(params.get("signature", "")), expected):
            return self._error(request_id, 400, -1022, "Signature for this request is not valid.")
        window, stamp, now = int(params.get("recvWindow", 5000)), int(params.get("timestamp", 0)), now_ms()
        if not (stamp < now + 1000 and now - stamp <= window) or window > 60000:
            return self._error(request_id, 400, -1021, "Timestamp for this request is outside of the recvWindow.")
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse(heartbeat=20.0)  # Binance pings every 20 s and wants a pong
        await ws.prepare(request)
        writer: asyncio.Task[None] | None = None
        try:
            async for frame in json_frames(ws, self.violations, "ws-api", parse_float=Decimal):
                request_id, method = frame.get("id"), frame.get("method")
                if method != "userDataStream.subscribe.signature" or not isinstance(frame.get("params"), dict):
                    self.violations.append(f"ws-api: unexpected request {str(frame)[:200]}")
                    await ws.send_str(self._error(request_id, 400, -1000, "Unsupported request."))
                    continue
                missing = {"apiKey", "timestamp", "signature"} - set(frame["params"])
                if missing:
                    self.violations.append(f"ws-api: subscription without {sorted(missing)}")
                refused = self._subscribe(request_id, frame["params"])
                if refused is not None:
                    await ws.send_str(refused)
                    continue
                subscription, self._next_subscription = self._next_subscription, self._next_subscription + 1
                queue: asyncio.Queue[str] = asyncio.Queue()
                await ws.send_str(json.dumps({"id": request_id, "status": 200,
                                              "result": {"subscriptionId": subscription}}))
                self._queues[ws] = (subscription, queue)
                self.connects += 1
                writer = asyncio.create_task(self._write(ws, queue))
        finally:
            self._queues.pop(ws, None)
            await stop_writer(writer)
        return ws

    async def _write(self, ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        """Events in the order they happened, one connection at a time."""
        while not ws.closed:
            text = await queue.get()
            await ws.send_str(text)
            self.events_sent += 1
