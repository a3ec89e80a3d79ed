"""Wires chat-ops into the daemon: Telegram and Discord transports, the command core, the outbox and its dispatchers.

`ChatRuntime` gets what it drives (its settings, the outbox, the state store, a `ChatBackend` for the command
core, the reader for the daily summary, the event bus's `subscribe`) and subscribes the durable outbox to the
event bus at once (so nothing published during start-up is missed). `start()` (after READY) connects the
configured transports, each bounded in time, and starts one outbox dispatcher per transport; a chat that
cannot be reached is logged and retried by its dispatcher, and never stops the daemon. `stop()` (first thing
at shutdown) stops taking commands, announces the stop, delivers what it can within `alerts.drain_seconds`
and closes the transports; alerts still queued (and those the engine publishes while it drains) go out after
the next start.

Also here: crash-recovery detection (a run that did not reach `stop()` is reported at the next start), the
daily summary (`schedule()` adds it to the daemon's scheduler as the `daily-summary` job, Mon-Fri at
`alerts.daily_summary_at` in the daemon's time zone), and the report of a second process polling the same
Telegram token (logged, shown by /health, and sent as an alert on Discord if configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from config.chat import AlertSettings, DiscordSettings, TelegramSettings
from daemon.chat.alerts import notice
from daemon.chat.auth import ChatAuth, TransportAuth
from daemon.chat.commands import ChatOps
from daemon.chat.outbox import Dispatcher, Outbox
from daemon.chat.replies import ChatBackend, HealthCheck
from daemon.chat.summary import DailySummary
from daemon.domain import Event
from daemon.queries import Reader
from daemon.store.state import StateStore

log = logging.getLogger("traderd.chat")
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


class DiscordBot(Protocol):
    """The Discord bot transport as this runtime drives it (`notifiers.discord_bot.DiscordTransport`)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send_alert(self, text: str, silent: bool = False, channel_id: int | None = None) -> int: ...
    async def send_photo(self, image: bytes, text: str, silent: bool = False, channel_id: int | None = None) -> int: ...


class DiscordHook(Protocol):
    """Push-only Discord alerts (`notifiers.discord_bot.DiscordWebhookAlerts`)."""

    async def send_alert(self, text: str, silent: bool = False) -> int: ...
    async def send_photo(self, image: bytes, text: str, silent: bool = False) -> int: ...
    async def close(self) -> None: ...


T = TypeVar("T")


class _Link(Generic[T]):
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

    def __init__(self, link: _Link[TelegramBot]) -> None:
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


class DiscordSender:
    transport = "discord"

    def __init__(self, link: _Link[DiscordBot] | None, webhook: DiscordHook | None) -> None:
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


def telegram_alert_chats(tg: TelegramSettings) -> list[str]:
    return list(tg.alert_chats) or [user for user in tg.users if not user.startswith("-")]


def discord_alert_chats(dc: DiscordSettings) -> list[str]:
    if dc.token is not None and dc.alert_channel_id:
        return [dc.alert_channel_id]
    return [WEBHOOK_CHAT] if dc.webhook_url is not None else []


def alert_destinations(telegram: TelegramSettings | None, discord: DiscordSettings | None) -> dict[str, list[str]]:
    """The chats that receive alerts, per configured transport (the outbox's destinations)."""
    destinations: dict[str, list[str]] = {}
    if telegram is not None:
        destinations["telegram"] = telegram_alert_chats(telegram)
    if discord is not None:
        destinations["discord"] = discord_alert_chats(discord)
    return destinations


class ChatRuntime:
    def __init__(
        self,
        *,
        telegram: TelegramSettings | None,
        discord: DiscordSettings | None,
        alerts: AlertSettings,
        timezone: str,
        outbox: Outbox,
        state: StateStore,
        backend: ChatBackend,
        reader: Reader,
        subscribe: Callable[[Callable[[Event], None]], object],
        clock: Callable[[], datetime],
        redact: Callable[[str], str] = str,
    ) -> None:
        self.telegram_settings, self.discord_settings = telegram, discord
        self.alerts, self.timezone = alerts, timezone
        self.enabled = telegram is not None or discord is not None
        self.outbox = outbox
        self.outbox.suppress = self._suppressed
        self.state, self.backend, self.reader, self.clock = state, backend, reader, clock
        self._redact = redact
        self.telegram: _Link[TelegramBot] | None = None
        self.discord: _Link[DiscordBot] | None = None
        self.webhook: DiscordHook | None = None
        self.dispatchers: list[Dispatcher] = []
        self.conflict: str | None = None
        self.ops: ChatOps | None = None
        self.summary = DailySummary(reader=reader, chart=backend.chart, outbox=outbox, at=alerts.daily_summary_at,
                                    timezone=timezone, clock=clock)
        self._stopping = False
        if self.enabled:
            subscribe(self.outbox.publish)

    def _suppressed(self, event: Event) -> bool:
        # Once stop() has announced the stop, the daemon's own final "stopped" event would only arrive next start.
        return self._stopping and event.kind == "daemon" and event.summary.endswith("stopped")

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Never raises: chat problems are logged (and reported by /health), the daemon runs on."""
        if not self.enabled:
            return
        try:
            await self._start()
        except Exception:
            log.exception("chat-ops failed to start; trading is not affected")

    async def _start(self) -> None:
        self.outbox.flush()
        self.outbox.restart()
        self._check_last_run()
        tg, dc = self.telegram_settings, self.discord_settings
        auth = ChatAuth(
            telegram=TransportAuth(users=tg.users, chats=tg.chats) if tg else TransportAuth(),
            discord=TransportAuth(users=dc.users, chats=dc.chats) if dc else TransportAuth(),
        )
        self.ops = ChatOps(self.backend, auth, clock=self.clock,
                           confirm_ttl=timedelta(seconds=self.alerts.confirm_seconds), redact=self._redact)
        max_backoff = self.alerts.max_backoff_seconds
        if tg is not None:
            self.telegram = self._telegram_link(tg)
            self.dispatchers.append(Dispatcher(self.outbox, TelegramSender(self.telegram), max_backoff=max_backoff))
        if dc is not None:
            if dc.token is not None:
                self.discord = self._discord_link(dc)
            if dc.webhook_url is not None:
                from notifiers.discord_bot import DiscordWebhookAlerts

                self.webhook = DiscordWebhookAlerts(dc.webhook_url.get_secret_value())
            self.dispatchers.append(Dispatcher(self.outbox, DiscordSender(self.discord, self.webhook),
                                               max_backoff=max_backoff))
        links = [link for link in (self.telegram, self.discord) if link is not None]
        results = await asyncio.gather(*(link.ensure() for link in links), return_exceptions=True)
        for link, result in zip(links, results, strict=True):
            if isinstance(result, BaseException):
                log.error("%s is not reachable (%s); alerts queue and are retried", link.name, link.error)
        for dispatcher in self.dispatchers:
            dispatcher.start()

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Add the daily summaries to the daemon's scheduler (see `DailySummary.schedule`)."""
        if self.enabled:
            self.summary.schedule(scheduler)

    def _telegram_link(self, tg: TelegramSettings) -> _Link[TelegramBot]:
        from notifiers.telegram_bot import TelegramTransport

        def build() -> TelegramBot:
            return TelegramTransport(tg.token.get_secret_value(), self.ops, base_url=tg.base_url,
                                     poll_timeout=tg.poll_timeout, max_retry_after=5.0,
                                     on_conflict=self._on_conflict)

        async def start(bot: TelegramBot) -> None:
            await bot.start(polling=tg.polling and bool(tg.users))

        async def stop(bot: TelegramBot) -> None:
            await bot.stop()

        return _Link("Telegram", build, start, stop)

    def _discord_link(self, dc: DiscordSettings) -> _Link[DiscordBot]:
        from notifiers.discord_bot import DiscordTransport

        assert dc.token is not None
        token = dc.token.get_secret_value()

        def build() -> DiscordBot:
            return DiscordTransport(
                token, self.ops if dc.users else None,
                alert_channel_id=int(dc.alert_channel_id) if dc.alert_channel_id else None,
                command_guild_id=int(dc.command_guild_id) if dc.command_guild_id else None,
                connect_timeout=CONNECT_SECONDS,
            )

        async def start(bot: DiscordBot) -> None:
            await bot.start()

        async def stop(bot: DiscordBot) -> None:
            await bot.stop()

        return _Link("Discord", build, start, stop)

    async def stop(self) -> None:
        """Stop taking commands, announce the stop, deliver what can go in time, close the transports."""
        if not self.enabled or self._stopping:
            return
        self._stopping = True
        try:
            await self._stop()
        except Exception:
            log.exception("chat-ops did not stop cleanly")

    async def _stop(self) -> None:
        if self.telegram is not None and self.telegram.up and self.telegram.obj is not None:
            with contextlib.suppress(Exception):  # no new commands while we drain
                await asyncio.wait_for(self.telegram.obj.stop_polling(), 5)
        self.outbox.add(notice("traderd stopping: no new signals; queued ones finish first.").model_copy(
            update={"kind": "daemon"}))
        drain = self.alerts.drain_seconds
        await asyncio.gather(*(dispatcher.stop(drain) for dispatcher in self.dispatchers))
        for link in (self.telegram, self.discord):
            if link is not None:
                await link.close()
        if self.webhook is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.webhook.close(), 5)
        with contextlib.suppress(Exception):
            self.state.put("chat", "run", {"clean": True, "at": self.clock().isoformat()})

    # ---- reports ---------------------------------------------------------------------------------

    def _check_last_run(self) -> None:
        last = self.state.get("chat", "run")
        if last is not None and not last.get("clean", True):
            pending = self.outbox.pending_count()
            text = (f"traderd recovered from an unclean stop (crash, kill or power loss) of the run started "
                    f"{last.get('at', '?')}: unfinished signals were re-queued or expired"
                    + (f"; {pending} alert(s) from before follow." if pending else "."))
            self.outbox.add(notice(text).model_copy(update={"kind": "daemon"}))
        self.state.put("chat", "run", {"clean": False, "at": self.clock().isoformat()})

    def _on_conflict(self, message: str) -> None:
        self.conflict = message
        others = [t for t in self.outbox.destinations if t != "telegram"]
        if others:
            self.outbox.add(notice("Telegram: " + message), only=others)

    def health(self) -> list[HealthCheck]:
        checks = []
        for link in (self.telegram, self.discord):
            if link is not None:
                checks.append(HealthCheck(name=link.name.lower(), ok=link.up, detail=link.error or ""))
        if self.conflict:
            checks.append(HealthCheck(name="telegram polling", ok=False, detail="409: another instance polls"))
        for dispatcher in self.dispatchers:
            if dispatcher.last_error:
                checks.append(HealthCheck(name=f"{dispatcher.transport} alerts", ok=False,
                                          detail=dispatcher.last_error[:120]))
        checks.append(HealthCheck(name="alerts queued", ok=True, detail=str(self.outbox.pending_count())))
        return checks

    async def send_daily_summary(self, day: datetime | None = None, *, accounts: Collection[str] | None = None,
                                 label: str | None = None) -> None:
        await self.summary.send(day, accounts=accounts, label=label)
