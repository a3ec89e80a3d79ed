"""Charts in chat: the daily summary's picture and `/chart`, through the real transports and the durable outbox.

A daemon runs with its own ChatRuntime against the Telegram and Discord stand-ins; equity history is seeded
as the periodic reconciliation records it, fills come in through the webhook. Every picture is checked to be
a PNG of the size the chart module promises, with real content.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.charts import png, svg
from daemon.charts.series import EquityCurve, Mark
from daemon.domain import AccountState, utcnow
from tests import browser
from tests.conftest import SECRET, DaemonFactory, alert, client_for, settled
from tests.docs_images import images_dir
from tests.standins.discord_api import DiscordStandin
from tests.standins.telegram_api import TelegramStandin

OPERATOR, GROUP = 100, -500
DOCS = images_dir()


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


def chat_settings(tg: TelegramStandin, dc: DiscordStandin | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "telegram": {"token": tg.token, "base_url": tg.base_url, "users": {str(OPERATOR): "operator"},
                     "chats": [str(OPERATOR), str(GROUP)], "alert_chats": [str(GROUP)], "poll_timeout": 1},
        "alerts": {"drain_seconds": 1, "max_backoff_seconds": 1},
        "accounts": {"futures": {"symbols": ["ES"], "paper": {"starting_cash": "50000",
                                                              "multipliers": {"ES": "50"}}}},
    }
    if dc is not None:
        settings["discord"] = {"webhook_url": dc.webhook_url, "api_base": dc.api_base}
    return settings


def seed(daemon: Daemon) -> None:
    """An hour of equity snapshots for both accounts, as reconciliation records them every five minutes."""
    now = utcnow()
    paths = {"paper": (-120, -60, -85, 10, 45, 20, 95, 130, 70, 110, 60, 25),
             "futures": (150, 210, 120, 60, 95, -40, -10, -75, -30, 35, 10, 5)}
    for account, start in (("paper", Decimal(100000)), ("futures", Decimal(50000))):
        for i, offset in enumerate(paths[account]):
            daemon.store.record_snapshot(AccountState(account=account, broker="paper", cash=start,
                                                      equity=start + offset,
                                                      as_of=now - timedelta(minutes=5 * (12 - i))))


async def trade(daemon: Daemon) -> None:
    async with client_for(daemon) as client:
        for fields in ({"id": "c1", "quantity": "10", "price": "100", "account": "paper"},
                       {"id": "c2", "action": "sell", "quantity": "6", "price": "104", "account": "paper"}):
            response = await client.post(f"/webhook/tradingview/{SECRET}", json=alert(**fields))
            assert response.status_code == 202
            await settled(daemon, response.json()["signal_id"])


def assert_chart(data: bytes, panels: int) -> None:
    assert browser.png_size(data) == png.size(panels)
    assert browser.distinct_colours(data) > 50  # lines, text, markers: not a blank canvas


async def started(start_daemon: DaemonFactory, tg: TelegramStandin, dc: DiscordStandin | None = None) -> Daemon:
    daemon = await start_daemon(**chat_settings(tg, dc))
    await tg.wait_for(lambda: tg.commands, within=10)
    seed(daemon)
    await trade(daemon)
    return daemon


def test_png_and_svg_charts_from_seeded_curves() -> None:
    now = utcnow()
    points = [(now - timedelta(minutes=10 - i), Decimal(100000 + 40 * i - (i % 3) * 55)) for i in range(11)]
    curve = EquityCurve("paper", points, [Mark(points[3][0], "buy", points[3][1]), Mark(points[8][0], "sell",
                                                                                        points[8][1])])
    image = png.render([curve, EquityCurve("empty", [])], title="test", timezone="America/New_York")
    assert_chart(image, 2)
    assert png.dollars(101250.4) == "$101,250" and png.dollars(-12.0) == "-$12"
    drawn = svg.render(curve, "America/New_York")
    assert drawn.startswith("<svg") and drawn.count('class="mark ') == 2
    assert f"${max(v for _, v in points):,.0f}" in drawn and f"${min(v for _, v in points):,.0f}" in drawn
    assert "no equity history" in svg.render(EquityCurve("x", points[:1]), "UTC")


async def test_daily_summary_carries_the_chart_on_telegram_and_discord(
        tg: TelegramStandin, dc: DiscordStandin, start_daemon: DaemonFactory) -> None:
    daemon = await started(start_daemon, tg, dc)
    await daemon.chat.send_daily_summary()
    photo = await tg.wait_for(lambda: [p for p in tg.photos if p.chat_id == GROUP], within=10)
    assert photo[0].text.startswith("Daily summary") and "paper: net +40.00 (realized +24.00" in photo[0].text
    assert_chart(photo[0].params["photo"], 2)
    upload = await dc.wait_for(lambda: [m for m in dc.webhook_messages if m.get("files")], within=10)
    assert upload[0]["content"].startswith("Daily summary")
    (name, data), = upload[0]["files"]
    assert name == "chart.png"
    assert_chart(data, 2)
    (DOCS / "chat-daily-chart.png").write_bytes(data)
    assert [m for m in tg.sent_to(GROUP) if m.text.startswith("Daily summary")] == photo  # once, as the photo


async def test_a_failed_picture_is_retried_then_sent_as_text(
        tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    daemon = await started(start_daemon, tg)
    tg.photo_failures = 1  # one failure: the retry delivers the picture
    await daemon.chat.send_daily_summary()
    await tg.wait_for(lambda: tg.photos, within=10)
    assert len(tg.photos) == 1 and [m for m, _ in tg.calls].count("sendPhoto") == 2

    tg.photo_failures = 100  # the picture never goes: after three tries the text does
    await daemon.chat.send_daily_summary()
    text = await tg.wait_for(lambda: [m for m in tg.sent_to(GROUP)
                                      if m.text.startswith("Daily summary") and "photo" not in m.params], within=15)
    assert len(text) == 1 and len(tg.photos) == 1
    assert [m for m, _ in tg.calls].count("sendPhoto") == 2 + 3
    # The stand-in sees the text just before the outbox records the answer: wait (bounded) for the record.
    def summaries() -> list[Any]:
        return [r for r in daemon.chat.outbox.rows("telegram") if r.kind == "daily_summary"]
    await tg.wait_for(lambda: all(r.status != "pending" for r in summaries()), within=15)
    rows = summaries()
    assert [r.status for r in rows] == ["sent", "sent"] and rows[1].image is None


async def test_chart_command_answers_with_the_picture(tg: TelegramStandin, start_daemon: DaemonFactory) -> None:
    await started(start_daemon, tg)
    await tg.send_command(OPERATOR, OPERATOR, "/chart paper week")
    photo = await tg.wait_for(lambda: [p for p in tg.photos if p.chat_id == OPERATOR], within=10)
    assert photo[0].text == "Equity week [paper]"
    assert_chart(photo[0].params["photo"], 1)
    await tg.send_command(OPERATOR, OPERATOR, "/chart")
    both = await tg.wait_for(lambda: [p for p in tg.photos if p.chat_id == OPERATOR][1:], within=10)
    assert both[0].text == "Equity today"
    assert_chart(both[0].params["photo"], 2)
    await tg.send_command(OPERATOR, OPERATOR, "/chart nope")
    refusal = await tg.wait_for(lambda: [m for m in tg.sent_to(OPERATOR) if "Unknown account" in m.text])
    assert "'nope'" in html.unescape(refusal[0].text)
