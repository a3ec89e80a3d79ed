"""Discord transport: discord.py slash commands and confirm buttons over the chat-ops core, plus alert sending.

`DiscordTransport` runs a discord.py `Client` with an `app_commands.CommandTree` holding one slash command per
chat-ops command, with typed options (account as a string, period as a choice, n as a bounded integer;
`/strategy` has a required `action` choice, pause or resume, and a required `name` string, so it reads like
the text command `/strategy pause NAME` and stays one entry of `COMMANDS`), synced at login. Answers go out
as interaction responses; confirmation buttons are `ConfirmButton` dynamic items (custom id
`td:<ok|no>:<key>`), so a press is routed to `ChatHandler.confirm` even if the bot restarted, and the
question message is edited into the result. `send_alert` posts to a configured channel (`silent`
suppresses the notification). `DiscordWebhookAlerts` is the push-only mode: a channel webhook URL, no bot
token. discord.py handles Discord's rate limits (it waits out 429s). No business logic lives here.

`api_base` sends this client's REST calls (and its interaction answers and webhook posts) to another
Discord-compatible server, e.g. a test stand-in, without touching discord.py's process-wide defaults; the
gateway is then the one that server's `GET /gateway/bot` names, unless `gateway_url` is given. `claim(id)`
(optional) is asked before an interaction is handled and False means "handled before": nothing is done.
`probe()` asks Discord (`GET /gateway/bot`) whether it answers, for the outbox after an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.webhook.async_ import async_context

from daemon.command_table import COMMANDS
from daemon.domain import ChatHandler, ChatIdentity, ChatReply, ChatRequest, Period
from notifiers.discord_base import DEFAULT_API_BASE, RebasedHTTPClient, RebasedWebhookAdapter, rebase

log = logging.getLogger(__name__)
FENCE = "```"
LIMIT = 2000
CUSTOM_ID = r"td:(?P<decision>ok|no):(?P<key>[A-Za-z0-9_-]{4,64})"
PROBE_SECONDS = 5.0
Claim = Callable[[str], Awaitable[bool]]


def _escaped(text: str) -> str:
    parts = text.split(FENCE)
    return FENCE.join(part if i % 2 else discord.utils.escape_markdown(part) for i, part in enumerate(parts))


def alert_length(text: str) -> int:
    """How long `text` is as sent (markdown escaped), before `render` would cut it to `LIMIT`."""
    return len(_escaped(text))


def retry_after_of(exc: BaseException) -> float | None:
    """discord.py waits out rate limits itself; a 429 that still surfaces says how long to wait."""
    if isinstance(exc, discord.HTTPException) and exc.status == 429:
        retry = getattr(exc.response, "headers", {}).get("Retry-After")
        try:
            return float(retry) if retry is not None else 5.0
        except ValueError:
            return 5.0
    return None


def is_permanent(exc: BaseException) -> bool:
    """Errors a retry will not fix: the channel or webhook is gone, or the bot may not post there."""
    return isinstance(exc, discord.Forbidden | discord.NotFound)


def render(text: str) -> str:
    """The core's text for Discord: fenced tables as they are, markdown escaped elsewhere, within 2000 chars."""
    out = _escaped(text)
    if len(out) <= LIMIT:
        return out
    cut = out[: LIMIT - 20].rsplit("\n", 1)[0]
    return cut + ("\n" + FENCE if cut.count(FENCE) % 2 else "") + "\n(cut short)"


class ConfirmButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID):
    """A confirm/decline button; its custom id carries the chat-ops token."""

    def __init__(self, label: str, token: str) -> None:
        style = discord.ButtonStyle.danger if token.startswith("ok:") else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label[:80], custom_id=f"td:{token}", style=style))
        self.token = token

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str]
    ) -> ConfirmButton:
        label = getattr(item, "label", None) or ""
        return cls(label, f"{match['decision']}:{match['key']}")

    async def callback(self, interaction: discord.Interaction) -> None:
        transport = getattr(interaction.client, "transport", None)
        if isinstance(transport, DiscordTransport):
            await transport.on_button(interaction, self.token)


def png_file(image: bytes) -> discord.File:
    return discord.File(io.BytesIO(image), filename="chart.png")


def confirm_view(reply: ChatReply) -> discord.ui.View | None:
    if not reply.buttons:
        return None
    view = discord.ui.View(timeout=None)
    for label, token in reply.buttons:
        view.add_item(ConfirmButton(label, token))
    view.stop()  # presses are routed by the dynamic item, not by this view instance
    return view


def identity(interaction: discord.Interaction) -> dict[str, Any]:
    return {
        "transport": "discord",
        "user_id": str(interaction.user.id),
        "chat_id": str(interaction.channel_id),
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "user_name": interaction.user.name,
    }


class _Client(discord.Client):
    def __init__(self, transport: DiscordTransport, **options: Any) -> None:
        super().__init__(**options)
        self.transport = transport

    async def setup_hook(self) -> None:
        self.add_dynamic_items(ConfirmButton)
        await self.transport.sync_commands()


class DiscordTransport:
    """One bot token: slash commands (when `chat` is given) plus alerts to `alert_channel_id`."""

    def __init__(
        self,
        token: str,
        chat: ChatHandler | None = None,
        *,
        alert_channel_id: int | None = None,
        command_guild_id: int | None = None,
        handler_timeout: float = 30.0,
        connect_timeout: float = 60.0,
        guild_ready_timeout: float = 2.0,
        api_base: str = DEFAULT_API_BASE,
        gateway_url: str | None = None,
        claim: Claim | None = None,
    ) -> None:
        self.token = token
        self.chat = chat
        self.claim = claim
        self.api_base = api_base.rstrip("/")
        self.gateway_url = gateway_url
        self.alert_channel_id = alert_channel_id
        self.command_guild = discord.Object(command_guild_id) if command_guild_id else None
        self.handler_timeout = handler_timeout
        self.connect_timeout = connect_timeout
        self.client = _Client(self, intents=discord.Intents(guilds=True), guild_ready_timeout=guild_ready_timeout)
        rebase(self.client, self.api_base, gateway_url)
        # Interaction answers use the webhook adapter in the context: the gateway task (and the handlers it
        # starts) run in a context holding one that knows `api_base`.
        self._context = contextvars.copy_context()
        self._context.run(async_context.set, RebasedWebhookAdapter(self.api_base))
        self.tree = app_commands.CommandTree(self.client)
        self._runner: asyncio.Task[None] | None = None
        if chat is not None:
            for command in build_commands(self):
                self.tree.add_command(command)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Log in (REST), sync slash commands, connect the gateway and wait (bounded) until READY."""
        await self.client.login(self.token)
        http: RebasedHTTPClient = self.client.http  # type: ignore[assignment]
        if self.gateway_url is None and self.api_base != DEFAULT_API_BASE:  # ask that server where its gateway is
            http.gateway = yarl.URL((await http.get_bot_gateway())[1])
        self._runner = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway",
                                           context=self._context)
        ready = asyncio.create_task(self.client.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, self._runner}, timeout=self.connect_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._runner in done:
                self._runner.result()  # raises why the gateway failed
            raise TimeoutError("Discord gateway did not become ready in time")

    async def stop(self) -> None:
        await self.client.close()
        if self._runner is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._runner, 10)

    async def probe(self) -> bool:
        """Whether Discord answers (`GET /gateway/bot`, bounded)."""
        try:
            await asyncio.wait_for(self.client.http.get_bot_gateway(), PROBE_SECONDS)
        except Exception:
            return False
        return True

    async def _first(self, interaction: discord.Interaction) -> bool:
        """False for an interaction handled before (a redelivery): it is then left alone."""
        return self.claim is None or await self.claim(str(interaction.id))

    async def sync_commands(self) -> None:
        if self.chat is None:
            return
        if self.command_guild is not None:  # guild commands appear at once; global ones can take a while
            self.tree.copy_global_to(guild=self.command_guild)
            await self.tree.sync(guild=self.command_guild)
        else:
            await self.tree.sync()

    # ------------------------------------------------------------------ alerts

    async def send_alert(self, text: str, silent: bool = False, channel_id: int | None = None) -> int:
        """Post an alert to the channel; returns the message id. Raises `discord.HTTPException` on failure."""
        target = channel_id or self.alert_channel_id
        if target is None:
            raise ValueError("no Discord alert channel configured")
        message = await self.client.get_partial_messageable(target).send(render(text), silent=silent)
        return message.id

    async def send_photo(self, image: bytes, text: str, silent: bool = False, channel_id: int | None = None) -> int:
        """Post an alert with a PNG attached; raises like `send_alert`."""
        target = channel_id or self.alert_channel_id
        if target is None:
            raise ValueError("no Discord alert channel configured")
        message = await self.client.get_partial_messageable(target).send(
            render(text), file=png_file(image), silent=silent)
        return message.id

    # ------------------------------------------------------------------ interactions -> core

    async def run_command(self, interaction: discord.Interaction, name: str, args: list[str]) -> None:
        if self.chat is None or not await self._first(interaction):
            return
        request = ChatRequest(**identity(interaction), command=name, args=args, text=" ".join([f"/{name}", *args]))
        reply = await self._bounded(self.chat.handle(request))
        if reply is None:  # not authorized: ignored (audited by the core)
            return
        view = confirm_view(reply)
        await interaction.response.send_message(
            render(reply.text),
            view=view if view is not None else discord.utils.MISSING,
            file=png_file(reply.image) if reply.image is not None else discord.utils.MISSING,
            ephemeral=reply.ephemeral,
            silent=reply.silent,
        )

    async def on_button(self, interaction: discord.Interaction, token: str) -> None:
        if self.chat is None or not await self._first(interaction):
            return
        await interaction.response.defer()  # acknowledge at once; a flatten may take longer than 3 s
        reply = await self._bounded(self.chat.confirm(token, ChatIdentity(**identity(interaction))))
        if reply is None:
            return
        if reply.ephemeral:
            await interaction.followup.send(render(reply.text), ephemeral=True)
        else:
            await interaction.edit_original_response(content=render(reply.text), view=None)

    async def _bounded(self, call: Any) -> ChatReply | None:
        try:
            return await asyncio.wait_for(call, self.handler_timeout)
        except TimeoutError:
            return ChatReply(text="The daemon did not answer in time; try again.")


def build_commands(transport: DiscordTransport) -> list[app_commands.Command[Any, ..., None]]:
    """One slash command per chat-ops command, with typed options."""
    summaries = {spec.name: spec.summary[:100] for spec in COMMANDS}

    def plain(name: str) -> Any:
        async def callback(interaction: discord.Interaction) -> None:
            await transport.run_command(interaction, name, [])

        return callback

    def with_account(name: str, what: str) -> Any:
        @app_commands.describe(account=what)
        async def callback(interaction: discord.Interaction, account: str | None = None) -> None:
            await transport.run_command(interaction, name, [account] if account else [])

        return callback

    @app_commands.describe(period="today (default), week or month", account="one account (default: all)")
    async def pnl(
        interaction: discord.Interaction,
        period: Period | None = None,
        account: str | None = None,
    ) -> None:
        args = [a for a in (period, account) if a]
        await transport.run_command(interaction, "pnl", args)

    @app_commands.describe(account="one account (default: all)", period="today (default), week or month")
    async def chart(
        interaction: discord.Interaction,
        account: str | None = None,
        period: Period | None = None,
    ) -> None:
        await transport.run_command(interaction, "chart", [a for a in (account, period) if a])

    @app_commands.describe(n="how many recent fills (default 10)")
    async def trades(interaction: discord.Interaction, n: app_commands.Range[int, 1, 50] | None = None) -> None:
        await transport.run_command(interaction, "trades", [str(n)] if n is not None else [])

    @app_commands.describe(action="pause, or resume (also re-enables a strategy disabled after an error)",
                           name="the strategy's name, as /strategies lists it")
    async def strategy(interaction: discord.Interaction, action: Literal["pause", "resume"], name: str) -> None:
        await transport.run_command(interaction, "strategy", [action, name])

    @app_commands.describe(symbol="the position's symbol", atr="the stop's distance in ATRs (14 bars of 5m)",
                           account="the account (default: the one holding the symbol)")
    async def stop(interaction: discord.Interaction, symbol: str, atr: str, account: str | None = None) -> None:
        await transport.run_command(interaction, "stop", [symbol, "atr", atr, *([account] if account else [])])

    @app_commands.describe(symbol="the position's symbol", after="30m, 2h, 3 bars of 5m, or at 15:55",
                           account="the account (default: the one holding the symbol)")
    async def exit_after(interaction: discord.Interaction, symbol: str, after: str, account: str | None = None
                         ) -> None:
        await transport.run_command(interaction, "exit_after", [symbol, *after.split(), *([account] if account
                                                                                           else [])])

    @app_commands.describe(n="how many days back, today included (default 7)")
    async def daily(interaction: discord.Interaction, n: app_commands.Range[int, 1, 31] | None = None) -> None:
        await transport.run_command(interaction, "daily", [str(n)] if n is not None else [])

    @app_commands.describe(symbol="the position's symbol, as /positions shows it",
                           account="the account holding it (needed when several do)")
    async def close(interaction: discord.Interaction, symbol: str, account: str | None = None) -> None:
        await transport.run_command(interaction, "close", [symbol, account] if account else [symbol])

    callbacks: dict[str, Any] = {"pnl": pnl, "chart": chart, "trades": trades, "strategy": strategy, "stop": stop,
                                 "exit_after": exit_after, "daily": daily, "close": close}
    for name in ("status", "accounts", "health", "strategies", "whoami", "help"):
        callbacks[name] = plain(name)
    for name in ("positions", "orders", "risk"):
        callbacks[name] = with_account(name, "one account (default: all)")
    for name in ("pause", "resume", "cancel", "flatten"):
        callbacks[name] = with_account(name, "account name, or all")
    return [
        app_commands.Command(name=spec.name, description=summaries[spec.name], callback=callbacks[spec.name])
        for spec in COMMANDS
    ]


class DiscordWebhookAlerts:
    """Push-only alerts through a channel webhook URL: no bot token, no commands."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None, *,
                 api_base: str = DEFAULT_API_BASE) -> None:
        self._own_session = session is None
        self.session = session or aiohttp.ClientSession()
        self.webhook = discord.Webhook.from_url(url, session=self.session)
        self.adapter = RebasedWebhookAdapter(api_base.rstrip("/"))

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        token = async_context.set(self.adapter)
        try:
            return await call()
        finally:
            async_context.reset(token)

    async def send_alert(self, text: str, silent: bool = False) -> int:
        message = await self._call(lambda: self.webhook.send(render(text), silent=silent, wait=True))
        return int(message.id)

    async def send_photo(self, image: bytes, text: str, silent: bool = False) -> int:
        message = await self._call(
            lambda: self.webhook.send(render(text), file=png_file(image), silent=silent, wait=True))
        return int(message.id)

    async def probe(self) -> bool:
        """Whether the webhook answers (a GET reads it and posts nothing)."""
        try:
            await asyncio.wait_for(self._call(self.webhook.fetch), PROBE_SECONDS)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        if self._own_session:
            await self.session.close()
