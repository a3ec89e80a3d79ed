"""The Schwab stand-in's streamer (websocket): ADMIN LOGIN and ACCT_ACTIVITY, as schwab-py's StreamClient speaks it.

The contract gives only `GET /userPreference` -> `streamerInfo` (served, contract-checked, by the REST
stand-in, with `streamerSocketUrl` pointing here); the protocol follows schwab-py 1.5 (`schwab/
streaming.py`), and `tests/test_schwab_stream.py` runs schwab-py's own `StreamClient` against it:
- requests `{"requests": [{"service", "command", "requestid", "SchwabClientCustomerId",
  "SchwabClientCorrelId", "parameters"}]}`, the ids as `streamerInfo` gave them, answered
  `{"response": [{"service", "command", "requestid", "SchwabClientCorrelId", "timestamp", "content":
  {"code", "msg"}}]}`: code 0 success, 3 a refused LOGIN (a token the stand-in did not issue, or `refuse`),
  21 a request before LOGIN;
- `ADMIN` `LOGIN` with `parameters` `Authorization` (the access token, no `Bearer`),
  `SchwabClientChannel`, `SchwabClientFunctionId`; `ACCT_ACTIVITY` `SUBS` with `keys` = the correl id;
- after each Trader API request and each knob (`publish`), one activity per changed order:
  `{"data": [{"service": "ACCT_ACTIVITY", "timestamp", "command": "SUBS", "content": [{"seq", "key",
  "1": account number, "2": message type, "3": message data (JSON text)}]}]}`. The message types and data
  are the stand-in's own (`OrderCreated`, `ExecutionCreated`, `OrderUROutCompleted`, `OrderUpdated`; the
  data is the order): neither the contract nor schwab-py describes them, and the adapter reads the order
  from the REST API instead. Heartbeats `{"notify": [{"heartbeat": ms}]}` every `heartbeat` seconds.
Knobs: `refuse`, `down` (503 on upgrade), `drop()`; `connects` counts subscribed sessions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.standins.faults import dumps
from tests.standins.schwab_book import SchwabBook
from tests.standins.sockets import Subscribers, json_frames, stop_writer

PATH = "/streamer"
CUSTOMER, CORREL, CHANNEL, FUNCTION = "stand-in-customer", "stand-in-correl-0001", "N9", "APIAPP"
ENVELOPE = {"service", "command", "requestid", "SchwabClientCustomerId", "SchwabClientCorrelId", "parameters"}


def ms() -> int:
    return int(time.time() * 1000)


def streamer_info(url: str) -> dict[str, str]:
    return {"streamerSocketUrl": url, "schwabClientCustomerId": CUSTOMER, "schwabClientCorrelId": CORREL,
            "schwabClientChannel": CHANNEL, "schwabClientFunctionId": FUNCTION}


class Streamer(Subscribers):
    def __init__(self, book: SchwabBook, account_number: str, token_ok: Callable[[str], bool],
                 violations: list[str], heartbeat: float = 10.0) -> None:
        super().__init__()
        self.book, self.account_number, self.token_ok, self.violations = book, account_number, token_ok, violations
        self.heartbeat = heartbeat
        self.refuse = False
        self.down = False
        self.connects = 0
        self._sent: dict[int, str] = {}
        self._seq = 0

    def publish(self) -> None:
        for order_id, node in sorted(self.book.nodes.items()):
            rendered = self.book.render(node)
            text = dumps(rendered)
            before = self._sent.get(order_id)
            if before == text:
                continue
            self._sent[order_id] = text
            kind = "OrderCreated" if before is None else \
                "ExecutionCreated" if rendered.get("filledQuantity") != json.loads(before).get("filledQuantity") \
                else "OrderUROutCompleted" if rendered.get("status") == "CANCELED" else "OrderUpdated"
            self._seq += 1
            frame = json.dumps({"data": [{"service": "ACCT_ACTIVITY", "timestamp": ms(), "command": "SUBS",
                                          "content": [{"seq": self._seq, "key": CORREL, "1": self.account_number,
                                                       "2": kind, "3": text}]}]})
            self.broadcast(frame)

    @staticmethod
    def _answer(request: dict[str, Any], code: int, msg: str) -> str:
        return json.dumps({"response": [{"service": request.get("service"), "command": request.get("command"),
                                         "requestid": request.get("requestid"), "SchwabClientCorrelId": CORREL,
                                         "timestamp": ms(), "content": {"code": code, "msg": msg}}]})

    def _check(self, request: Any) -> None:
        if not isinstance(request, dict) or set(request) != ENVELOPE or \
                request.get("SchwabClientCustomerId") != CUSTOMER or request.get("SchwabClientCorrelId") != CORREL \
                or not str(request.get("requestid", "")).isdigit() or not isinstance(request.get("parameters"), dict):
            self.violations.append(f"schwab streamer: malformed request {str(request)[:300]}")

    def _reply(self, ws: web.WebSocketResponse, request: dict[str, Any], logged_in: bool) -> tuple[str, bool]:
        service, command, params = request.get("service"), request.get("command"), request.get("parameters") or {}
        if (service, command) == ("ADMIN", "LOGIN"):
            if params.get("SchwabClientChannel") != CHANNEL or params.get("SchwabClientFunctionId") != FUNCTION:
                self.violations.append(f"schwab streamer: LOGIN without the streamerInfo ids {params}")
            if self.refuse or not self.token_ok(str(params.get("Authorization", ""))):
                return self._answer(request, 3, "Login Denied."), False
            return self._answer(request, 0, "server=stand-in;status=PN"), True
        if not logged_in:
            return self._answer(request, 21, "Not logged in."), False
        if (service, command) == ("ACCT_ACTIVITY", "SUBS"):
            if params.get("keys") != CORREL or params.get("fields") != "0,1,2,3":
                self.violations.append(f"schwab streamer: ACCT_ACTIVITY SUBS with {params}")
            self._subscribed[ws] = asyncio.Queue()
            self.connects += 1
            return self._answer(request, 0, "SUBS command succeeded"), True
        self.violations.append(f"schwab streamer: unexpected {service} {command}")
        return self._answer(request, 22, "Unsupported request."), True

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        writer = asyncio.create_task(self._write(ws))
        logged_in = False
        try:
            async for frame in json_frames(ws, self.violations, "schwab streamer"):
                for item in frame.get("requests") or [] if isinstance(frame, dict) else []:
                    self._check(item)
                    answer, logged_in = self._reply(ws, item, logged_in)
                    await ws.send_str(answer)
        finally:
            self._subscribed.pop(ws, None)
            await stop_writer(writer)
        return ws

    async def _write(self, ws: web.WebSocketResponse) -> None:
        """Activity in order, and a heartbeat whenever nothing was sent for `heartbeat` seconds."""
        while not ws.closed:
            queue = self._subscribed.get(ws)
            try:
                if queue is None:
                    await asyncio.sleep(0.01)
                    continue
                text = await asyncio.wait_for(queue.get(), self.heartbeat)
            except TimeoutError:
                text = json.dumps({"notify": [{"heartbeat": str(ms())}]})
            await ws.send_str(text)
