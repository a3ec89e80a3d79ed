"""The chat transports as the runtime drives them: each one (re)built and started on demand, and its alert sender.

`Link` holds one transport object and starts it again (a fresh client) after a failed start, bounded in
time. `TelegramSender` and `DiscordSender` are the outbox's view of a transport (`daemon.chat.outbox.Sender`):
send, the transport's message length and limits, which errors are permanent, a 429's wait, and `probe()`,
which asks the chat (getMe, Discord's gateway endpoint, the webhook) whether it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

CONNECT_SECONDS = 15.0
SEND_SECONDS = 30.0
WEBHOOK_CHAT = "webhook"


class TelegramBot(Protocol):
    """The Telegram transport as this runtime drives it (`notifiers.telegram_bot.TelegramTransport`)."""

    async def start(self, *, polling: bool = True) -> None: ...
    async def stop(self) -> None: ...
    async def stop_polling(self) -> None: ...
    async def send_alert(self, chat_id: int | str, text: str, silent: bool = False) -> int: ...
    async def send_photo(self, chat_id: int | str, image: bytes, caption: str, silent: bool = False) -> int: ...
    async def probe(self) -> bool: ...


class DiscordBot(Protocol):
    """The Discord bot transport as this runtime drives it (`notifiers.discord_bot.DiscordTransport`)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send_alert(self, text: str, silent: bool = False, channel_id: int | None = None) -> int: ...
    async def send_photo(self, image: bytes, text: str, silent: bool = False, channel_id: int | None = None) -> int: ...
    async def probe(self) -> bool: ...


class DiscordHook(Protocol):
    """Push-only Discord alerts (`notifiers.discord_bot.DiscordWebhookAlerts`)."""

    async def send_alert(self, text: str, silent: bool = False) -> int: ...
    async def send_photo(self, image: bytes, text: str, silent: bool = False) -> int: ...
    async def probe(self) -> bool: ...
    async def close(self) -> None: ...


T = TypeVar("T")


class Link(Generic[T]):
    """One transport object, (re)built and started on demand, bounded in time."""

    def __init__(self, name: str, build: Callable[[], T], start: Callable[[T], Awaitable[None]],
                 stop: Callable[[T], Awaitable[None]]) -> None:
        self.name = name
        self._build, self._start, self._stop = build, start, stop
        self.obj: T | None = None
        self.up = False
        self.error: str | None = None
        self._lock = asyncio.Lock()

    async def ensure(self) -> T:
        async with self._lock:
            if self.up and self.obj is not None:
                return self.obj
            if self.obj is not None:  # a failed start: start over with a fresh client
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._stop(self.obj), 5)
            obj = self.obj = self._build()
            try:
                await asyncio.wait_for(self._start(obj), CONNECT_SECONDS)
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            self.up, self.error = True, None
            return obj

    async def close(self) -> None:
        async with self._lock:
            if self.obj is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._stop(self.obj), 10)
            self.up = False


class TelegramSender:
    transport = "telegram"

    def __init__(self, link: Link[TelegramBot]) -> None:
        from notifiers import telegram_bot

        self.link = link
        self.max_chars = telegram_bot.MAX_CHARS
        self._length, self._retry_after = telegram_bot.alert_length, telegram_bot.retry_after_of
        self._permanent = telegram_bot.is_permanent

    def length(self, text: str) -> int:
        return self._length(text)

    async def send(self, chat: str, text: str, silent: bool) -> None:
        bot = await self.link.ensure()
        await asyncio.wait_for(bot.send_alert(int(chat), text, silent=silent), SEND_SECONDS)

    async def send_photo(self, chat: str, image: bytes, caption: str, silent: bool) -> None:
        bot = await self.link.ensure()
        await asyncio.wait_for(bot.send_photo(int(chat), image, caption, silent=silent), SEND_SECONDS)

    def retry_after(self, exc: BaseException) -> float | None:
        return self._retry_after(exc)

    def permanent(self, exc: BaseException) -> bool:
        return self._permanent(exc)

    async def probe(self) -> bool:
        try:
            bot = await self.link.ensure()  # a link that never came up: starting it is the probe
        except Exception:
            return False
        return await bot.probe()


class DiscordSender:
    transport = "discord"

    def __init__(self, link: Link[DiscordBot] | None, webhook: DiscordHook | None) -> None:
        from notifiers import discord_bot

        self.link, self.webhook = link, webhook
        self.max_chars = discord_bot.LIMIT
        self._length, self._retry_after = discord_bot.alert_length, discord_bot.retry_after_of
        self._permanent = discord_bot.is_permanent

    def length(self, text: str) -> int:
        return self._length(text)

    async def send(self, chat: str, text: str, silent: bool) -> None:
        if chat == WEBHOOK_CHAT:
            assert self.webhook is not None
            await asyncio.wait_for(self.webhook.send_alert(text, silent=silent), SEND_SECONDS)
            return
        assert self.link is not None
        bot = await self.link.ensure()
        await asyncio.wait_for(bot.send_alert(text, silent=silent, channel_id=int(chat)), SEND_SECONDS)

    async def send_photo(self, chat: str, image: bytes, caption: str, silent: bool) -> None:
        if chat == WEBHOOK_CHAT:
            assert self.webhook is not None
            await asyncio.wait_for(self.webhook.send_photo(image, caption, silent=silent), SEND_SECONDS)
            return
        assert self.link is not None
        bot = await self.link.ensure()
        await asyncio.wait_for(bot.send_photo(image, caption, silent=silent, channel_id=int(chat)), SEND_SECONDS)

    def retry_after(self, exc: BaseException) -> float | None:
        return self._retry_after(exc)

    def permanent(self, exc: BaseException) -> bool:
        return self._permanent(exc)

    async def probe(self) -> bool:
        if self.link is None:
            return self.webhook is not None and await self.webhook.probe()
        try:
            bot = await self.link.ensure()
        except Exception:
            return False
        return await bot.probe()
