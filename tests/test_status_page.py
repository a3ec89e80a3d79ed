"""The status page in a real browser (headless Chromium): what a trader sees, live, and what it refuses.

A daemon runs in-process with a prop-firm account (`topstep`, Topstep 50K combine rules) and a margin stock
account under the PDT rule (`stocks`); its clock is fixed on a Tuesday morning so every number is known.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, select

from daemon.app import Daemon
from daemon.domain import AccountState
from daemon.store.tables import SignalRow
from tests import browser
from tests.conftest import SECRET, alert, client_for, settings_for, wait_until
from tests.docs_images import images_dir

pytestmark = pytest.mark.skipif(not browser.available(), reason="needs Debian's chromium and chromium-driver")

TOKEN = "page-token-0123456789abcdef"
START = datetime(2030, 3, 5, 9, 0, tzinfo=ZoneInfo("America/Chicago"))
DOCS = images_dir()
URL = f"/webhook/tradingview/{SECRET}"


def page_settings(state_dir: Path, **extra: Any) -> Any:
    accounts = {
        "topstep": {"symbols": ["ES"], "paper": {"starting_cash": "50000", "multipliers": {"ES": "50"}},
                    "funded": {"preset": "topstep_50k_combine"}},
        "stocks": {"paper": {"starting_cash": "20000"}, "pdt": {"mode": "legacy"},
                   "risk": {"max_position": "500"}},
        "paper": {"enabled": False},
    }
    base: dict[str, Any] = {"accounts": accounts, "api": {"token": TOKEN},
                            "daemon": {"timezone": "America/Chicago"}}
    base.update(extra)
    return settings_for(state_dir, **base)


def seed_morning(daemon: Daemon) -> None:
    """Equity snapshots every five minutes since the open, as periodic reconciliation records them."""
    for account, start, path in (("topstep", Decimal(50000), (-150, -30, -70, 110, 30, 160, 60)),
                                 ("stocks", Decimal(20000), (40, 0, 25, -30, -55, -20, -10))):
        for i, step in enumerate(path):
            at = START - timedelta(minutes=5 * (len(path) - i))
            daemon.store.record_snapshot(AccountState(account=account, broker="paper", cash=start,
                                                      equity=start + step, as_of=at))


@pytest.fixture
async def page_daemon(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    running: list[Daemon] = []

    async def start(**extra: Any) -> Daemon:
        daemon = Daemon(page_settings(tmp_path / "state", **extra), clock=lambda: START)
        await daemon.start()
        running.append(daemon)
        seed_morning(daemon)
        return daemon

    yield start
    for daemon in running:
        await daemon.stop()


def base(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.port}"


def sign_in(driver: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base(daemon) + "/")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "live-state").text == "live", 10)


def wait_for(driver: Any, predicate: Callable[[Any], Any], within: float) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d: Any) -> Any:
        try:
            return predicate(d)
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    return WebDriverWait(driver, within, poll_frequency=0.02).until(safe)


def text(driver: Any, css: str) -> str:
    """The element's text; re-read when a live update replaced it meanwhile (bounded)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + 2
    while True:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


async def es_position(daemon: Daemon) -> Decimal:
    return sum((p.quantity for p in await daemon.brokers["topstep"].positions() if p.symbol == "ES"), Decimal(0))


def flatten_signals(daemon: Daemon) -> list[SignalRow]:
    with Session(daemon.store.engine) as session:
        rows = session.exec(select(SignalRow).where(SignalRow.account == "topstep")).all()
    return [row for row in rows if '"action":"flatten"' in row.intent_json]


async def test_a_trader_signs_in_sees_fills_live_checks_risk_and_flattens(page_daemon) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    daemon = await page_daemon()
    with browser.chromium(1280, 1100) as driver:
        # No token, no data: the page is a sign-in form and the stream refuses.
        await asyncio.to_thread(driver.get, base(daemon) + "/")
        await asyncio.to_thread(wait_for, driver, lambda d: d.find_element(By.ID, "token"), 10)
        source = await asyncio.to_thread(lambda: driver.page_source)
        assert "token" in source and "account-topstep" not in source and "50,000" not in source
        async with httpx.AsyncClient(base_url=base(daemon), timeout=5) as anonymous:
            assert (await anonymous.get("/page/events")).status_code == 401
            assert (await anonymous.post("/page/flatten", json={"account": "topstep"},
                                         headers={"X-Traderd-Page": "flatten"})).status_code == 401

        await asyncio.to_thread(sign_in, driver, daemon)
        assert await asyncio.to_thread(text, driver, "#account-topstep .equity") == "$50,000.00"
        assert not await asyncio.to_thread(driver.find_elements, By.CSS_SELECTOR, "#account-topstep tr[data-symbol]")

        # A webhook fill shows up by itself, pushed over SSE: the page is never reloaded (the marker set in this
        # document survives) and it has no polling of its own. How fast is for the benchmarks, not a timed assert.
        await asyncio.to_thread(driver.execute_script, "window.traderdNotReloaded = true;")
        async with client_for(daemon) as client:
            response = await client.post(URL, json=alert(ticker="ES", quantity="2", price="5000", account="topstep"))
        assert response.status_code == 202
        await asyncio.to_thread(wait_for, driver, lambda d: text(
            d, '#account-topstep tr[data-symbol="ES"] .qty') == "2", 10)
        assert await asyncio.to_thread(driver.execute_script, "return window.traderdNotReloaded === true;")

        # The risk meters show the account's numbers (Topstep 50K: $1,000 daily loss, $2,000 to the floor,
        # 5 contracts, flat by 15:10 Chicago = 6h10m after 09:00).
        def meter(rule: str, part: str) -> str:
            return text(driver, f'#account-topstep li[data-rule="{rule}"] .{part}')

        assert await asyncio.to_thread(meter, "contracts", "used") == "2"
        assert await asyncio.to_thread(meter, "contracts", "limit") == "5"
        assert await asyncio.to_thread(meter, "contracts", "left") == "3"
        assert await asyncio.to_thread(meter, "daily_loss_limit", "limit") == "1,000.00"
        assert await asyncio.to_thread(meter, "daily_loss_limit", "left") == "1,000.00"
        assert await asyncio.to_thread(meter, "max_loss", "left") == "2,000.00"
        assert re.fullmatch(r"6h(10m00|09m[0-5]\d)s", await asyncio.to_thread(meter, "flat_by", "left"))
        pdt = await asyncio.to_thread(text, driver, '#account-stocks li[data-rule="day_trades"] .left')
        assert pdt == "3"
        await asyncio.to_thread(driver.execute_script, "document.activeElement.blur()")
        shot = await asyncio.to_thread(driver.get_screenshot_as_png)
        assert browser.png_size(shot) == (1280, 1100) and browser.distinct_colours(shot) > 50
        (DOCS / "status-page-laptop.png").write_bytes(shot)

        # Flatten needs the confirmation: the first click only asks, cancelling changes nothing.
        click = lambda css: driver.find_element(By.CSS_SELECTOR, css).click()  # noqa: E731
        await asyncio.to_thread(click, '#account-topstep button[data-flatten="topstep"]')
        assert await asyncio.to_thread(driver.execute_script, "return document.getElementById('confirm').open")
        await asyncio.sleep(0.3)
        assert await es_position(daemon) == Decimal(2) and flatten_signals(daemon) == []
        await asyncio.to_thread(click, "#confirm-cancel")
        assert not await asyncio.to_thread(driver.execute_script, "return document.getElementById('confirm').open")
        await asyncio.sleep(0.2)
        assert await es_position(daemon) == Decimal(2) and flatten_signals(daemon) == []

        await asyncio.to_thread(click, '#account-topstep button[data-flatten="topstep"]')
        await asyncio.to_thread(driver.execute_script,  # a double click on "Yes" is still one flatten
                                "const b = document.getElementById('confirm-ok'); b.click(); b.click();")
        await wait_until(lambda: flatten_signals(daemon), within=15)
        assert await asyncio.to_thread(wait_for, driver, lambda d: "executed" in text(d, "#confirm-result"), 10)
        assert await es_position(daemon) == Decimal(0)
        await asyncio.to_thread(wait_for, driver, lambda d: d.find_elements(
            By.CSS_SELECTOR, "#account-topstep .empty-positions"), 10)
        assert len(flatten_signals(daemon)) == 1
        audit = [e for e in daemon.store.audit_log(50) if e.action == "flatten"]
        assert audit and all(e.actor == "status page" for e in audit)

    # The phone layout, dark: one column, same data.
    with browser.chromium(390, 844, dark=True) as phone:
        await asyncio.to_thread(sign_in, phone, daemon)
        width = await asyncio.to_thread(phone.execute_script, "return document.documentElement.scrollWidth")
        assert width <= 390  # nothing forces sideways scrolling
        background = await asyncio.to_thread(phone.execute_script,
                                             "return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # the dark theme
        shot = await asyncio.to_thread(phone.get_screenshot_as_png)
        assert browser.png_size(shot) == (390, 844) and browser.distinct_colours(shot) > 50
        (DOCS / "status-page-phone.png").write_bytes(shot)


async def test_bearer_token_streams_and_a_forged_post_is_refused(page_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = await page_daemon()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base(daemon), timeout=5, headers=headers) as client:
        page = await client.get("/")
        assert page.status_code == 200 and 'id="account-topstep"' in page.text
        async with client.stream("GET", "/page/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = ""
            async for line in stream.aiter_lines():
                first += line + "\n"
                if line.startswith("event: update"):
                    break
            assert first.startswith("retry: ")
        forged = await client.post("/page/flatten", json={"account": "topstep"})  # no page header
        assert forged.status_code == 403
    assert flatten_signals(daemon) == []


async def test_page_is_off_without_a_token_beyond_localhost_and_open_on_loopback(tmp_path: Path) -> None:
    exposed = Daemon(page_settings(tmp_path / "a", api={}, webhook={"host": "0.0.0.0", "port": 0,
                                                                       "secret": SECRET}), clock=lambda: START)
    await exposed.start()
    try:
        async with httpx.AsyncClient(base_url=base(exposed), timeout=5) as client:
            assert (await client.get("/")).status_code == 404
            assert (await client.get("/page/events")).status_code == 404
    finally:
        await exposed.stop()
    local = Daemon(page_settings(tmp_path / "b", api={}), clock=lambda: START)
    await local.start()
    try:
        async with httpx.AsyncClient(base_url=base(local), timeout=5) as client:
            page = await client.get("/")
        assert page.status_code == 200 and 'id="account-stocks"' in page.text
    finally:
        await local.stop()
