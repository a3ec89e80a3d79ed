"""Schwab's streamer (websocket): ADMIN LOGIN, an ACCT_ACTIVITY subscription, each activity a cue to poll now.

The published contract gives only where and as whom to connect: `GET /userPreference` -> `streamerInfo`
(`streamerSocketUrl`, `schwabClientCustomerId`, `schwabClientCorrelId`, `schwabClientChannel`,
`schwabClientFunctionId`). The protocol is taken from schwab-py (`schwab/streaming.py`, `StreamClient`,
1.5): requests are `{"requests": [{"service", "command", "requestid", "SchwabClientCustomerId",
"SchwabClientCorrelId", "parameters"}]}`, answered `{"response": [{"service", "command", "requestid",
"content": {"code", "msg"}}]}` (code 0 is success). A session sends `ADMIN` `LOGIN` with the access token
(no `Bearer`), channel and function id, then `ACCT_ACTIVITY` `SUBS` with `keys` = the correl id and
`fields` `0,1,2,3`; a non-zero code to either is a refusal (`StreamAuthFailed`). Activity arrives as
`{"data": [{"service": "ACCT_ACTIVITY", "content": [{"1": account, "2": message type, "3": message
data}]}]}` and heartbeats as `{"notify": [{"heartbeat"}]}`. Neither the contract nor schwab-py describes
the message data (its shape varies by message type), so the adapter does not parse it: any activity
wakes the poller, which reads the order and its fills from the REST API at once (`on_activity`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from brokers.base import AuthenticationFailed, BrokerUnavailable
from brokers.schwab.session import SchwabSession
from brokers.stream import Backoff, Socket, StreamAuthFailed, StreamClient, StreamClosed, receive_text
from config.brokers import SchwabSettings

ACTIVITY_FIELDS = "0,1,2,3"  # subscription key, account, message type, message data


class SchwabStreaming:
    """Where the streamer is and who this app is there (`streamerInfo`), read before each connection."""

    def __init__(self, session: SchwabSession, settings: SchwabSettings) -> None:
        self.session, self.settings = session, settings
        self.info: dict[str, str] = {}
        self._ids = itertools.count()

    async def load(self) -> str:
        """Read `streamerInfo`; the socket URL (`stream_url` replaces it)."""
        try:
            prefs = await self.session.json("GET", "/userPreference", what="schwab user preferences")
        except AuthenticationFailed as exc:
            raise StreamAuthFailed(exc.reason) from None
        except BrokerUnavailable as exc:
            raise StreamClosed(exc.reason) from None
        # the spec says a list of preferences, the live API (as schwab-py reads it) answers one object
        first = (prefs or [{}])[0] if isinstance(prefs, list) else prefs
        info = ((first.get("streamerInfo") if isinstance(first, dict) else None) or [{}])[0]
        if not info.get("streamerSocketUrl"):
            raise StreamClosed("schwab user preferences name no streamer")
        self.info = {k: str(v) for k, v in info.items()}
        return self.settings.stream_url or self.info["streamerSocketUrl"]

    def request(self, service: str, command: str, parameters: dict[str, Any]) -> tuple[str, str]:
        request_id = str(next(self._ids))
        return request_id, json.dumps({"requests": [{
            "service": service, "command": command, "requestid": request_id,
            "SchwabClientCustomerId": self.info.get("schwabClientCustomerId"),
            "SchwabClientCorrelId": self.info.get("schwabClientCorrelId"), "parameters": parameters}]})

    async def ask(self, ws: Socket, service: str, command: str, parameters: dict[str, Any]) -> None:
        request_id, text = self.request(service, command, parameters)
        await ws.send_str(text)
        while True:
            message = json.loads(await receive_text(ws, self.settings.timeout_seconds))
            answers = message.get("response") if isinstance(message, dict) else None
            for answer in answers or []:
                if str(answer.get("requestid")) == request_id:
                    content = answer.get("content") or {}
                    if content.get("code") != 0:
                        raise StreamAuthFailed(f"schwab refused {service} {command}: code {content.get('code')} "
                                               f"{content.get('msg')}"[:200])
                    return

    async def authenticate(self, ws: Socket) -> None:
        try:
            token = await self.session.access_token()
        except AuthenticationFailed as exc:
            raise StreamAuthFailed(exc.reason) from None
        await self.ask(ws, "ADMIN", "LOGIN", {
            "Authorization": token, "SchwabClientChannel": self.info.get("schwabClientChannel"),
            "SchwabClientFunctionId": self.info.get("schwabClientFunctionId")})
        await self.ask(ws, "ACCT_ACTIVITY", "SUBS", {"keys": self.info.get("schwabClientCorrelId"),
                                                    "fields": ACTIVITY_FIELDS})


class ActivityStream(StreamClient):
    """The streamer of one login; `on_activity` hears that something happened to the account."""

    def __init__(self, name: str, streaming: SchwabStreaming, on_activity: Callable[[], None],
                 on_change: Callable[[], None], backoff: Backoff | None) -> None:
        self.streaming, self._on_activity, self._where = streaming, on_activity, ""
        super().__init__(name, lambda: self._where, authenticate=streaming.authenticate,
                         on_message=self._activity, idle_timeout=90.0,
                         connect_timeout=streaming.settings.timeout_seconds, backoff=backoff,
                         on_up=on_change, on_down=on_change)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        self._where = await self.streaming.load()  # where to connect can change between connections
        await super()._session(session)

    async def _activity(self, text: str) -> None:
        message = json.loads(text)
        for item in (message.get("data") or []) if isinstance(message, dict) else []:
            if item.get("service") == "ACCT_ACTIVITY" and item.get("content"):
                self._on_activity()
