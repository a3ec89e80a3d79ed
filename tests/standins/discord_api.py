"""Stand-in of Discord on loopback: the REST API a bot uses plus the gateway websocket, for discord.py tests.

`DiscordStandin` serves REST under `/api/v10` (give `.api_base` to the transport as `api_base`): GET
/gateway(/bot), /users/@me, /oauth2/applications/@me, PUT global and guild application commands, POST
interaction callbacks (`?with_response=1` answered like Discord), PATCH/GET the original response and POST
follow-ups, POST channel messages, and webhook execute and GET (`/webhooks/{id}/{token}`). The gateway at
`.gateway_url` (named by `GET /gateway/bot`, which the transport asks for a non-default `api_base`; later
reconnects use READY's `resume_gateway_url`, which is this stand-in)
speaks HELLO, IDENTIFY -> READY, heartbeat -> ACK, RESUME -> RESUMED, and dispatches INTERACTION_CREATE for
slash commands (`slash(...)`, type 2) and button clicks (`click(...)`, type 3). `drop()` closes the socket
with 4000 so the client resumes. Everything is recorded: `.identifies`, `.resumes`, `.heartbeats`,
`.commands`, `.callbacks`, `.messages`, `.webhook_messages`, `.edits`, `.followups`. Uploads (multipart with
`payload_json` and `files[n]`, as discord.py sends a `discord.File`) are accepted on channel messages,
webhooks and interaction callbacks; their bytes are in the body's `"files"` as (filename, bytes).
`upload_failures = n` answers the next n uploads with 500.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

APP_ID = "700000000000000001"
BOT_ID = "700000000000000002"
GUILD_ID = "700000000000000100"
CHANNEL_ID = "700000000000000200"
WEBHOOK_ID = "700000000000000300"
WEBHOOK_TOKEN = "w" * 68


def _json(data: Any, status: int = 200) -> web.Response:
    """JSON exactly as Discord labels it: discord.py only decodes `Content-Type: application/json`."""
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})


def _user(user_id: str, name: str, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


class DiscordStandin:
    def __init__(self, token: str = "bot-token") -> None:
        self.token = token
        self.port = 0
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> registered commands
        self.callbacks: list[dict[str, Any]] = []  # interaction responses, with "interaction_id"
        self.messages: list[dict[str, Any]] = []  # POST /channels/{id}/messages
        self.webhook_messages: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []  # PATCH .../messages/@original
        self.followups: list[dict[str, Any]] = []
        self.unauthorized = 0
        self.upload_failures = 0
        self.session_id = "session-1"
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._ids = itertools.count(800000000000000000)
        self._originals: dict[str, dict[str, Any]] = {}  # interaction token -> original response message
        self._runner: web.AppRunner | None = None
        self.connected = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def webhook_url(self) -> str:
        """Shaped like a real channel webhook URL (discord.py parses id and token out of it)."""
        return f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}"

    async def start(self) -> DiscordStandin:
        app = web.Application()
        r = app.router
        r.add_get("/gateway", self._ws_handler)
        r.add_get("/api/v10/gateway", self._gateway)
        r.add_get("/api/v10/gateway/bot", self._gateway_bot)
        r.add_get("/api/v10/users/@me", self._me)
        r.add_get("/api/v10/oauth2/applications/@me", self._application)
        r.add_put("/api/v10/applications/{app}/commands", self._put_commands)
        r.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_post("/api/v10/interactions/{id}/{token}/callback", self._callback)
        r.add_route("*", "/api/v10/webhooks/{app}/{token}/messages/@original", self._original)
        r.add_post("/api/v10/webhooks/{id}/{token}", self._webhook_post)
        r.add_get("/api/v10/webhooks/{id}/{token}", self._webhook_get)
        r.add_post("/api/v10/channels/{channel}/messages", self._channel_message)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, predicate: Callable[[], Any], within: float = 15.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("stand-in condition not met in time")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ REST

    def _authorized(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") == f"Bot {self.token}":
            return True
        self.unauthorized += 1
        return False

    def _message(self, channel_id: str, body: dict[str, Any], author: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(next(self._ids)),
            "channel_id": channel_id,
            "type": 0,
            "content": body.get("content", ""),
            "author": author,
            "attachments": [],
            "embeds": body.get("embeds", []),
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
            "mention_everyone": False,
            "tts": False,
            "timestamp": datetime.now(UTC).isoformat(),
            "edited_timestamp": None,
            "flags": int(body.get("flags", 0) or 0),
            "components": body.get("components", []),
        }

    async def _gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return _json({**_user(BOT_ID, "traderd", bot=True), "verified": True, "flags": 0, "mfa_enabled": False})

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": APP_ID,
                "name": "traderd",
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": _user("700000000000000009", "owner"),
                "verify_key": "00" * 32,
                "flags": 0,
                "team": None,
                "summary": "",
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        payload = await request.json()
        registered = []
        for command in payload:
            registered.append(
                {
                    "type": 1,
                    "version": "1",
                    "default_member_permissions": None,
                    "nsfw": False,
                    **command,
                    "id": str(next(self._ids)),
                    "application_id": APP_ID,
                }
            )
        self.commands[request.match_info.get("guild", "global")] = registered
        return _json(registered)

    async def _callback(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        body["interaction_id"] = request.match_info["id"]
        self.callbacks.append(body)
        data = body.get("data") or {}
        token = request.match_info["token"]
        if body["type"] in (6, 7) and token in self._originals:  # component: the clicked message
            message = self._originals[token]
            if body["type"] == 7:
                message.update({k: v for k, v in data.items() if k in ("content", "components", "embeds")})
        else:
            message = self._message(CHANNEL_ID, data, _user(BOT_ID, "traderd", bot=True))
            self._originals[token] = message
        if request.query.get("with_response") in ("1", "true"):
            interaction = {
                "id": body["interaction_id"],
                "type": 2,
                "response_message_id": message["id"],
                "response_message_loading": body["type"] == 5,
                "response_message_ephemeral": bool(int(data.get("flags", 0) or 0) & 64),
            }
            resource: dict[str, Any] = {"type": body["type"]}
            if body["type"] in (4, 7):
                resource["message"] = message
            return _json({"interaction": interaction, "resource": resource})
        return web.Response(status=204)

    async def _original(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        message = self._originals.get(token)
        if message is None:
            return _json({"message": "Unknown Message", "code": 10008}, status=404)
        if request.method == "PATCH":
            body = await request.json()
            self.edits.append(body)
            message.update({k: v for k, v in body.items() if k in ("content", "components", "embeds")})
        return _json(message)

    async def _webhook_post(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body.get("files") and self.upload_failures > 0:
            self.upload_failures -= 1
            return _json({"message": "500: Internal Server Error", "code": 0}, status=500)
        webhook_id = request.match_info["id"]
        if webhook_id == APP_ID:  # interaction follow-up
            self.followups.append(body)
        else:
            if request.match_info["token"] != WEBHOOK_TOKEN:
                return _json({"message": "Invalid Webhook Token", "code": 50027}, status=401)
            self.webhook_messages.append(body)
        message = self._message(CHANNEL_ID, body, {**_user(webhook_id, "traderd-hook"), "bot": True})
        message["webhook_id"] = webhook_id
        if request.query.get("wait") in ("true", "1"):
            return _json(message)
        return web.Response(status=204)

    async def _webhook_get(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != WEBHOOK_TOKEN:
            return _json({"message": "Invalid Webhook Token", "code": 50027}, status=401)
        return _json({"id": request.match_info["id"], "type": 1, "name": "traderd-hook", "token": WEBHOOK_TOKEN,
                      "channel_id": CHANNEL_ID, "guild_id": GUILD_ID, "application_id": None, "avatar": None})

    async def _channel_message(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        body = await self._body(request)
        if body.get("files") and self.upload_failures > 0:
            self.upload_failures -= 1
            return _json({"message": "500: Internal Server Error", "code": 0}, status=500)
        body["channel_id"] = request.match_info["channel"]
        self.messages.append(body)
        return _json(self._message(body["channel_id"], body, _user(BOT_ID, "traderd", bot=True)))

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        """JSON, or multipart: `payload_json` plus uploaded files as (filename, bytes) under "files"."""
        if not request.content_type.startswith("multipart/"):
            return dict(await request.json())
        body: dict[str, Any] = {}
        files: list[tuple[str, bytes]] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            data = await part.read()
            if part.name == "payload_json":
                body.update(json.loads(data))
            elif part.filename:
                files.append((part.filename, bytes(data)))
        body["files"] = files
        return body

    # ------------------------------------------------------------------ gateway

    async def _send(self, payload: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("no gateway connection")
        await self._ws.send_json(payload)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        await self._send({"op": 0, "t": event, "s": self._seq, "d": data})

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            payload = msg.json()
            op, data = payload.get("op"), payload.get("d")
            if op == 1:
                self.heartbeats += 1
                await ws.send_json({"op": 11})
            elif op == 2:
                if data.get("token") != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self.identifies.append(data)
                self._seq = 0
                await self.dispatch(
                    "READY",
                    {
                        "v": 10,
                        "user": {
                            **_user(BOT_ID, "traderd", bot=True),
                            "verified": True,
                            "flags": 0,
                            "mfa_enabled": False,
                        },
                        "guilds": [],
                        "session_id": self.session_id,
                        "resume_gateway_url": self.gateway_url,
                        "application": {"id": APP_ID, "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                    },
                )
                self.connected.set()
            elif op == 6:
                self.resumes.append(data)
                if data.get("session_id") != self.session_id:
                    await ws.send_json({"op": 9, "d": False})
                else:
                    await self.dispatch("RESUMED", {})
                    self.connected.set()
        if self._ws is ws:
            self._ws = None
            self.connected.clear()
        return ws

    async def drop(self) -> None:
        """Close the gateway connection like a network blip (4000: client may resume)."""
        if self._ws is not None:
            self.connected.clear()
            await self._ws.close(code=4000, message=b"dropped by test")

    # ------------------------------------------------------------------ interactions

    def _interaction(self, kind: int, user_id: str, channel_id: str, guild_id: str | None) -> dict[str, Any]:
        user = _user(user_id, f"user{user_id[-3:]}")
        data: dict[str, Any] = {
            "id": str(next(self._ids)),
            "application_id": APP_ID,
            "type": kind,
            "token": f"itoken{next(self._ids)}",
            "version": 1,
            "channel_id": channel_id,
            "locale": "en-US",
            "app_permissions": "2147483647",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID},
            "attachment_size_limit": 8388608,
            "context": 0 if guild_id else 1,
        }
        if guild_id:
            data["guild_id"] = guild_id
            data["guild_locale"] = "en-US"
            data["channel"] = {
                "id": channel_id,
                "type": 0,
                "name": "trading",
                "position": 0,
                "guild_id": guild_id,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "flags": 0,
            }
            data["member"] = {
                "user": user,
                "roles": [],
                "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "permissions": "2147483647",
                "nick": None,
                "avatar": None,
            }
        else:
            data["channel"] = {"id": channel_id, "type": 1, "recipients": [user], "last_message_id": None}
            data["user"] = user
        return data

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user_id: str = "9001",
        channel_id: str = CHANNEL_ID,
        guild_id: str | None = GUILD_ID,
    ) -> dict[str, Any]:
        """The user runs `/name` with typed options; returns the interaction payload (its "token", "id")."""
        interaction = self._interaction(2, user_id, channel_id, guild_id)
        registered = {c["name"]: c for c in self.commands.get("global", [])}
        command = registered.get(name, {"id": "0", "options": []})
        types = {o["name"]: o["type"] for o in command.get("options", [])}
        interaction["data"] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": types.get(k, 3), "value": v} for k, v in (options or {}).items()],
        }
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def click(
        self,
        custom_id: str,
        message: dict[str, Any],
        *,
        user_id: str = "9001",
        channel_id: str = CHANNEL_ID,
        guild_id: str | None = GUILD_ID,
    ) -> dict[str, Any]:
        """The user clicks the button `custom_id` on `message` (a message object the bot created)."""
        interaction = self._interaction(3, user_id, channel_id, guild_id)
        interaction["data"] = {"custom_id": custom_id, "component_type": 2}
        interaction["message"] = message
        self._originals[interaction["token"]] = message  # its "original" is the clicked message
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    def original(self, interaction: dict[str, Any]) -> dict[str, Any] | None:
        """The message an interaction's response created (as last edited)."""
        return self._originals.get(interaction["token"])
