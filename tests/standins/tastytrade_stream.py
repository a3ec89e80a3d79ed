"""The tastytrade stand-in's account streamer (websocket), as the tastytrade SDK's `AlertStreamer` speaks it.

No published contract covers it (`contracts/tastytrade` is REST only), so the reference is the SDK
(tastyware/tastytrade v13, `tastytrade/streamer.py`); `tests/test_tastytrade_stream.py` runs the SDK's own
`AlertStreamer` against this side to keep the two in step. Served at `PATH` of the REST stand-in's app:
- every request is `{"auth-token", "action", "request-id", "source", "value"?}`; the token must be one the
  stand-in issued and still valid (sent `Bearer <access token>` or a bare session token, as on REST);
  answered `{"status": "ok", "action", "web-socket-session-id", "request-id", "value"?}` or `{"status":
  "error", "action", "request-id", "message"}` (the SDK reads `status` and `message`; the message texts
  are the stand-in's own, except `connect-not-completed`, which the SDK knows);
- `connect` with `value` = [the account number] subscribes the connection to that account; anything but
  `heartbeat` before it is `connect-not-completed`;
- after each REST request and each knob (`publish`), every order whose rendering changed goes out as
  `{"type": "Order", "data": <the order as REST renders it>, "timestamp": ms}` and every changed position
  as `{"type": "CurrentPosition", ...}`, to the connections subscribed at that moment (a change while
  nobody listens is not replayed, as on the real streamer).
Knobs: `refuse` (every `connect` is refused), `down` (the upgrade is answered 503), `drop()`;
`connects` counts accepted connects and `heartbeats` the heartbeats received.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.standins.faults import dumps
from tests.standins.sockets import Subscribers, json_frames, stop_writer
from tests.standins.tastytrade_book import TastytradeBook

PATH = "/streamer"
FIELDS = {"auth-token", "action", "request-id", "source", "value"}
STAMPS = ("created-at", "updated-at")  # a position row is rendered with the time of the rendering


class AccountStreamer(Subscribers):
    def __init__(self, book: TastytradeBook, account_number: str, token_ok: Callable[[str], bool],
                 violations: list[str]) -> None:
        super().__init__()
        self.book, self.account_number, self.token_ok, self.violations = book, account_number, token_ok, violations
        self.refuse = False
        self.down = False
        self.connects = 0
        self.heartbeats = 0
        self._sent: dict[str, str] = {}  # order id / position symbol -> its last rendering

    # -- knobs -------------------------------------------------------------------------------------------

    def publish(self) -> None:
        """Send what changed since the last call to every subscribed connection."""
        now = int(time.time() * 1000)
        changes = [(f"order:{o['id']}", "Order", self.book.render(o)) for o in self.book.orders.values()]
        changes += [(f"position:{p['symbol']}", "CurrentPosition", p) for p in self.book.position_rows()]
        for key, kind, data in changes:
            text = dumps({k: v for k, v in data.items() if k not in STAMPS})
            if self._sent.get(key) == text:
                continue
            self._sent[key] = text
            frame = dumps({"type": kind, "data": data, "timestamp": now})
            self.broadcast(frame)

    # -- protocol ----------------------------------------------------------------------------------------

    def _answer(self, session: str, frame: dict[str, Any], error: str | None = None) -> str:
        out: dict[str, Any] = {"status": "error" if error else "ok", "action": frame.get("action"),
                               "web-socket-session-id": session, "request-id": frame.get("request-id")}
        if error:
            out["message"] = error
        elif "value" in frame:
            out["value"] = frame["value"]
        return json.dumps(out)

    def _check(self, frame: Any) -> None:
        if not isinstance(frame, dict) or not {"auth-token", "action", "request-id"} <= set(frame) \
                or set(frame) - FIELDS or not isinstance(frame.get("request-id"), int):
            self.violations.append(f"streamer: malformed request {str(frame)[:200]}")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = secrets.token_hex(8)
        writer: asyncio.Task[None] | None = None
        try:
            async for frame in json_frames(ws, self.violations, "streamer"):
                self._check(frame)
                action, token = frame.get("action"), str(frame.get("auth-token") or "")
                if not self.token_ok(token.removeprefix("Bearer ")):
                    await ws.send_str(self._answer(session, frame, "invalid auth-token"))
                elif action == "heartbeat":
                    self.heartbeats += 1
                    await ws.send_str(self._answer(session, frame))
                elif action != "connect":
                    error = "connect-not-completed" if ws not in self._subscribed else f"unsupported action {action}"
                    self.violations.append(f"streamer: {error}")
                    await ws.send_str(self._answer(session, frame, error))
                elif self.refuse or frame.get("value") != [self.account_number]:
                    await ws.send_str(self._answer(session, frame, "not permitted for this account"))
                else:
                    queue: asyncio.Queue[str] = asyncio.Queue()
                    await ws.send_str(self._answer(session, frame))
                    self._subscribed[ws] = queue
                    self.connects += 1
                    writer = asyncio.create_task(self._write(ws, queue))
        finally:
            self._subscribed.pop(ws, None)
            await stop_writer(writer)
        return ws

    @staticmethod
    async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[str]) -> None:
        while not ws.closed:
            await ws.send_str(await queue.get())
