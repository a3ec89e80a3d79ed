"""Chat-ops through a real in-process daemon (paper broker) and the Telegram / Discord stand-ins: commands
delivered again after a restart are not run again, names in alerts and the audit log, /close and /daily on
real fills, and alerts arriving seconds after a chat outage ends.
"""

from __future__ import annotations

import copy
import html
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from daemon.app import Daemon
from tests.conftest import SECRET, DaemonFactory, alert, client_for, settled, wait_until
from tests.standins.discord_api import CHANNEL_ID, GUILD_ID, DiscordStandin
from tests.standins.telegram_api import Sent, TelegramStandin

OPERATOR, VIEWER, GROUP = 100, 200, -500
URL = f"/webhook/tradingview/{SECRET}"


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


@pytest.fixture
async def dc() -> AsyncIterator[DiscordStandin]:
    standin = await DiscordStandin().start()
    yield standin
    await standin.stop()


def telegram(api: TelegramStandin, **alerts: Any) -> dict[str, Any]:
    return {
        "telegram": {"token": api.token, "base_url": api.base_url, "poll_timeout": 1,
                     "users": {str(OPERATOR): {"role": "operator", "name": "Alice"}, str(VIEWER): "viewer"},
                     "chats": [str(OPERATOR), str(VIEWER), str(GROUP)], "alert_chats": [str(GROUP)]},
        "alerts": {"drain_seconds": 1, **alerts},
    }


def group_text(api: TelegramStandin) -> str:
    return "\n".join(m.text for m in api.sent_to(GROUP))


async def ask(api: TelegramStandin, text: str, user: int = OPERATOR) -> Sent:
    before = len(api.sent_to(user))
    await api.send_command(user, user, text)
    await api.wait_for(lambda: len(api.sent_to(user)) > before, within=10)
    return api.sent_to(user)[before]


async def post(daemon: Daemon, **fields: Any) -> None:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(**fields))
    assert response.status_code == 202, response.text
    await settled(daemon, response.json()["signal_id"])


async def test_telegram_update_delivered_again_after_restart_is_not_run_again(
    tg: TelegramStandin, make_settings: Any, start_daemon: DaemonFactory
) -> None:
    settings = make_settings(**telegram(tg))
    first = await start_daemon(settings)
    await tg.wait_for(lambda: "started" in group_text(tg), within=10)
    await post(first, id="p1", quantity="10", price="100")
    assert (await ask(tg, "/pause paper")).text == "paper: paused"
    question = await ask(tg, "/flatten paper")
    assert question.buttons
    redelivered = [u["update_id"] for u in tg.updates if "message" in u]
    audit = [(e.actor, e.action) for e in first.store.audit_log()]
    assert audit.count(("Alice (telegram:100)", "pause")) == 2  # the command's and the engine's own entry
    await first.stop()
    # Telegram never got the confirmation of those updates (the daemon stopped right after fetching them,
    # or Telegram was down at that moment): it sends them again to the next poller.
    tg.redeliver_from(redelivered[0])
    answers = len(tg.sent_to(OPERATOR))

    second = await start_daemon(settings)
    await tg.wait_for(lambda: tg.confirmed_offset > redelivered[-1], within=15)  # fetched again
    status = await ask(tg, "/status")  # handled in order: the redelivered ones were seen before this
    assert status.text.startswith("traderd ")
    assert len(tg.sent_to(OPERATOR)) == answers + 1  # no second "paused", no second flatten question
    after = [(e.actor, e.action) for e in second.store.audit_log()]
    assert after.count(("Alice (telegram:100)", "pause")) == 2 and "paper" in second.engine.paused
    assert [m.text for m in tg.sent_to(OPERATOR)].count(question.text) == 1
    await tg.wait_for(lambda: "Account paper paused by Alice (telegram:100)" in group_text(tg), within=10)
    assert group_text(tg).count("paused by Alice") == 1


async def test_close_daily_and_named_flatten_over_telegram(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(**telegram(tg))
    await tg.wait_for(lambda: "started" in group_text(tg), within=10)
    await post(daemon, id="c1", quantity="10", price="100")
    await post(daemon, id="c2", action="sell", quantity="4", price="110")
    assert "needs the operator role" in (await ask(tg, "/close AAPL", user=VIEWER)).text
    question = await ask(tg, "/close aapl")
    assert question.text.startswith("CLOSE AAPL on paper: sell 6 at market")
    assert [p.quantity for p in await daemon.brokers["paper"].positions() if p.quantity] == [6]
    await tg.press(OPERATOR, question, question.buttons[0][1])
    await tg.wait_for(lambda: tg.edits, within=10)
    assert question.text.startswith("Close AAPL on paper: done. closed: sell 6 AAPL @ 110.00"), question.text
    assert not [p for p in await daemon.brokers["paper"].positions() if p.quantity]
    assert ("Alice (telegram:100)", "close", "AAPL on paper") in [
        (e.actor, e.action, e.target) for e in daemon.store.audit_log() if e.ok]

    daily = " ".join(html.unescape((await ask(tg, "/daily 3", user=VIEWER)).text).split())
    assert daily.startswith("P&L by day, last 3 days (realized, net of fees)")
    assert "paper +100.00 3" in daily and "TOTAL paper +100.00 3" in daily  # +40 then +60, three fills

    flatten = await ask(tg, "/flatten paper")
    await tg.press(OPERATOR, flatten, flatten.buttons[0][1])
    await tg.wait_for(lambda: "FLATTEN paper by Alice (telegram:100):" in group_text(tg), within=10)


async def test_telegram_alerts_arrive_seconds_after_an_outage(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(**telegram(tg, max_backoff_seconds=60, probe_seconds=0.5))
    await tg.wait_for(lambda: "started" in group_text(tg), within=10)
    tg.outage = True
    await post(daemon, id="o1", quantity="1", price="100")
    # Four failed tries (1, 2, 4 s apart): the next would wait 8 s more.
    await wait_until(lambda: any(r.attempts >= 4 for r in daemon.chat.outbox.pending("telegram")), within=20)
    tg.outage = False
    back = time.monotonic()
    await tg.wait_for(lambda: "Filled [paper]: buy 1 AAPL" in group_text(tg), within=15)
    assert time.monotonic() - back < 4  # the getMe probe noticed, not the 8 s backoff
    assert "getMe" in [method for method, _ in tg.calls[-40:]]


def discord(api: DiscordStandin) -> dict[str, Any]:
    return {"token": api.token, "api_base": api.api_base, "users": {"9001": {"role": "operator", "name": "Ana"}},
            "chats": [GUILD_ID], "alert_channel_id": CHANNEL_ID}


async def test_discord_interaction_delivered_again_after_restart_is_not_run_again(
    dc: DiscordStandin, make_settings: Any, start_daemon: DaemonFactory
) -> None:
    settings = make_settings(discord=discord(dc), alerts={"drain_seconds": 1})
    first = await start_daemon(settings)
    await dc.wait_for(lambda: dc.identifies and any("started" in m["content"] for m in dc.messages), within=15)
    pause = await dc.slash("pause", {"account": "paper"})
    await dc.wait_for(lambda: dc.callbacks, within=10)
    assert dc.callbacks[0]["data"]["content"] == "paper: paused"
    await first.stop()
    second = await start_daemon(settings)
    await dc.wait_for(lambda: len(dc.identifies) == 2, within=15)
    await dc.dispatch("INTERACTION_CREATE", copy.deepcopy(pause))  # the same interaction again
    status = await dc.slash("status")  # dispatched after it: the redelivery is looked at first
    await dc.wait_for(lambda: any(c["interaction_id"] == status["id"] for c in dc.callbacks), within=10)
    assert [c["interaction_id"] for c in dc.callbacks].count(pause["id"]) == 1
    audit = [(e.actor, e.action) for e in second.store.audit_log()]
    assert audit.count(("Ana (discord:9001)", "pause")) == 2  # the command's and the engine's, once


async def test_discord_alerts_arrive_seconds_after_an_outage(dc: DiscordStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(discord=discord(dc),
                                alerts={"drain_seconds": 1, "max_backoff_seconds": 60, "probe_seconds": 0.5})
    await dc.wait_for(lambda: any("started" in m["content"] for m in dc.messages), within=15)
    await dc.stop()  # Discord is unreachable
    await post(daemon, id="do1", quantity="1", price="100")
    await wait_until(lambda: any(r.attempts >= 4 for r in daemon.chat.outbox.pending("discord")), within=30)
    await dc.start()  # back, same port
    back = time.monotonic()
    await dc.wait_for(lambda: any("Filled [paper]: buy 1 AAPL" in m["content"] for m in dc.messages), within=15)
    assert time.monotonic() - back < 4  # the gateway probe noticed, not the 8 s backoff
