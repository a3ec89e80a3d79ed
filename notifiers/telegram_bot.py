"""Telegram transport: python-telegram-bot polling that maps commands and button presses to the chat-ops core.

`TelegramTransport` owns one python-telegram-bot `Application` (configurable Bot API `base_url`, for a
self-hosted Bot API server or a test stand-in), long-polls `getUpdates`, sends every `/command` to
`ChatHandler.handle` and every inline-button press to `ChatHandler.confirm`, sets the command menu with
`setMyCommands`, and edits a confirmation message in place with the result. `send_alert` pushes a message
(`disable_notification` when silent) and honours a 429's `retry_after`. Telegram answers getUpdates with 409
Conflict when a second process polls the same token: this transport then stops polling, logs it and calls
`on_conflict` instead of fighting over updates (alerts still go out). No business logic lives here.

Menus: given `menus` (user id -> role), each user's private chat, and each of `group_chats` for that member,
gets the commands of their role, and everyone else only /whoami; Telegram answers "chat not found" for a
user who never wrote to the bot, so such a menu is set again at their first command. `claim(id)` (optional)
is asked with "<bot id>:<update id>" before an update is handled; False means it was handled before (Telegram
sent it again, e.g. after a restart whose last confirmation did not reach it) and it is skipped. `probe()`
asks getMe whether Telegram answers, for the outbox after an outage.
"""

from __future__ import annotations

import asyncio
import html
import logging
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar

from telegram import (
    BotCommand,
    BotCommandScope,
    BotCommandScopeChat,
    BotCommandScopeChatMember,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, Forbidden, RetryAfter, TelegramError
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from daemon.command_table import COMMANDS, commands_for
from daemon.domain import ChatHandler, ChatIdentity, ChatReply, ChatRequest, ChatRole

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
FENCE = "```"
MAX_CHARS = 4096  # Telegram's limit on a message's text (after HTML markup)
MAX_CAPTION = 1024  # and on a photo's caption
PROBE_SECONDS = 5.0
Claim = Callable[[str], Awaitable[bool]]


def to_html(text: str) -> str:
    """The core's text (``` fenced tables) as Telegram HTML: fences become <pre>, the rest escaped."""
    parts = text.split(FENCE)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 1:
            out.append("<pre>" + html.escape(part.strip("\n")) + "</pre>")
        else:
            out.append(html.escape(part))
    return "".join(out)


def keyboard(reply: ChatReply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=token) for label, token in reply.buttons]])


def alert_length(text: str) -> int:
    """How long `text` is as Telegram counts it (the HTML this transport sends)."""
    return len(to_html(text))


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds Telegram asked to wait (429), else None."""
    return retry_seconds(exc) if isinstance(exc, RetryAfter) else None


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry will not fix: the chat is unknown, the bot was blocked or removed, a bad request."""
    return isinstance(exc, Forbidden | BadRequest)


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramTransport:
    """One bot token: command polling (optional) plus alert sending."""

    def __init__(
        self,
        token: str,
        chat: ChatHandler | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        poll_timeout: float = 10.0,
        handler_timeout: float = 30.0,
        max_retry_after: float = 60.0,
        max_attempts: int = 3,
        on_conflict: Callable[[str], None] | None = None,
        menus: Mapping[str, ChatRole] | None = None,
        group_chats: Sequence[str] = (),
        claim: Claim | None = None,
    ) -> None:
        self.chat = chat
        self.menus, self.claim = menus, claim
        self.group_chats = list(dict.fromkeys(c for c in group_chats if c.startswith("-")))
        self._menus_unset: set[str] = set()  # users whose private-chat menu Telegram refused (never wrote yet)
        self.poll_timeout = poll_timeout
        self.handler_timeout = handler_timeout
        self.max_retry_after = max_retry_after
        self.max_attempts = max_attempts
        self.on_conflict = on_conflict
        self.conflict = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = (
            Application.builder().token(token).base_url(base_url).get_updates_read_timeout(poll_timeout + 10).build()
        )
        self.app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        self.app.add_handler(CallbackQueryHandler(self._on_button))

    @property
    def bot(self):  # type: ignore[no-untyped-def]
        return self.app.bot

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, polling: bool = True) -> None:
        """Log in (getMe), set the command menu and start long polling; `polling=False` only sends alerts."""
        await self.app.initialize()
        if polling and self.chat is not None:
            await self.set_commands()
            await self.app.start()
            assert self.app.updater is not None
            await self.app.updater.start_polling(
                timeout=int(self.poll_timeout),
                allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
                error_callback=self._on_poll_error,
            )

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        for task in list(self._tasks):
            await task
        await self.app.shutdown()

    async def set_commands(self) -> None:
        """One menu for everyone without `menus`; else per user and role, and /whoami for everyone else."""
        if self.menus is None:
            commands = [BotCommand(spec.name, spec.summary) for spec in COMMANDS]
            await self._retrying(lambda: self.app.bot.set_my_commands(commands))
            return
        for user in self.menus:
            await self._set_user_menu(user)
        await self._set_menu(BotCommandScopeDefault(), None)

    async def _set_user_menu(self, user: str) -> None:
        assert self.menus is not None
        role = self.menus[user]
        if not await self._set_menu(BotCommandScopeChat(int(user)), role):
            self._menus_unset.add(user)
        else:
            self._menus_unset.discard(user)
        if not user.startswith("-"):
            for chat in self.group_chats:
                await self._set_menu(BotCommandScopeChatMember(int(chat), int(user)), role)

    async def _set_menu(self, scope: BotCommandScope, role: ChatRole | None) -> bool:
        commands = [BotCommand(spec.name, spec.summary) for spec in commands_for(role)]
        try:
            await self._retrying(lambda: self.app.bot.set_my_commands(commands, scope=scope))
        except TelegramError as exc:  # "chat not found": the user never wrote to the bot, or it is not in the group
            log.info("Telegram menu for %s not set yet: %s", scope.type, exc)
            return False
        return True

    async def probe(self) -> bool:
        """Whether Telegram answers (getMe, bounded)."""
        try:
            await asyncio.wait_for(self.app.bot.get_me(), PROBE_SECONDS)
        except Exception:
            return False
        return True

    async def _first(self, update: Update) -> bool:
        """False for an update handled before (a redelivery): it is then skipped."""
        return self.claim is None or await self.claim(f"{self.app.bot.id}:{update.update_id}")

    # ------------------------------------------------------------------ alerts

    async def send_alert(self, chat_id: int | str, text: str, silent: bool = False) -> int:
        """Send one alert; returns its message id. Raises `TelegramError` (after retry_after waits) so the
        outbox can keep the alert and try again later."""
        message = await self._retrying(
            lambda: self.app.bot.send_message(
                chat_id=chat_id, text=to_html(text), parse_mode=ParseMode.HTML, disable_notification=silent
            )
        )
        return message.message_id

    async def send_photo(self, chat_id: int | str, image: bytes, caption: str, silent: bool = False) -> int:
        """Send a PNG with `caption` (Telegram allows 1024 characters under a photo; longer text follows it
        as its own message). Raises `TelegramError` like `send_alert`."""
        fits = alert_length(caption) <= MAX_CAPTION
        message = await self._retrying(
            lambda: self.app.bot.send_photo(
                chat_id=chat_id, photo=image, caption=to_html(caption) if fits else None,
                parse_mode=ParseMode.HTML, disable_notification=silent,
            )
        )
        if not fits:
            await self.send_alert(chat_id, caption, silent=silent)
        return message.message_id

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run a Bot API call, waiting out 429 `retry_after` (up to `max_retry_after` s, `max_attempts`)."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await call()
            except RetryAfter as exc:
                delay = retry_seconds(exc)
                if attempt == self.max_attempts or delay > self.max_retry_after:
                    raise
                log.warning("Telegram flood limit: retrying in %.1f s", delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ polling errors

    def _on_poll_error(self, exc: TelegramError) -> None:
        if isinstance(exc, Conflict):
            if self.conflict:
                return
            self.conflict = True
            message = (
                "Another process is polling this Telegram bot token (409 Conflict). This instance stops "
                "taking commands so the two do not fight over updates; alerts are still sent. Stop the other "
                "instance (or give it a different token) and restart this one."
            )
            log.error(message)
            if self.on_conflict is not None:
                self.on_conflict(message)
            task = asyncio.get_running_loop().create_task(self.stop_polling())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            log.warning("Telegram polling error: %s", exc)

    async def stop_polling(self) -> None:
        """Stop taking commands (getUpdates); alerts can still be sent until `stop()`."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()

    # ------------------------------------------------------------------ updates -> core

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, user, chat = update.effective_message, update.effective_user, update.effective_chat
        if self.chat is None or message is None or user is None or chat is None or not message.text:
            return
        if not await self._first(update):
            return
        if str(user.id) in self._menus_unset and chat.id == user.id:  # their chat exists now
            await self._set_user_menu(str(user.id))
        request = ChatRequest.from_text(
            "telegram", user.id, chat.id, message.text, user_name=user.username or user.full_name
        )
        if request is None:
            return
        reply = await self._bounded(self.chat.handle(request))
        if reply is None:
            return
        if reply.image is not None:
            await self.send_photo(chat.id, reply.image, reply.text, silent=reply.silent)
            return
        await self._retrying(
            lambda: self.app.bot.send_message(
                chat_id=chat.id,
                text=to_html(reply.text),
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(reply),
                disable_notification=reply.silent,
            )
        )

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if self.chat is None or query is None or query.message is None or not await self._first(update):
            return
        chat_id = query.message.chat.id
        who = ChatIdentity(
            transport="telegram",
            user_id=str(query.from_user.id),
            chat_id=str(chat_id),
            user_name=query.from_user.username,
        )
        reply = await self._bounded(self.chat.confirm(query.data or "", who))
        if reply is None:  # not authorized: stop the button's spinner, say nothing
            await self._retrying(lambda: self.app.bot.answer_callback_query(query.id))
            return
        if reply.ephemeral:
            await self._retrying(
                lambda: self.app.bot.answer_callback_query(query.id, text=reply.text[:200], show_alert=True)
            )
            return
        await self._retrying(lambda: self.app.bot.answer_callback_query(query.id))
        await self._retrying(
            lambda: self.app.bot.edit_message_text(
                chat_id=chat_id,
                message_id=query.message.message_id,  # type: ignore[union-attr]
                text=to_html(reply.text),
                parse_mode=ParseMode.HTML,
                reply_markup=keyboard(reply),
            )
        )

    async def _bounded(self, call: Awaitable[ChatReply | None]) -> ChatReply | None:
        try:
            return await asyncio.wait_for(call, self.handler_timeout)
        except TimeoutError:
            return ChatReply(text="The daemon did not answer in time; try again.")
