"""`traderd check --online`: log in everywhere the configuration points, read only, one line per check.

Each enabled account's broker is connected and asked for its account state, and a broker that offers a dry
run (tastytrade) runs the preflight checks of a small order (no order is placed, nothing is cancelled; the
simulated paper broker has nothing to log in to); Telegram answers `getMe`; Discord logs the
bot in (or, push-only, reads its webhook); the database is reached with `SELECT 1` (an SQLite file that
does not exist yet is reported as to be created, not created). Every check is bounded in time. A failure
line says what failed and how to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from brokers.base import AuthenticationFailed, BrokerError, OrderRejected
from brokers.registry import build_broker
from config.chat import DiscordSettings, TelegramSettings
from config.settings import AccountSettings, Settings

CHECK_SECONDS = 20.0


@runtime_checkable
class DryRunner(Protocol):
    """A broker that can run an order's preflight checks without placing it (tastytrade's dry run)."""

    async def dry_run(self) -> str: ...


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"ok    {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}" + (f" -- fix: {self.fix}" if self.fix else "")


async def check_broker(name: str, account: AccountSettings, state_dir: Path) -> CheckResult:
    label = f"broker {name} ({account.broker})"
    section = f"[accounts.{name}.{account.broker}]"
    if account.broker == "paper":  # simulated in-process; opening its ledger would rewrite it on close
        return CheckResult(name=label, ok=True, detail="simulated by traderd, nothing to log in to")
    try:
        broker = build_broker(name, account, state_dir)
    except ValueError as exc:
        return CheckResult(name=label, ok=False, detail=str(exc), fix=f"correct accounts.{name}.broker")
    verdict = ""
    try:
        await broker.connect()
        state = await broker.account_state()
        if isinstance(broker, DryRunner):  # a broker with preflight checks proves the account can trade
            verdict = "; " + await broker.dry_run()
    except OrderRejected as exc:
        return CheckResult(name=label, ok=False, detail=f"logged in, but the dry run was refused: {exc.reason}",
                           fix=f"check the account's trading permissions and funds, or check_symbol in {section}")
    except AuthenticationFailed as exc:
        return CheckResult(name=label, ok=False, detail=f"login refused: {exc.reason}",
                           fix=f"check the credentials in {section} (or their credential files)")
    except BrokerError as exc:
        return CheckResult(name=label, ok=False, detail=f"unreachable: {exc.reason}",
                           fix=f"check base_url in {section}, the network, and the broker's status page")
    except Exception as exc:  # e.g. an unreadable paper ledger: report it as this account's failure
        return CheckResult(name=label, ok=False, detail=f"{type(exc).__name__}: {exc}",
                           fix=f"see the message; check {section} and daemon.state_dir")
    finally:
        with contextlib.suppress(Exception):
            await broker.close()
    return CheckResult(name=label, ok=True, detail=f"logged in, equity {state.equity} {state.currency}{verdict}")


async def check_telegram(tg: TelegramSettings) -> CheckResult:
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    bot = Bot(tg.token.get_secret_value(), base_url=tg.base_url)
    try:
        me = await bot.get_me()
    except InvalidToken:
        return CheckResult(name="telegram", ok=False, detail="getMe: the token was refused",
                           fix="check telegram.token (from @BotFather; /token there shows it again)")
    except TelegramError as exc:
        return CheckResult(name="telegram", ok=False, detail=f"getMe failed: {exc}",
                           fix="check telegram.base_url and that this host reaches it over HTTPS")
    finally:
        with contextlib.suppress(Exception):
            await bot.shutdown()
    users = len(tg.users)
    return CheckResult(name="telegram", ok=True, detail=f"bot @{me.username} answers getMe; {users} user(s) allowed")


async def check_discord(dc: DiscordSettings) -> CheckResult:
    if dc.token is None:
        return await _check_discord_webhook(dc)
    import discord

    from notifiers.discord_base import rebase

    client = discord.Client(intents=discord.Intents.none())
    rebase(client, dc.api_base, dc.gateway_url)
    try:
        await client.login(dc.token.get_secret_value())
        user = client.user
    except discord.LoginFailure:
        return CheckResult(name="discord", ok=False, detail="login: the bot token was refused",
                           fix="check discord.token (Developer Portal > your app > Bot > Reset Token)")
    except (discord.HTTPException, OSError) as exc:
        return CheckResult(name="discord", ok=False, detail=f"login failed: {exc}",
                           fix="check that this host reaches discord.com over HTTPS")
    finally:
        await client.close()
    return CheckResult(name="discord", ok=True, detail=f"bot {user} logged in")


async def _check_discord_webhook(dc: DiscordSettings) -> CheckResult:
    if dc.webhook_url is None:
        return CheckResult(name="discord", ok=False, detail="neither discord.token nor discord.webhook_url is set",
                           fix="set one of them, or remove the [discord] section")
    try:
        async with httpx.AsyncClient(timeout=CHECK_SECONDS) as client:
            response = await client.get(dc.webhook_url.get_secret_value())  # reads the webhook, posts nothing
    except httpx.HTTPError as exc:
        return CheckResult(name="discord webhook", ok=False, detail=f"unreachable: {type(exc).__name__}",
                           fix="check that this host reaches discord.com over HTTPS")
    if response.status_code != 200:
        return CheckResult(name="discord webhook", ok=False, detail=f"answered {response.status_code}",
                           fix="discord.webhook_url is wrong or the webhook was deleted: copy it again")
    return CheckResult(name="discord webhook", ok=True, detail="webhook exists")


def check_database(url: str) -> CheckResult:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            parent = next((p for p in path.parents if p.exists()), Path("/"))
            if not parent.is_dir() or not _writable(parent):
                return CheckResult(name="database", ok=False, detail=f"cannot create {path}",
                                   fix="make daemon.state_dir writable by the service user, or set store.url")
            return CheckResult(name="database", ok=True, detail=f"SQLite {path} will be created on first start")
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    engine = None
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except ModuleNotFoundError as exc:
        return CheckResult(name="database", ok=False, detail=f"driver missing: {exc.name}",
                           fix="install the PostgreSQL extra: pip install '/opt/traderd/src[postgres]'")
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200]
        return CheckResult(name="database", ok=False, detail=f"cannot connect: {reason}",
                           fix="check store.url, that the server runs, and the role's password or peer auth")
    finally:
        if engine is not None:
            engine.dispose()
    return CheckResult(name="database", ok=True, detail=f"{parsed.get_backend_name()} answers")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


async def _bounded(name: str, check: Callable[[], Awaitable[CheckResult]]) -> CheckResult:
    try:
        return await asyncio.wait_for(check(), CHECK_SECONDS)
    except TimeoutError:
        return CheckResult(name=name, ok=False, detail=f"no answer within {CHECK_SECONDS:.0f} s",
                           fix="check the address in the configuration and the network")


async def run_checks(settings: Settings) -> list[CheckResult]:
    """Every online check, in a stable order: brokers by account, Telegram, Discord, then the database."""
    checks: list[tuple[str, Callable[[], Awaitable[CheckResult]]]] = []
    for name, account in settings.enabled_accounts().items():
        checks.append((f"broker {name}", functools.partial(check_broker, name, account, settings.daemon.state_dir)))
    if settings.telegram is not None:
        tg = settings.telegram
        checks.append(("telegram", lambda: check_telegram(tg)))
    if settings.discord is not None:
        dc = settings.discord
        checks.append(("discord", lambda: check_discord(dc)))
    results = list(await asyncio.gather(*(_bounded(name, check) for name, check in checks)))
    results.append(await asyncio.to_thread(check_database, settings.database_url))
    return results
