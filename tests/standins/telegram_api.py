"""Stand-in of the Telegram Bot API on loopback, enough for python-telegram-bot polling and replies.

`TelegramStandin` serves `/bot<token>/<method>` like api.telegram.org: getMe, getUpdates (long poll, bounded
by the request's `timeout` and `max_poll`), deleteWebhook, sendMessage, sendPhoto (multipart upload; the
bytes are kept in `.photos`), editMessageText, answerCallbackQuery,
setMyCommands / getMyCommands / deleteMyCommands per `scope` (`.menus`, `menu(user, chat)` resolves what a
user sees in a chat as Telegram does: chat member, chat, all private/group chats, default; with
`known_chats_only = True` a private chat the user never wrote from answers 400 "chat not found"), close/logOut.
Parameters arrive as JSON or form fields (python-telegram-bot sends form fields with JSON-encoded values),
answers are `{"ok": ..., "result": ...}`.

Tests inject updates with `send_command(user_id, chat_id, "/status")` and `press(user_id, message, data)`,
read what the bot did from `.sent`, `.edits`, `.answers`, `.commands`, `.calls`, and wait for it with
`wait_for(predicate)`. Fault knobs: `rate_limit(method, times, retry_after)` answers 429 with
`parameters.retry_after`, `outage` (500 for every method) / `stop()` (connection refused),
`photo_failures = n` (the next n sendPhoto calls answer 500), and
`conflict = True` answers getUpdates with 409 as Telegram does when a second instance polls the same token.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 4242


@dataclass
class Sent:
    chat_id: int
    message_id: int
    text: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def buttons(self) -> list[tuple[str, str]]:
        markup = self.params.get("reply_markup") or {}
        return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]


class TelegramStandin:
    def __init__(self, token: str = "123:TEST", max_poll: float = 2.0) -> None:
        self.token = token
        self.max_poll = max_poll
        self.updates: list[dict[str, Any]] = []
        self.confirmed_offset = 0
        self.sent: list[Sent] = []
        self.photos: list[Sent] = []  # also in .sent (a photo is a message); params["photo"] holds the bytes
        self.photo_failures = 0
        self.edits: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.menus: dict[str, list[dict[str, Any]]] = {}  # scope key (see `_scope_key`) -> commands
        self.known_chats_only = False
        self.known_chats: set[int] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rate_limits: dict[str, list[int]] = {}  # method -> [times left, retry_after]
        self.limited: list[tuple[str, float]] = []  # (method, monotonic time) of each 429 answered
        self.outage = False
        self.conflict = False
        self.conflicts_answered = 0
        self._ids = itertools.count(1000)
        self._update_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """What to give python-telegram-bot as `base_url` (it appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> TelegramStandin:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close the listening socket: clients now get connection refused (a network outage)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ test controls

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        self.rate_limits[method] = [times, retry_after]

    @property
    def commands(self) -> list[dict[str, Any]]:
        """The default menu (what anyone without a more specific scope sees)."""
        return self.menus.get("default", [])

    def menu(self, user_id: int, chat_id: int | None = None) -> list[str]:
        """The command names `user_id` sees in `chat_id` (default: their private chat with the bot)."""
        chat = user_id if chat_id is None else chat_id
        for key in (f"chat_member:{chat}:{user_id}", f"chat:{chat}",
                    "all_group_chats" if chat < 0 else "all_private_chats", "default"):
            if key in self.menus:
                return [c["command"] for c in self.menus[key]]
        return []

    def redeliver_from(self, update_id: int) -> None:
        """Telegram never got the confirmation of updates from `update_id` on: it sends them again."""
        self.confirmed_offset = update_id

    async def _push(self, update: dict[str, Any]) -> dict[str, Any]:
        update["update_id"] = next(self._update_ids)
        sender = (update.get("message") or update.get("callback_query") or {}).get("from", {}).get("id")
        if sender is not None:
            self.known_chats.add(int(sender))
        async with self._changed:
            self.updates.append(update)
            self._changed.notify_all()
        return update

    @staticmethod
    def _chat(chat_id: int) -> dict[str, Any]:
        if chat_id < 0:
            return {"id": chat_id, "type": "supergroup", "title": "trading"}
        return {"id": chat_id, "type": "private", "first_name": "Trader"}

    @staticmethod
    def _user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"user{user_id}", "username": f"user{user_id}"}

    async def send_command(self, user_id: int, chat_id: int, text: str) -> dict[str, Any]:
        """The user types `text` (e.g. "/pnl week") in the chat."""
        command = text.split()[0]
        message = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self._user(user_id),
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}] if text[:1] == "/" else [],
        }
        return await self._push({"message": message})

    async def press(self, user_id: int, message: Sent, data: str) -> dict[str, Any]:
        """The user presses the inline button carrying `data` under a message the bot sent."""
        original = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": self._chat(message.chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "traderd", "username": "traderd_bot"},
            "text": message.text,
        }
        query = {
            "id": str(next(self._ids)),
            "from": self._user(user_id),
            "message": original,
            "chat_instance": "ci1",
            "data": data,
        }
        return await self._push({"callback_query": query})

    async def wait_for(self, predicate: Callable[[], Any], within: float = 15.0) -> Any:
        """Wait (bounded) until `predicate()` is truthy; returns its value."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("stand-in condition not met in time")
            await asyncio.sleep(0.01)

    def sent_to(self, chat_id: int) -> list[Sent]:
        return [m for m in self.sent if m.chat_id == chat_id]

    # ------------------------------------------------------------------ the API

    async def _dispatch(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        self.calls.append((method, params))
        if self.outage:
            return _error(500, "Internal Server Error")
        limit = self.rate_limits.get(method)
        if limit and limit[0] > 0:
            limit[0] -= 1
            self.limited.append((method, time.monotonic()))
            return _error(429, f"Too Many Requests: retry after {limit[1]}", {"retry_after": limit[1]})
        handler = getattr(self, "_m_" + method.lower(), None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    async def _m_getme(self, params: dict[str, Any]) -> web.Response:
        return _ok(
            {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "traderd",
                "username": "traderd_bot",
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        )

    async def _m_deletewebhook(self, params: dict[str, Any]) -> web.Response:
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self.confirmed_offset = self.updates[-1]["update_id"] + 1 if self.updates else 0
        return _ok(True)

    async def _m_getupdates(self, params: dict[str, Any]) -> web.Response:
        if self.conflict:
            self.conflicts_answered += 1
            return _error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
            )
        offset = int(params.get("offset") or 0)
        if offset:
            self.confirmed_offset = max(self.confirmed_offset, offset)
        wait = min(float(params.get("timeout") or 0), self.max_poll)

        def pending() -> list[dict[str, Any]]:
            return [u for u in self.updates if u["update_id"] >= self.confirmed_offset]

        async with self._changed:
            if not pending() and wait > 0:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(pending())), wait)
                except TimeoutError:
                    pass
        return _ok(pending()[: int(params.get("limit") or 100)])

    async def _m_sendmessage(self, params: dict[str, Any]) -> web.Response:
        chat_id = int(params["chat_id"])
        text = str(params.get("text", ""))
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        message = Sent(chat_id, next(self._ids), text, params)
        self.sent.append(message)
        return _ok(self._message_json(message))

    async def _m_sendphoto(self, params: dict[str, Any]) -> web.Response:
        photo = params.get("photo")
        if not isinstance(photo, bytes) or not photo:
            return _error(400, "Bad Request: there is no photo in the request")
        caption = str(params.get("caption", ""))
        if len(caption) > 1024:
            return _error(400, "Bad Request: message caption is too long")
        if self.photo_failures > 0:
            self.photo_failures -= 1
            return _error(500, "Internal Server Error")
        message = Sent(int(params["chat_id"]), next(self._ids), caption, params)
        self.photos.append(message)
        self.sent.append(message)
        out = self._message_json(message)
        out.pop("text")
        out["caption"] = caption
        out["photo"] = [{"file_id": f"photo{message.message_id}", "file_unique_id": f"u{message.message_id}",
                         "width": 900, "height": 330}]
        return _ok(out)

    def _message_json(self, m: Sent) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": m.message_id,
            "date": int(time.time()),
            "chat": self._chat(m.chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "traderd", "username": "traderd_bot"},
            "text": m.text,
        }
        if m.params.get("reply_markup"):
            out["reply_markup"] = m.params["reply_markup"]
        return out

    async def _m_editmessagetext(self, params: dict[str, Any]) -> web.Response:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        for message in self.sent:
            if message.chat_id == chat_id and message.message_id == message_id:
                if message.text == params.get("text") and not params.get("reply_markup"):
                    return _error(400, "Bad Request: message is not modified")
                message.text = str(params.get("text", ""))
                message.params = {**message.params, **params, "reply_markup": params.get("reply_markup")}
                self.edits.append(params)
                return _ok(self._message_json(message))
        return _error(400, "Bad Request: message to edit not found")

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> web.Response:
        self.answers.append(params)
        return _ok(True)

    @staticmethod
    def _scope_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        if scope["type"] == "chat_member":
            return f"chat_member:{scope['chat_id']}:{scope['user_id']}"
        if scope["type"] in ("chat", "chat_administrators"):
            return f"{scope['type']}:{scope['chat_id']}"
        return str(scope["type"])

    async def _m_setmycommands(self, params: dict[str, Any]) -> web.Response:
        commands = params.get("commands") or []
        for c in commands:
            if not (1 <= len(c["command"]) <= 32 and c["command"].islower() and 1 <= len(c["description"]) <= 256):
                return _error(400, f"Bad Request: invalid command {c!r}")
        scope = params.get("scope") or {}
        chat = scope.get("chat_id")
        if self.known_chats_only and chat is not None and int(chat) > 0 and int(chat) not in self.known_chats:
            return _error(400, "Bad Request: chat not found")
        self.menus[self._scope_key(params)] = commands
        return _ok(True)

    async def _m_getmycommands(self, params: dict[str, Any]) -> web.Response:
        return _ok(self.menus.get(self._scope_key(params), []))

    async def _m_deletemycommands(self, params: dict[str, Any]) -> web.Response:
        self.menus.pop(self._scope_key(params), None)
        return _ok(True)

    async def _m_close(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)

    async def _m_logout(self, params: dict[str, Any]) -> web.Response:
        return _ok(True)


async def _params(request: web.Request) -> dict[str, Any]:
    """JSON body, or form/query fields whose values may themselves be JSON (as python-telegram-bot sends)."""
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        raw.update(await request.post())
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, web.FileField):
            out[key] = value.file.read()
            continue
        value = str(value)
        if value[:1] in "[{":
            try:
                out[key] = json.loads(value)
                continue
            except ValueError:
                pass
        out[key] = value
    return out


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)
