"""Chat-ops polish: /close and /daily in the core, names in the audit, the users config forms, per-user Telegram
menus (the real python-telegram-bot against the stand-in), and Discord's `api_base`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from config.chat import DiscordSettings, TelegramSettings
from daemon.chat.commands import ChatAuth, ChatOps, ChatReply, ChatRequest, TransportAuth
from notifiers.discord_bot import DiscordTransport
from notifiers.telegram_bot import TelegramTransport
from tests.standins.chat_backend import FakeBackend
from tests.standins.discord_api import CHANNEL_ID, DiscordStandin
from tests.standins.telegram_api import TelegramStandin

AUTH = ChatAuth(telegram=TransportAuth.of({"100": ("operator", "Alice"), "200": ("viewer", None)}, []))


def req(text: str, user: str = "100") -> ChatRequest:
    parsed = ChatRequest.from_text("telegram", user, user, text)
    assert parsed is not None
    return parsed


async def ask(ops: ChatOps, text: str, user: str = "100") -> ChatReply:
    reply = await ops.handle(req(text, user))
    assert reply is not None
    return reply


@pytest.fixture
def env() -> tuple[ChatOps, FakeBackend]:
    backend = FakeBackend()
    return ChatOps(backend, AUTH), backend


async def test_close_asks_then_closes_one_position_once(env: tuple[ChatOps, FakeBackend]) -> None:
    ops, backend = env
    question = await ask(ops, "/close aapl")
    assert question.text.startswith("CLOSE AAPL on paper: buy 10 at market and cancel its working orders?")
    (label, yes), _no = question.buttons
    assert label == "Yes, close AAPL on paper" and not backend.closes
    who = req("/close aapl")
    done = await ops.confirm(yes, who)
    assert done is not None and done.text == "Close AAPL on paper: done. closed: buy 10 AAPL @ 188.00"
    [(account, symbol, actor, request_id)] = backend.closes
    assert (account, symbol, actor) == ("paper", "AAPL", "Alice (telegram:100)") and yes.endswith(request_id)
    again = await ops.confirm(yes, who)  # a double press: a pop-up, nothing done
    assert again is not None and again.ephemeral and len(backend.closes) == 1
    assert backend.positions_["topstep1"]  # the other account's position is untouched
    audit = [(a, act, target, ok) for a, act, target, ok, _ in backend.audits if act == "close"]
    assert audit == [("Alice (telegram:100)", "close", "AAPL on paper", True)] * 2


async def test_close_refuses_what_it_cannot_do(env: tuple[ChatOps, FakeBackend]) -> None:
    ops, backend = env
    assert (await ask(ops, "/close MSFT")).text == (
        "No open MSFT position. Open positions: AAPL (paper), ESH5 (topstep1).")
    assert (await ask(ops, "/close ESH5 paper")).text.startswith("No open ESH5 position on paper.")
    assert (await ask(ops, "/close")).text == "Usage: /close SYMBOL [account]"
    assert "needs the operator role" in (await ask(ops, "/close AAPL", user="200")).text
    backend.positions_["topstep1"].append(backend.positions_["paper"][0].model_copy(update={"account": "topstep1"}))
    assert (await ask(ops, "/close AAPL")).text == (
        "AAPL is held on paper, topstep1: say which, e.g. /close AAPL paper.")
    backend.groups_ = {"both": ["paper", "topstep1"]}
    assert "is a group" in (await ask(ops, "/close AAPL both")).text
    declined = await ask(ops, "/close AAPL topstep1")
    reply = await ops.confirm(declined.buttons[1][1], req("/close"))
    assert reply is not None and reply.text == "/close AAPL on topstep1 cancelled. Nothing was done."
    assert backend.closes == [] and ops.pending_count() == 0


async def test_daily_lists_days_and_totals(env: tuple[ChatOps, FakeBackend]) -> None:
    ops, _ = env
    text = " ".join((await ask(ops, "/daily", user="200")).text.split())
    assert text.startswith("P&L by day, last 7 days (realized, net of fees)")
    assert "Thu 02-27 paper -52.00 2" in text and "Mon 03-03 paper +116.00 4" in text
    assert "Mon 03-03 topstep1 +290.00 6" in text
    assert "TOTAL paper +64.00 6" in text and "TOTAL topstep1 +290.00 6" in text
    one = " ".join((await ask(ops, "/daily 1")).text.split())
    assert one.startswith("P&L by day, last 1 day ") and "02-27" not in one
    assert (await ask(ops, "/daily 0")).text == "/daily takes a number of days from 1 to 31, not 0."
    assert (await ask(ops, "/daily x")).text == "/daily takes a number of days (1-31), not 'x'."


async def test_actions_carry_the_configured_name(env: tuple[ChatOps, FakeBackend]) -> None:
    ops, backend = env
    await ask(ops, "/pause paper")
    assert backend.actors == ["Alice (telegram:100)"]
    assert ("Alice (telegram:100)", "pause", "paper", True, "executed") in backend.audits
    await ask(ops, "/resume paper", user="200")  # a viewer without a name: denied, audited by id
    assert ("telegram:200", "resume", "paper", False, "denied: viewer") in backend.audits


def test_users_take_a_role_or_a_role_and_name() -> None:
    tg = TelegramSettings(token="1:x", users={"111": "viewer", "222": {"role": "operator", "name": "Ana"}})
    assert (tg.users["111"].role, tg.users["111"].name) == ("viewer", None)
    assert (tg.users["222"].role, tg.users["222"].name) == ("operator", "Ana")
    with pytest.raises(ValidationError, match="viewer"):
        TelegramSettings(token="1:x", users={"111": "admin"})
    with pytest.raises(ValidationError, match="extra"):
        TelegramSettings(token="1:x", users={"111": {"role": "viewer", "nick": "x"}})
    with pytest.raises(ValidationError, match="numeric id"):
        DiscordSettings(token="t", users={"ana": {"role": "operator"}})
    assert DiscordSettings(token="t").api_base == "https://discord.com/api/v10"
    with pytest.raises(ValidationError, match="absolute"):
        DiscordSettings(token="t", api_base="discord.example/api")


# ------------------------------------------------------------------------------------------------ Telegram menus


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


async def test_menus_per_user_and_role(tg: TelegramStandin) -> None:
    tg.known_chats_only = True
    tg.known_chats.add(100)  # the operator has written to the bot before; the viewer has not
    ops = ChatOps(FakeBackend(), ChatAuth(telegram=TransportAuth(users={"100": "operator", "200": "viewer"})))
    bot = TelegramTransport(tg.token, ops, base_url=tg.base_url, poll_timeout=1,
                            menus={"100": "operator", "200": "viewer"}, group_chats=["-500", "100"])
    await asyncio.wait_for(bot.start(), 10)
    try:
        assert "flatten" in tg.menu(100) and "close" in tg.menu(100) and "daily" in tg.menu(100)
        assert tg.menu(666) == ["whoami"]  # a stranger sees only how to find their id
        assert tg.menu(200) == ["whoami"]  # Telegram refused the viewer's chat: not written from yet
        assert "flatten" in tg.menu(100, -500) and "flatten" not in tg.menu(200, -500)
        await tg.send_command(200, 200, "/status")  # the viewer writes: their chat exists, the menu follows
        await tg.wait_for(lambda: tg.sent_to(200), within=10)
        menu = tg.menu(200)
        assert "pnl" in menu and "daily" in menu and "flatten" not in menu and "close" not in menu
    finally:
        await asyncio.wait_for(bot.stop(), 10)


# ------------------------------------------------------------------------------------------------ Discord


async def test_discord_goes_to_the_configured_api_base() -> None:
    """No discord.py default is patched: REST, the gateway (named by GET /gateway/bot) and the interaction
    answers all reach the stand-in through `api_base` alone."""
    dc = await DiscordStandin().start()
    ops = ChatOps(FakeBackend(), ChatAuth(discord=TransportAuth(users={"9001": "operator"})))
    bot = DiscordTransport(dc.token, ops, alert_channel_id=int(CHANNEL_ID), guild_ready_timeout=0.05,
                           connect_timeout=10, api_base=dc.api_base)
    try:
        await asyncio.wait_for(bot.start(), 15)
        assert dc.identifies and dc.commands["global"]
        await dc.slash("daily", {"n": 3})
        await dc.wait_for(lambda: dc.callbacks, within=10)
        assert dc.callbacks[0]["data"]["content"].startswith("P&L by day, last 3 days")
        await bot.send_alert("hello")
        assert dc.messages[-1]["content"] == "hello" and await bot.probe()
    finally:
        await asyncio.wait_for(bot.stop(), 15)
        await dc.stop()
    assert not await asyncio.wait_for(bot.probe(), 10)  # nobody answers any more

