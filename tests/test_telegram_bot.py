"""End-to-end tests of the Telegram transport: the real python-telegram-bot Application, built by
`notifiers.telegram_bot`, polling a loopback stand-in of the Bot API, over the real chat-ops core.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from telegram.error import TelegramError

from daemon.chat.commands import ChatAuth, ChatOps, TransportAuth
from notifiers.telegram_bot import TelegramTransport, to_html
from tests.standins.chat_backend import FakeBackend
from tests.standins.telegram_api import TelegramStandin

OPERATOR, VIEWER, STRANGER, GROUP = 100, 200, 666, -500
AUTH = ChatAuth(telegram=TransportAuth(users={"100": "operator", "200": "viewer"}, chats=["100", "200", "-500"]))


@pytest.fixture
async def api() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
async def bot(api: TelegramStandin, backend: FakeBackend) -> AsyncIterator[TelegramTransport]:
    transport = TelegramTransport(api.token, ChatOps(backend, AUTH), base_url=api.base_url, poll_timeout=1)
    await asyncio.wait_for(transport.start(), 10)
    yield transport
    await asyncio.wait_for(transport.stop(), 10)


def test_html_rendering() -> None:
    assert to_html("P&L <x>\n```\na  b\n```\nend") == "P&amp;L &lt;x&gt;\n<pre>a  b</pre>\nend"


async def test_menu_and_status_reply(api: TelegramStandin, bot: TelegramTransport) -> None:
    names = [c["command"] for c in api.commands]
    assert {"status", "pnl", "flatten", "whoami", "help"} <= set(names)
    assert [m for m, _ in api.calls][:1] == ["getMe"]
    await api.send_command(OPERATOR, OPERATOR, "/status")
    [reply] = await api.wait_for(lambda: api.sent_to(OPERATOR))
    assert reply.params["parse_mode"] == "HTML"
    assert reply.text.startswith("traderd 0.1.0, up ") and "<pre>acct" in reply.text
    await api.send_command(VIEWER, VIEWER, "/pnl@traderd_bot week topstep1")
    [pnl] = await api.wait_for(lambda: api.sent_to(VIEWER))
    assert "P&amp;L week - topstep1" in pnl.text and "+1,218.10" in pnl.text


async def test_flatten_confirm_flow(api: TelegramStandin, bot: TelegramTransport, backend: FakeBackend) -> None:
    await api.send_command(OPERATOR, GROUP, "/flatten all")
    [question] = await api.wait_for(lambda: api.sent_to(GROUP))
    assert "close 2 position(s)" in question.text and backend.flatten_calls == 0
    (label, yes), (_, _no) = question.buttons
    assert label == "Yes, flatten all"
    await api.press(OPERATOR, question, yes)
    await api.wait_for(lambda: api.edits)
    assert question.text.startswith("Flatten all: done.")
    assert "closed: sell 2 ESH5 @ 5,012.50" in question.text and "cancelled sell 2 ESH5 LMT 5,030.00" in question.text
    assert not question.buttons and len(api.answers) == 1
    assert backend.flatten_calls == 1 and not backend.positions_["topstep1"]
    await api.press(OPERATOR, question, yes)  # double press: a pop-up, the message keeps the result
    await api.wait_for(lambda: len(api.answers) == 2)
    assert "expired or was already used" in api.answers[1]["text"] and api.answers[1]["show_alert"] in (True, "true")
    assert question.text.startswith("Flatten all: done.") and len(api.edits) == 1 and backend.flatten_calls == 1


async def test_not_the_requester_gets_an_alert_only(
    api: TelegramStandin, bot: TelegramTransport, backend: FakeBackend
) -> None:
    await api.send_command(OPERATOR, GROUP, "/cancel topstep1")
    [question] = await api.wait_for(lambda: api.sent_to(GROUP))
    await api.press(VIEWER, question, question.buttons[0][1])
    await api.wait_for(lambda: api.answers)
    assert api.answers[0]["show_alert"] in ("true", True) and "Only the person who asked" in api.answers[0]["text"]
    assert not api.edits and backend.orders_["topstep1"]


async def test_unauthorized_ignored_whoami_answers(
    api: TelegramStandin, bot: TelegramTransport, backend: FakeBackend
) -> None:
    await api.send_command(STRANGER, STRANGER, "/status")
    await api.send_command(STRANGER, STRANGER, "/flatten all")
    await api.send_command(OPERATOR, -999, "/positions")  # allowed user, chat not allowed
    await api.send_command(STRANGER, STRANGER, "/whoami")
    [reply] = await api.wait_for(lambda: api.sent)
    await asyncio.sleep(0.2)
    assert len(api.sent) == 1 and reply.chat_id == STRANGER
    assert "user id: 666" in reply.text and "not authorized" in reply.text
    denied = [(a[0], a[1]) for a in backend.audits if not a[3]]
    assert denied == [("telegram:666", "status"), ("telegram:666", "flatten"), ("telegram:100", "positions")]
    assert backend.flatten_calls == 0


async def test_alert_honours_retry_after(api: TelegramStandin, bot: TelegramTransport) -> None:
    api.rate_limit("sendMessage", times=1, retry_after=1)
    started = time.monotonic()
    message_id = await asyncio.wait_for(bot.send_alert(OPERATOR, "Filled: buy 1 ESH5 @ 5,010.00", silent=True), 10)
    [sent] = api.sent_to(OPERATOR)
    assert sent.message_id == message_id and sent.params["disable_notification"] in ("true", True)
    assert len(api.limited) == 1 and sent.at - api.limited[0][1] >= 0.95
    assert time.monotonic() - started >= 0.95


async def test_alert_fails_during_outage_then_succeeds(api: TelegramStandin, bot: TelegramTransport) -> None:
    api.outage = True
    with pytest.raises(TelegramError):
        await asyncio.wait_for(bot.send_alert(OPERATOR, "fill 1"), 10)
    api.outage = False
    await api.stop()  # connection refused
    with pytest.raises(TelegramError):
        await asyncio.wait_for(bot.send_alert(OPERATOR, "fill 1"), 10)
    await api.start()  # same port
    await asyncio.wait_for(bot.send_alert(OPERATOR, "fill 1"), 10)
    assert [m.text for m in api.sent] == ["fill 1"]


async def test_second_instance_conflict_is_reported(api: TelegramStandin, backend: FakeBackend) -> None:
    reports: list[str] = []
    api.conflict = True
    transport = TelegramTransport(
        api.token, ChatOps(backend, AUTH), base_url=api.base_url, poll_timeout=1, on_conflict=reports.append
    )
    await asyncio.wait_for(transport.start(), 10)
    try:
        await api.wait_for(lambda: reports)
        assert transport.conflict and "Another process is polling" in reports[0]
        await api.wait_for(lambda: transport.app.updater is not None and not transport.app.updater.running)
        await api.wait_for(lambda: not transport._tasks)  # the stop (and its last getUpdates) is over
        answered = api.conflicts_answered
        await asyncio.sleep(1.5)
        assert api.conflicts_answered == answered <= 2  # stopped polling, not fighting
        await asyncio.wait_for(transport.send_alert(OPERATOR, "still alerting"), 10)
        assert api.sent_to(OPERATOR)[0].text == "still alerting"
    finally:
        await asyncio.wait_for(transport.stop(), 10)
