"""End-to-end chat-ops: a real in-process daemon on the paper broker, its own ChatRuntime building the real
python-telegram-bot and discord.py clients, against the loopback stand-ins of the Telegram Bot API and Discord.

Signals go in through the TradingView webhook; what the trader sees is read from the stand-ins, and what the
daemon did from its broker, store and audit log.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from config.settings import Settings
from daemon.app import Daemon
from daemon.domain import Event, utcnow
from daemon.store.repository import Store
from daemon.store.state import StateStore
from tests.conftest import SECRET, DaemonFactory, alert, client_for, settled, wait_until
from tests.standins.discord_api import CHANNEL_ID, GUILD_ID, DiscordStandin
from tests.standins.telegram_api import Sent, TelegramStandin

OPERATOR, VIEWER, STRANGER, GROUP = 100, 200, 666, -500
URL = f"/webhook/tradingview/{SECRET}"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


def tg_settings(api: TelegramStandin, **alerts: Any) -> dict[str, Any]:
    return {
        "telegram": {
            "token": api.token,
            "base_url": api.base_url,
            "users": {str(OPERATOR): "operator", str(VIEWER): "viewer"},
            "chats": [str(OPERATOR), str(VIEWER), str(GROUP)],
            "alert_chats": [str(GROUP)],
            "poll_timeout": 1,
        },
        "alerts": {"drain_seconds": 1, "max_backoff_seconds": 1, **alerts},
    }


async def start_with_telegram(start_daemon: DaemonFactory, api: TelegramStandin, **extra: Any) -> Daemon:
    daemon = await start_daemon(**tg_settings(api, **extra.pop("alerts", {})), **extra)
    await api.wait_for(lambda: api.commands, within=10)  # logged in, menu set, polling
    await api.wait_for(lambda: "started" in alerts_text(api))
    return daemon


def alerts_text(api: TelegramStandin) -> str:
    return "\n".join(m.text for m in api.sent_to(GROUP))


async def post(daemon: Daemon, **fields: Any) -> str:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(**fields))
    assert response.status_code == 202, response.text
    signal_id: str = response.json()["signal_id"]
    await settled(daemon, signal_id)
    return signal_id


async def ask(api: TelegramStandin, text: str, user: int = OPERATOR, chat: int | None = None) -> Sent:
    chat = user if chat is None else chat
    before = len(api.sent_to(chat))
    await api.send_command(user, chat, text)
    await api.wait_for(lambda: len(api.sent_to(chat)) > before)
    return api.sent_to(chat)[before]


def flat(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------------ Telegram


async def test_every_command_over_telegram(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg, accounts={"paper": {"risk": {"max_position": "50"}}})
    assert set(tg.menu(OPERATOR)) >= {"status", "pnl", "flatten", "cancel", "risk", "whoami"}
    await post(daemon, id="e1", quantity="10", price="100")
    await post(daemon, id="e2", action="sell", quantity="4", price="110")
    await post(daemon, id="e3", quantity="5", price="100", order_type="limit", limit_price="50")

    assert "/flatten [account|all]" in (await ask(tg, "/help")).text
    assert "/flatten" not in (await ask(tg, "/help", user=VIEWER)).text
    status = flat((await ask(tg, "/status")).text)
    assert status.startswith("traderd ") and "paper paper ok active" in status
    assert "paper paper active" in flat((await ask(tg, "/accounts")).text)
    positions = flat((await ask(tg, "/positions")).text)
    assert "paper AAPL +6 100.00" in positions
    orders = flat((await ask(tg, "/orders paper")).text)
    assert "buy 5 AAPL LMT 50.00" in orders
    trades = (await ask(tg, "/trades 2", user=VIEWER)).text
    assert trades.startswith("Last 2 fills") and "110.00" in trades
    pnl = flat((await ask(tg, "/pnl today paper")).text)
    assert pnl.startswith("P&amp;L today - paper") and "+40.00" in pnl  # sold 4 bought at 100 for 110
    risk = flat((await ask(tg, "/risk")).text)
    assert "max_position 6 50 44" in risk
    health = (await ask(tg, "/health")).text
    assert health.startswith("Healthy") and "telegram" in health and "store" in health
    whoami = (await ask(tg, "/whoami", user=VIEWER)).text
    assert "user id: 200" in whoami and "role: viewer" in whoami

    assert (await ask(tg, "/pause paper")).text == "paper: paused"
    assert "paper" in daemon.engine.paused and daemon.store.controls()["paper"].paused
    assert (await ask(tg, "/resume paper")).text == "paper: resumed"
    assert "paper" not in daemon.engine.paused
    question = await ask(tg, "/pause all")
    assert question.buttons and "paper" not in daemon.engine.paused
    await tg.press(OPERATOR, question, question.buttons[0][1])
    await tg.wait_for(lambda: tg.edits)
    assert question.text == "paper: paused" and "paper" in daemon.engine.paused
    viewer = await ask(tg, "/resume paper", user=VIEWER)
    assert "needs the operator role" in viewer.text and "paper" in daemon.engine.paused
    actions = {(e.actor, e.action) for e in daemon.store.audit_log()}
    assert ("telegram:100", "pause") in actions and ("telegram:200", "resume") in actions


async def test_flatten_confirm_and_double_press(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg)
    await post(daemon, id="f1", quantity="10", price="100")
    await post(daemon, id="f2", quantity="5", price="100", order_type="limit", limit_price="90")
    question = await ask(tg, "/flatten paper", chat=GROUP)
    assert "cancel 1 open order(s) and close 1 position(s)" in question.text
    (label, yes), (_, _no) = question.buttons
    assert label == "Yes, flatten paper"
    assert [p for p in await daemon.brokers["paper"].positions() if p.quantity]  # nothing done yet
    await tg.press(OPERATOR, question, yes)
    await tg.wait_for(lambda: tg.edits, within=10)
    assert question.text.startswith("Flatten paper: done."), question.text
    assert "cancelled buy 5 AAPL LMT 90.00" in question.text and "closed: sell 10 AAPL @ 100.00" in question.text
    assert not question.buttons
    assert not [p for p in await daemon.brokers["paper"].positions() if p.quantity]
    assert not await daemon.brokers["paper"].open_orders()
    await tg.press(OPERATOR, question, yes)  # double press: harmless, a pop-up, the result stays
    await tg.wait_for(lambda: any("expired or was already used" in a.get("text", "") for a in tg.answers))
    assert question.text.startswith("Flatten paper: done.") and len(tg.edits) == 1
    flattens = [s for s in (daemon.store.get_signal(f"flat_{k}_paper") for k in _flatten_keys(daemon)) if s]
    assert len(flattens) == 1
    await tg.wait_for(lambda: "FLATTEN paper" in alerts_text(tg))


def _flatten_keys(daemon: Daemon) -> list[str]:
    return [e.detail.removeprefix("request ") for e in daemon.store.audit_log() if e.action == "flatten"
            and e.detail and e.detail.startswith("request ")]


async def test_cancel_confirm_and_expiry(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg, alerts={"confirm_seconds": 1})
    await post(daemon, id="c1", quantity="3", price="100", order_type="limit", limit_price="80")
    late = await ask(tg, "/cancel paper")
    await asyncio.sleep(1.2)
    await tg.press(OPERATOR, late, late.buttons[0][1])
    await tg.wait_for(lambda: tg.answers)
    assert "expired" in tg.answers[0]["text"] and not tg.edits and late.text.startswith("Cancel 1 open order")
    assert len(await daemon.brokers["paper"].open_orders()) == 1
    question = await ask(tg, "/cancel paper")
    assert "Cancel 1 open order(s) on paper?" in question.text
    await tg.press(OPERATOR, question, question.buttons[0][1])
    await tg.wait_for(lambda: len(tg.edits) == 1, within=10)
    assert question.text.startswith("Cancel paper: done.") and "cancelled buy 3 AAPL LMT 80.00" in question.text
    assert not await daemon.brokers["paper"].open_orders()


async def test_unauthorized_users_and_chats(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg)
    await post(daemon, id="u1", quantity="10", price="100")
    await tg.send_command(STRANGER, STRANGER, "/flatten all")
    await tg.send_command(OPERATOR, -999, "/flatten all")  # operator, but not an allowed chat
    whoami = await ask(tg, "/whoami", user=STRANGER)
    await asyncio.sleep(0.3)
    assert "user id: 666" in whoami.text and "not authorized" in whoami.text
    assert not tg.sent_to(-999) and len(tg.sent_to(STRANGER)) == 1
    denied = [(e.actor, e.action) for e in daemon.store.audit_log() if not e.ok]
    assert ("telegram:666", "flatten") in denied and ("telegram:100", "flatten") in denied
    assert [p.quantity for p in await daemon.brokers["paper"].positions()] == [Decimal(10)]


async def test_alert_429_retry_after(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg)
    tg.rate_limit("sendMessage", times=1, retry_after=1)
    await post(daemon, id="r1", quantity="1", price="100")
    await tg.wait_for(lambda: "Filled [paper]: buy 1 AAPL @ 100.00" in alerts_text(tg), within=10)
    [(method, limited_at)] = tg.limited
    delivered = next(m for m in tg.sent_to(GROUP) if "Filled" in m.text)
    assert method == "sendMessage" and delivered.at - limited_at >= 0.95
    assert alerts_text(tg).count("Filled [paper]: buy 1 AAPL") == 1


async def test_outage_queues_alerts_and_never_slows_trading(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg)
    tg.outage = True
    started = time.monotonic()
    for i in range(3):
        await post(daemon, id=f"o{i}", quantity=str(i + 1), price="100")
    assert time.monotonic() - started < 10  # three signals settled while Telegram answers 500
    await wait_until(lambda: len(daemon.chat.outbox.pending("telegram")) >= 3)
    assert "buy 1 AAPL" not in alerts_text(tg)
    tg.outage = False
    await tg.wait_for(lambda: "buy 3 AAPL" in alerts_text(tg), within=10)
    text = alerts_text(tg)
    assert text.index("buy 1 AAPL") < text.index("buy 2 AAPL") < text.index("buy 3 AAPL")
    await wait_until(lambda: not daemon.chat.outbox.pending("telegram"))


async def test_burst_of_50_fills_is_coalesced(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_with_telegram(start_daemon, tg)
    before = len(tg.sent_to(GROUP))
    started = time.monotonic()
    async with client_for(daemon) as client:
        answers = await asyncio.gather(*(client.post(URL, json=alert(id=f"b{i}", quantity=str(i + 1), price="100"))
                                         for i in range(50)))
    assert all(a.status_code == 202 for a in answers)
    await wait_until(lambda: len(daemon.store.fills()) >= 50, within=30)
    burst = time.monotonic() - started  # a slow machine spreads the burst; messages stay about one a second
    await tg.wait_for(lambda: "buy 50 AAPL" in alerts_text(tg), within=15)
    await wait_until(lambda: not daemon.chat.outbox.pending("telegram"), within=10)
    messages = tg.sent_to(GROUP)[before:]
    fills = [line for m in messages for line in m.text.splitlines() if line.startswith("Filled")]
    assert len(fills) == 50 and len(messages) <= max(6, math.ceil(burst) + 2)
    assert all(len(m.text) <= 4096 for m in messages)
    gaps = [b.at - a.at for a, b in itertools.pairwise(messages)]
    assert all(gap >= 0.9 for gap in gaps)  # about one message a second to one chat


async def test_restart_delivers_undelivered_alerts_once_in_order(
    tg: TelegramStandin, make_settings: Any, start_daemon: DaemonFactory
) -> None:
    settings = make_settings(**tg_settings(tg))
    first = await start_daemon(settings)
    await tg.wait_for(lambda: "started" in alerts_text(tg), within=10)
    await tg.stop()  # the network to Telegram is gone
    for i in range(3):
        await post(first, id=f"s{i}", quantity=str(i + 1), price="100")
    await first.stop()
    assert not [m for m in tg.sent if "Filled" in m.text]
    await tg.start()  # back, same port
    second = await start_daemon(settings)
    await tg.wait_for(lambda: "buy 3 AAPL" in alerts_text(tg) and "stopping" in alerts_text(tg), within=15)
    await wait_until(lambda: not second.chat.outbox.pending("telegram"), within=10)
    text = alerts_text(tg)
    assert [text.count(f"Filled [paper]: buy {n} AAPL") for n in (1, 2, 3)] == [1, 1, 1]
    assert text.index("buy 1 AAPL") < text.index("buy 2 AAPL") < text.index("buy 3 AAPL")
    assert text.index("buy 3 AAPL") < text.index("stopping")


# ------------------------------------------------------------------------------------------------ Discord


@pytest.fixture
async def dc() -> AsyncIterator[DiscordStandin]:
    standin = await DiscordStandin().start()
    yield standin
    await standin.stop()


def dc_settings(api: DiscordStandin) -> dict[str, Any]:
    return {"token": api.token, "users": {"9001": "operator", "9002": "viewer"}, "chats": [GUILD_ID],
            "alert_channel_id": CHANNEL_ID, "api_base": api.api_base}


async def test_discord_commands_buttons_and_alerts(dc: DiscordStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(discord=dc_settings(dc), alerts={"drain_seconds": 1})
    await dc.wait_for(lambda: dc.commands.get("global") and dc.identifies, within=15)
    await dc.wait_for(lambda: any("started" in m["content"] for m in dc.messages))
    await post(daemon, id="d1", quantity="2", price="100")
    await dc.wait_for(lambda: any("Filled [paper]: buy 2 AAPL" in m["content"] for m in dc.messages))
    await dc.slash("positions", {"account": "paper"})
    await dc.wait_for(lambda: dc.callbacks)
    assert "AAPL +2 100.00" in flat(dc.callbacks[0]["data"]["content"])
    await dc.slash("flatten", {"account": "paper"}, user_id="6666")  # stranger: ignored
    asked = await dc.slash("flatten", {"account": "paper"})
    await dc.wait_for(lambda: len(dc.callbacks) == 2)
    question = dc.original(asked)
    assert question is not None and "close 1 position(s)" in question["content"]
    await dc.click(question["components"][0]["components"][0]["custom_id"], question)
    await dc.wait_for(lambda: dc.edits, within=10)
    assert dc.edits[0]["content"].startswith("Flatten paper: done.")
    assert not [p for p in await daemon.brokers["paper"].positions() if p.quantity]
    assert ("discord:6666", "flatten") in [(e.actor, e.action) for e in daemon.store.audit_log() if not e.ok]


async def test_discord_push_only_webhook(dc: DiscordStandin, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon(discord={"webhook_url": dc.webhook_url, "api_base": dc.api_base},
                                alerts={"drain_seconds": 1})
    await post(daemon, id="w1", quantity="1", price="100")
    await dc.wait_for(lambda: any("buy 1 AAPL" in m["content"] for m in dc.webhook_messages), within=10)
    assert not dc.identifies and dc.unauthorized == 0


async def test_second_telegram_poller_reported_on_discord(
    tg: TelegramStandin, dc: DiscordStandin, start_daemon: DaemonFactory
) -> None:
    tg.conflict = True
    daemon = await start_daemon(**tg_settings(tg), discord=dc_settings(dc))
    await dc.wait_for(lambda: any("Another process is polling" in m["content"] for m in dc.messages), within=15)
    assert daemon.chat.conflict is not None
    daemon.events.publish(Event(kind="broker", account="paper", summary="broker reconnected"))
    await tg.wait_for(lambda: "Broker [paper]: broker reconnected" in alerts_text(tg), within=10)


async def test_crash_recovery_notice_and_daily_summary(
    tg: TelegramStandin, make_settings: Any, start_daemon: DaemonFactory
) -> None:
    settings = make_settings(**tg_settings(tg))
    previous = Store(settings.database_url)  # the last run died without stopping: its marker says so
    previous.open()
    StateStore(previous).put("chat", "run", {"clean": False, "at": "2026-03-02T14:30:00+00:00"})
    previous.close()
    daemon = await start_daemon(settings)
    await tg.wait_for(lambda: "recovered from an unclean stop" in alerts_text(tg), within=10)
    await post(daemon, id="ds1", quantity="10", price="100")
    await tg.wait_for(lambda: "buy 10 AAPL" in alerts_text(tg), within=10)  # (a loud fill would make it loud)
    job = daemon.scheduler.get_job("daily-summary")  # the daemon's one scheduler holds the summary
    assert job is not None and str(job.trigger.timezone) == "America/New_York"
    friday_evening = datetime(2026, 3, 6, 16, 6, tzinfo=NEW_YORK)
    assert job.trigger.get_next_fire_time(None, friday_evening) == datetime(2026, 3, 9, 16, 5, tzinfo=NEW_YORK)
    assert job.trigger.get_next_fire_time(None, friday_evening - timedelta(minutes=2)) == friday_evening.replace(
        minute=5)
    await job.func()  # what the scheduler runs at 16:05
    await tg.wait_for(lambda: "Daily summary" in alerts_text(tg), within=10)
    summary = next(m for m in tg.sent_to(GROUP) if "Daily summary" in m.text)
    assert summary.params["disable_notification"] in (True, "true")  # silent by default
    assert "Still open: paper AAPL +10" in summary.text


# ------------------------------------------------------------------------------------------------ strategies

SAMPLE_5M = Path(__file__).resolve().parents[1] / "strategies" / "data" / "sample_5m.csv"
CROSS_UP = datetime(2024, 11, 22, 10, 40, tzinfo=NEW_YORK)  # SMA3 crosses above SMA5 on the bar closing here
BROKEN = """
from strategies.base import Strategy

class Flaky(Strategy):
    def on_bar(self, bar, history, position):
        raise ZeroDivisionError("boom")
"""
QUIET = """
from strategies.base import Strategy

class Flaky(Strategy):
    def on_bar(self, bar, history, position):
        return []
"""


class ShiftedClock:
    """Real time moved to `at`, so the shipped 2024 sample bars are "just closed" while timers still run."""

    def __init__(self, at: datetime) -> None:
        self.offset = at - utcnow()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def move_to(self, at: datetime) -> None:
        self.offset = at - utcnow()


def strategies_config(flaky: Path) -> dict[str, Any]:
    common = {"account": "paper", "symbol": "AAPL", "timeframe": "5m", "calendar": "nyse", "data": str(SAMPLE_5M),
              "max_lag_seconds": 600}
    flaky.write_text(BROKEN)
    return {"aapl_sma": {"strategy": "sma_cross", "params": {"fast": 3, "slow": 5}, **common},
            "flaky": {"strategy": str(flaky), **common}}


@asynccontextmanager
async def running(settings: Settings, clock: ShiftedClock) -> AsyncIterator[Daemon]:
    daemon = Daemon(settings, clock=clock)
    await daemon.start()  # runs each strategy once on the bar that just closed
    try:
        yield daemon
    finally:
        await daemon.stop()


async def held(daemon: Daemon) -> Decimal:
    await wait_until(lambda: not daemon.store.unfinished_signals(), within=15)
    return sum((p.quantity for p in await daemon.brokers["paper"].positions()), Decimal(0))


async def test_strategies_over_telegram(tg: TelegramStandin, make_settings: Any, tmp_path: Path) -> None:
    clock = ShiftedClock(CROSS_UP + timedelta(seconds=3))
    settings = make_settings(**tg_settings(tg), strategies=strategies_config(tmp_path / "flaky.py"))
    async with running(settings, clock) as daemon:
        await tg.wait_for(lambda: tg.commands, within=10)
        menu = {c["command"]: c["description"] for c in tg.menus[f"chat:{OPERATOR}"]}
        assert menu["strategies"].startswith("scheduled strategies") and "strategy" in menu
        assert await held(daemon) == 1  # the SMA cross up traded through the engine at start

        listing = (await ask(tg, "/strategies", user=VIEWER)).text
        assert "aapl_sma: running\n  sma_cross on paper AAPL 5m" in listing
        assert "last bar 11-22 15:40, last signal: target 1 (bar 11-22 15:40)" in listing
        assert "flaky: DISABLED - on_bar raised ZeroDivisionError: boom" in listing

        denied = await ask(tg, "/strategy pause aapl_sma", user=VIEWER)
        assert denied.text == "/strategy needs the operator role; you are a viewer."
        unknown = await ask(tg, "/strategy pause nope")
        assert html.unescape(unknown.text) == "Unknown strategy 'nope'. Strategies: aapl_sma, flaky."  # as shown
        assert [s.status for s in daemon.strategies.status()] == ["running", "disabled"]

        assert (await ask(tg, "/strategy pause aapl_sma")).text.startswith("Strategy aapl_sma: paused.")
        assert StateStore(daemon.store).get("strategy", "aapl_sma")["paused"] is True  # type: ignore[index]
        clock.move_to(CROSS_UP + timedelta(minutes=10, seconds=3))  # the cross down closes: paused, no exit
        assert await daemon.strategies.run_once("aapl_sma") == []
        assert await held(daemon) == 1
        assert "paused" in (await ask(tg, "/strategies")).text.split("\n")[1]
        assert (await ask(tg, "/strategy resume aapl_sma")).text.startswith("Strategy aapl_sma: resumed")
        assert len(await daemon.strategies.run_once("aapl_sma")) == 1  # acts on that bar now: exits
        assert await held(daemon) == 0

        (tmp_path / "flaky.py").write_text("import not_a_module_anywhere\n")  # a bad fix: it cannot load
        still = await ask(tg, "/strategy resume flaky")
        assert still.text.startswith("Strategy flaky: still DISABLED - ") and "not_a_module_anywhere" in still.text
        (tmp_path / "flaky.py").write_text(QUIET)  # the trader fixes the file
        fixed = await ask(tg, "/strategy resume flaky")
        assert fixed.text.startswith("Strategy flaky: re-enabled (was disabled: ") and "not_a_module" in fixed.text
        assert await daemon.strategies.run_once("flaky") == []  # it runs again (and stays enabled)
        assert [s.status for s in daemon.strategies.status()] == ["running", "running"]

        await tg.wait_for(lambda: "strategy aapl_sma paused by telegram:100" in alerts_text(tg), within=10)
        audit = [(e.actor, e.action, e.target, e.ok) for e in reversed(daemon.store.audit_log())]
        assert [a for a in audit if a[1].startswith("strategy")] == [
            ("telegram:200", "strategy", "pause aapl_sma", False), ("telegram:100", "strategy_pause", "aapl_sma", True),
            ("telegram:100", "strategy_resume", "aapl_sma", True), ("telegram:100", "strategy_resume", "flaky", False),
            ("telegram:100", "strategy_resume", "flaky", True)]


async def test_strategies_over_discord(dc: DiscordStandin, make_settings: Any, tmp_path: Path) -> None:
    clock = ShiftedClock(CROSS_UP + timedelta(seconds=3))
    settings = make_settings(discord=dc_settings(dc), alerts={"drain_seconds": 1},
                             strategies=strategies_config(tmp_path / "flaky.py"))
    async with running(settings, clock) as daemon:
        await dc.wait_for(lambda: dc.commands.get("global") and dc.identifies, within=15)
        commands = {c["name"]: c for c in dc.commands["global"]}
        action, name = commands["strategy"]["options"]
        assert (action["name"], [c["value"] for c in action["choices"]], action["required"]) == (
            "action", ["pause", "resume"], True)
        assert (name["name"], name["type"], name["required"]) == ("name", 3, True)
        assert "strategies" in commands

        async def answer(command: str, options: dict[str, Any] | None = None, user: str = "9001") -> str:
            before = len(dc.callbacks)
            await dc.slash(command, options, user_id=user)
            await dc.wait_for(lambda: len(dc.callbacks) > before, within=10)
            return str(dc.callbacks[before]["data"]["content"]).replace("\\", "")  # markdown escapes

        listing = await answer("strategies", user="9002")
        assert "aapl_sma: running" in listing and "last signal: target 1 (bar 11-22 15:40)" in listing
        assert "flaky: DISABLED - on_bar raised ZeroDivisionError: boom" in listing
        viewer = await answer("strategy", {"action": "pause", "name": "aapl_sma"}, user="9002")
        assert viewer == "/strategy needs the operator role; you are a viewer."
        unknown = await answer("strategy", {"action": "resume", "name": "nope"})
        assert unknown == "Unknown strategy 'nope'. Strategies: aapl_sma, flaky."
        paused = await answer("strategy", {"action": "pause", "name": "aapl_sma"})
        assert paused.startswith("Strategy aapl_sma: paused.")
        assert daemon.strategies.status()[0].status == "paused"
        resumed = await answer("strategy", {"action": "resume", "name": "aapl_sma"})
        assert resumed.startswith("Strategy aapl_sma: resumed") and daemon.strategies.status()[0].status == "running"
        audit = [(e.actor, e.action, e.ok) for e in daemon.store.audit_log() if e.action.startswith("strategy")]
        assert sorted(audit) == [("discord:9001", "strategy_pause", True), ("discord:9001", "strategy_resume", True),
                                 ("discord:9002", "strategy", False)]
