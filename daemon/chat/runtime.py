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
Telegram token (logged, shown by /health, and sent as an alert on Discord if configured). Each transport gets
the users' menus (Telegram) and a `claim` of `Deliveries`, so an update delivered again after a restart is
skipped; the transport objects and their alert senders are `daemon.chat.links`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from config.chat import AlertSettings, DiscordSettings, TelegramSettings
from daemon.chat.alerts import notice
from daemon.chat.auth import ChatAuth, TransportAuth
from daemon.chat.commands import ChatOps
from daemon.chat.deliveries import Deliveries
from daemon.chat.links import (
    CONNECT_SECONDS,
    WEBHOOK_CHAT,
    DiscordBot,
    DiscordHook,
    DiscordSender,
    Link,
    TelegramBot,
    TelegramSender,
)
from daemon.chat.outbox import Dispatcher, Outbox
from daemon.chat.replies import ChatBackend, HealthCheck
from daemon.chat.summary import DailySummary
from daemon.domain import Event
from daemon.queries import Reader
from daemon.store.state import StateStore

log = logging.getLogger("traderd.chat")


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
        self.deliveries = Deliveries(state, clock)
        self.telegram: Link[TelegramBot] | None = None
        self.discord: Link[DiscordBot] | None = None
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
        self.deliveries.prune()
        tg, dc = self.telegram_settings, self.discord_settings
        auth = ChatAuth(
            telegram=TransportAuth.of({u: (c.role, c.name) for u, c in tg.users.items()}, tg.chats) if tg
            else TransportAuth(),
            discord=TransportAuth.of({u: (c.role, c.name) for u, c in dc.users.items()}, dc.chats) if dc
            else TransportAuth(),
        )
        self.ops = ChatOps(self.backend, auth, clock=self.clock,
                           confirm_ttl=timedelta(seconds=self.alerts.confirm_seconds), redact=self._redact)
        def new_dispatcher(sender: TelegramSender | DiscordSender) -> Dispatcher:
            return Dispatcher(self.outbox, sender, max_backoff=self.alerts.max_backoff_seconds,
                              probe_seconds=self.alerts.probe_seconds)

        if tg is not None:
            self.telegram = self._telegram_link(tg)
            self.dispatchers.append(new_dispatcher(TelegramSender(self.telegram)))
        if dc is not None:
            if dc.token is not None:
                self.discord = self._discord_link(dc)
            if dc.webhook_url is not None:
                from notifiers.discord_bot import DiscordWebhookAlerts

                self.webhook = DiscordWebhookAlerts(dc.webhook_url.get_secret_value(), api_base=dc.api_base)
            self.dispatchers.append(new_dispatcher(DiscordSender(self.discord, self.webhook)))
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

    def _telegram_link(self, tg: TelegramSettings) -> Link[TelegramBot]:
        from notifiers.telegram_bot import TelegramTransport

        def build() -> TelegramBot:
            return TelegramTransport(tg.token.get_secret_value(), self.ops, base_url=tg.base_url,
                                     poll_timeout=tg.poll_timeout, max_retry_after=5.0,
                                     on_conflict=self._on_conflict,
                                     menus={user: entry.role for user, entry in tg.users.items()},
                                     group_chats=[*tg.chats, *tg.alert_chats],
                                     claim=self.deliveries.claimer("telegram"))

        async def start(bot: TelegramBot) -> None:
            await bot.start(polling=tg.polling and bool(tg.users))

        async def stop(bot: TelegramBot) -> None:
            await bot.stop()

        return Link("Telegram", build, start, stop)

    def _discord_link(self, dc: DiscordSettings) -> Link[DiscordBot]:
        from notifiers.discord_bot import DiscordTransport

        assert dc.token is not None
        token = dc.token.get_secret_value()

        def build() -> DiscordBot:
            return DiscordTransport(
                token, self.ops if dc.users else None,
                alert_channel_id=int(dc.alert_channel_id) if dc.alert_channel_id else None,
                command_guild_id=int(dc.command_guild_id) if dc.command_guild_id else None,
                connect_timeout=CONNECT_SECONDS, api_base=dc.api_base, gateway_url=dc.gateway_url,
                claim=self.deliveries.claimer("discord"),
            )

        async def start(bot: DiscordBot) -> None:
            await bot.start()

        async def stop(bot: DiscordBot) -> None:
            await bot.stop()

        return Link("Discord", build, start, stop)

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
