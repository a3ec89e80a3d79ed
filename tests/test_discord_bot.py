"""End-to-end tests of the Discord transport: the real discord.py client, built by `notifiers.discord_bot`,
against a loopback stand-in of Discord's REST API and gateway, over the real chat-ops core.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from daemon.chat.commands import ChatAuth, ChatOps, TransportAuth
from notifiers.discord_bot import DiscordTransport, DiscordWebhookAlerts, render
from tests.standins.chat_backend import FakeBackend
from tests.standins.discord_api import CHANNEL_ID, GUILD_ID, DiscordStandin

OPERATOR, VIEWER, STRANGER = "9001", "9002", "6666"
AUTH = ChatAuth(discord=TransportAuth(users={OPERATOR: "operator", VIEWER: "viewer"}, chats=[GUILD_ID]))


@pytest.fixture
async def api() -> AsyncIterator[DiscordStandin]:
    standin = await DiscordStandin().start()
    yield standin
    await standin.stop()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def bot(api: DiscordStandin, backend: FakeBackend) -> AsyncIterator[DiscordTransport]:
    transport = DiscordTransport(
        api.token,
        ChatOps(backend, AUTH),
        alert_channel_id=int(CHANNEL_ID),
        guild_ready_timeout=0.05,
        connect_timeout=10,
        api_base=api.api_base,
    )
    await asyncio.wait_for(transport.start(), 15)
    yield transport
    await asyncio.wait_for(transport.stop(), 15)


def test_render_escapes_outside_tables() -> None:
    assert render("acct_1 *x*\n```\nacct_1 *x*\n```") == "acct\\_1 \\*x\\*\n```\nacct_1 *x*\n```"


async def test_connects_and_registers_typed_commands(api: DiscordStandin, bot: DiscordTransport) -> None:
    assert len(api.identifies) == 1 and api.identifies[0]["token"] == api.token
    assert api.heartbeats >= 1
    commands = {c["name"]: c for c in api.commands["global"]}
    assert {"status", "pnl", "positions", "flatten", "whoami", "trades"} <= set(commands)
    period = next(o for o in commands["pnl"]["options"] if o["name"] == "period")
    assert [c["value"] for c in period["choices"]] == ["today", "week", "month"] and period["type"] == 3
    n = commands["trades"]["options"][0]
    assert (n["type"], n["min_value"], n["max_value"]) == (4, 1, 50)
    assert commands["flatten"]["options"][0]["name"] == "account"


async def test_slash_command_answered(api: DiscordStandin, bot: DiscordTransport) -> None:
    await api.slash("pnl", {"period": "week", "account": "topstep1"})
    [response] = await api.wait_for(lambda: api.callbacks)
    assert response["type"] == 4
    content = response["data"]["content"]
    assert content.startswith("P&L week - topstep1") and "+1,218.10" in content and "```" in content
    await api.slash("trades", {"n": 3}, user_id=VIEWER)
    await api.wait_for(lambda: len(api.callbacks) == 2)
    assert api.callbacks[1]["data"]["content"].startswith("Last 3 fills")


async def test_button_confirm_flow(api: DiscordStandin, bot: DiscordTransport, backend: FakeBackend) -> None:
    asked = await api.slash("flatten", {"account": "all"})
    await api.wait_for(lambda: api.callbacks)
    question = api.original(asked)
    assert question is not None and "close 2 position(s)" in question["content"]
    buttons = question["components"][0]["components"]
    assert [b["label"] for b in buttons] == ["Yes, flatten all", "No"]
    yes = buttons[0]["custom_id"]
    assert yes.startswith("td:ok:") and backend.flatten_calls == 0
    shown = copy.deepcopy(question)  # the message as the phone shows it, buttons still there
    await api.click(yes, question)
    await api.click(yes, shown)  # double press before the first edit lands
    await api.wait_for(lambda: len(api.edits) == 1 and len(api.followups) == 1)
    assert {c["type"] for c in api.callbacks[-2:]} == {6}  # deferred updates
    [late] = api.followups  # the second press: only its presser sees it, the message is not touched
    assert late["content"] == "This confirmation has expired or was already used. Nothing was done."
    assert int(late.get("flags", 0)) & 64  # ephemeral
    [done] = api.edits
    assert "closed: sell 2 ESH5 @ 5,012.50" in done["content"] and done["components"] == []
    assert backend.flatten_calls == 1 and not backend.positions_["topstep1"]


async def test_button_after_expiry(api: DiscordStandin, backend: FakeBackend) -> None:
    clock = [datetime(2025, 3, 3, 15, 0, tzinfo=UTC)]
    ops = ChatOps(backend, AUTH, clock=lambda: clock[0])
    transport = DiscordTransport(api.token, ops, guild_ready_timeout=0.05, connect_timeout=10, api_base=api.api_base)
    await asyncio.wait_for(transport.start(), 15)
    try:
        asked = await api.slash("cancel", {"account": "topstep1"})
        await api.wait_for(lambda: api.callbacks)
        question = api.original(asked)
        assert question is not None
        clock[0] += timedelta(seconds=31)
        await api.click(question["components"][0]["components"][0]["custom_id"], question)
        await api.wait_for(lambda: api.followups)
        assert "expired" in api.followups[0]["content"] and int(api.followups[0].get("flags", 0)) & 64
        assert not api.edits and "Cancel" in question["content"] and backend.orders_["topstep1"]
    finally:
        await asyncio.wait_for(transport.stop(), 15)


async def test_unauthorized_ignored(api: DiscordStandin, bot: DiscordTransport, backend: FakeBackend) -> None:
    await api.slash("flatten", {"account": "all"}, user_id=STRANGER)
    await api.slash("status", guild_id="700000000000000999")  # operator, but not in the allowed guild
    await api.slash("whoami", user_id=STRANGER)
    await api.wait_for(lambda: api.callbacks)
    await asyncio.sleep(0.2)
    [only] = api.callbacks
    assert f"user id: {STRANGER}" in only["data"]["content"] and "not authorized" in only["data"]["content"]
    assert [(a[0], a[1]) for a in backend.audits if not a[3]] == [
        (f"discord:{STRANGER}", "flatten"),
        (f"discord:{OPERATOR}", "status"),
    ]


async def test_alert_to_channel(api: DiscordStandin, bot: DiscordTransport) -> None:
    message_id = await asyncio.wait_for(bot.send_alert("Filled: buy 1 ESH5 @ 5,010.00", silent=True), 10)
    [sent] = api.messages
    assert message_id > 0 and sent["channel_id"] == CHANNEL_ID and sent["content"].startswith("Filled")
    assert sent["flags"] & 4096  # SUPPRESS_NOTIFICATIONS


async def test_resume_after_dropped_connection(api: DiscordStandin, bot: DiscordTransport) -> None:
    await api.drop()
    await api.wait_for(lambda: api.resumes, within=15)
    assert api.resumes[0]["session_id"] == api.session_id and api.resumes[0]["seq"] >= 1
    await asyncio.wait_for(api.connected.wait(), 10)
    assert len(api.identifies) == 1  # resumed, not re-identified
    await api.slash("status")
    await api.wait_for(lambda: api.callbacks)
    assert api.callbacks[0]["data"]["content"].startswith("traderd 0.1.0")


async def test_webhook_push_only(api: DiscordStandin) -> None:
    async with aiohttp.ClientSession() as session:
        alerts = DiscordWebhookAlerts(api.webhook_url, session=session, api_base=api.api_base)
        message_id = await asyncio.wait_for(alerts.send_alert("Daemon started", silent=False), 10)
        await asyncio.wait_for(alerts.send_alert("quiet one", silent=True), 10)
    assert message_id > 0 and [m["content"] for m in api.webhook_messages] == ["Daemon started", "quiet one"]
    assert not api.webhook_messages[0].get("flags") and api.webhook_messages[1]["flags"] & 4096
    assert api.unauthorized == 0 and not api.identifies
