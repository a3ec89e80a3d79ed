"""End-to-end: webhooks drive a paper Topstep 50K account through daily-loss and max-loss breaches.

An in-process daemon with a controllable clock: the account is flattened, blocked (new entries refused
with the rule and the numbers), reported (violation event, `/api/violations`), and unblocked by the 17:00 CT
session roll; a hard breach locks it until an operator reset. Also a breach in the middle of a burst.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.calendar import CHICAGO, CME_ROLL
from daemon.domain import SignalStatus
from daemon.risk.funded_book import FundedConfigError
from daemon.scheduler import build_scheduler, daily_at
from tests.conftest import SECRET, alert, client_for, settings_for, settled, wait_until

URL = f"/webhook/tradingview/{SECRET}"
ACCOUNT = "topstep"
# A Tuesday in the future; the paper broker's fills follow the daemon's clock.
START = datetime(2030, 3, 5, 9, 0, tzinfo=CHICAGO)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def topstep_settings(state_dir: Path, **overrides: Any) -> Any:
    account = {
        "symbols": ["ES"],
        "paper": {"starting_cash": "50000", "multipliers": {"ES": "50"}},
        "funded": {"preset": "topstep_50k_combine", "overrides": overrides},
    }
    return settings_for(state_dir, accounts={ACCOUNT: account})


@pytest.fixture
async def topstep(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    running: list[Daemon] = []

    async def start(**overrides: Any) -> tuple[Daemon, Clock]:
        clock = Clock(START)
        daemon = Daemon(topstep_settings(tmp_path / "state", **overrides), clock=clock)
        await daemon.start()
        running.append(daemon)
        return daemon, clock

    yield start
    for daemon in running:
        await daemon.stop()


async def send(daemon: Daemon, **fields: Any) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=alert(ticker="ES", **fields))
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


async def es_position(daemon: Daemon) -> Decimal:
    return sum((p.quantity for p in await daemon.brokers[ACCOUNT].positions() if p.symbol == "ES"), Decimal(0))


def risk_events(daemon: Daemon, kind: str) -> list[Any]:
    return [e for e in daemon.events.recent if e.kind == kind and e.account == ACCOUNT]


async def test_daily_loss_breach_flattens_blocks_reports_and_unblocks_next_session(topstep) -> None:  # type: ignore[no-untyped-def]
    daemon, clock = await topstep()
    first = await send(daemon, action="buy", quantity="2", price="5000", id="e1")
    assert first.status is SignalStatus.EXECUTED and await es_position(daemon) == 2

    # The market falls 10 points: 2 ES x 10 x $50 = $1,000, Topstep 50K's daily loss limit.
    clock.now += timedelta(minutes=5)
    await daemon.brokers[ACCOUNT].observe_price("ES", Decimal("4990"), clock.now)
    await daemon.risk_monitor.mark_all()

    # Flattened (orders cancelled, position closed) through the account's own worker.
    await wait_until(lambda: any(e.kind == "flatten" for e in risk_events(daemon, "flatten")))
    assert await es_position(daemon) == 0
    # Reported: a violation event with the numbers, recorded for /api/violations.
    [event] = [e for e in risk_events(daemon, "violation") if e.data["rule"] == "daily_loss_limit"]
    assert event.data["action"] == "flatten_block_session"
    assert event.data["numbers"]["session_loss"] == "1000.00" and event.data["numbers"]["daily_loss_limit"] == "1000.00"
    async with client_for(daemon) as client:
        listed = (await client.get("/api/violations", params={"account": ACCOUNT})).json()["violations"]
    assert [v["rule"] for v in listed] == ["daily_loss_limit"]
    assert listed[0]["numbers"]["live_equity"] == "49000.00"

    # Blocked: a new entry is refused with the rule and until when; an exit would still pass.
    clock.now += timedelta(minutes=5)
    refused = await send(daemon, action="buy", quantity="1", price="4991", id="e2")
    assert refused.status is SignalStatus.REJECTED
    assert "Blocked by daily_loss_limit until 2030-03-05T17:00:00-06:00" in refused.reason
    assert await es_position(daemon) == 0
    rows = {r.name: r for r in daemon.risk.describe(ACCOUNT)}
    assert rows["session_block"].breached and rows["daily_loss_limit"].left == "0.00"

    # Next session: the 17:00 CT roll lifts the block; entries go through again.
    clock.now = datetime(2030, 3, 5, 17, 0, 30, tzinfo=CHICAGO)
    await daemon.risk_monitor.session_roll()
    assert any("lifted" in e.summary for e in risk_events(daemon, "resumed"))
    state = daemon.risk.funded.state(ACCOUNT)
    assert state.blocked_until is None and state.session_start_balance == Decimal("49000")
    again = await send(daemon, action="buy", quantity="1", price="4991", id="e3")
    assert again.status is SignalStatus.EXECUTED and await es_position(daemon) == 1
    assert daemon.risk.describe(ACCOUNT)[0].name == "daily_loss_limit"


async def test_block_survives_a_restart(tmp_path: Path, topstep) -> None:  # type: ignore[no-untyped-def]
    daemon, clock = await topstep()
    await send(daemon, action="buy", quantity="2", price="5000", id="r1")
    await daemon.brokers[ACCOUNT].observe_price("ES", Decimal("4985"), clock.now)
    await daemon.risk_monitor.mark_all()
    await wait_until(lambda: risk_events(daemon, "flatten"))
    await daemon.stop()

    again = Daemon(topstep_settings(tmp_path / "state"), clock=clock)
    await again.start()
    try:
        refused = await send(again, action="buy", quantity="1", price="4990", id="r2")
        assert refused.status is SignalStatus.REJECTED and "daily_loss_limit" in refused.reason
    finally:
        await again.stop()


async def test_max_loss_locks_until_operator_reset(topstep) -> None:  # type: ignore[no-untyped-def]
    daemon, clock = await topstep(daily_loss_limit="3000")
    await send(daemon, action="buy", quantity="2", price="5000", id="h1")
    # 21 points x 2 x $50 = $2,100 below the start: live equity 47,900 <= the 48,000 floor.
    await daemon.brokers[ACCOUNT].observe_price("ES", Decimal("4979"), clock.now)
    await daemon.risk_monitor.mark_all()
    await wait_until(lambda: risk_events(daemon, "flatten"))
    assert await es_position(daemon) == 0
    [event] = [e for e in risk_events(daemon, "violation") if e.data["rule"] == "max_loss"]
    assert event.data["action"] == "flatten_lock" and event.data["numbers"]["floor"] == "48000.00"
    assert daemon.store.controls()[ACCOUNT].locked and ACCOUNT in daemon.engine.locked

    # Locked across sessions: the roll does not unlock a hard breach.
    clock.now = datetime(2030, 3, 6, 9, tzinfo=CHICAGO)
    await daemon.risk_monitor.session_roll()
    refused = await send(daemon, action="buy", quantity="1", price="4980", id="h2")
    assert refused.status is SignalStatus.REJECTED and "locked" in refused.reason

    snapshot = daemon.risk_monitor.reset_lock(ACCOUNT, "operator")
    assert snapshot["locked"] is False and not daemon.store.controls()[ACCOUNT].locked
    assert any(a.action == "reset_lock" for a in daemon.store.audit_log())
    allowed = await send(daemon, action="buy", quantity="1", price="4980", id="h3")
    assert allowed.status is SignalStatus.EXECUTED


async def test_breach_in_the_middle_of_a_burst_of_fills(topstep) -> None:  # type: ignore[no-untyped-def]
    daemon, _clock = await topstep()
    # One contract more on every alert while the price slides: after the 3rd fill the book holds 3 ES at an
    # average of 4996; the 4th alert's price 4988 marks it down 3 x 8 x $50 = $1,200 >= $1,000 before that
    # alert's own buy is checked, so the 4th buy is refused too.
    prices = ["5000", "4996", "4992", "4988", "4988", "4988"]
    ids = []
    async with client_for(daemon) as client:
        for n, price in enumerate(prices):
            response = await client.post(URL, json=alert(ticker="ES", action="buy", quantity="1", price=price,
                                                         id=f"b{n}"))
            assert response.status_code == 202
            ids.append(response.json()["signal_id"])
    records = [await settled(daemon, signal_id) for signal_id in ids]
    assert [r.status for r in records] == [SignalStatus.EXECUTED] * 3 + [SignalStatus.REJECTED] * 3
    assert all("Blocked by daily_loss_limit" in (r.reason or "") for r in records[3:])
    await wait_until(lambda: risk_events(daemon, "flatten"))
    await wait_until(lambda: daemon.risk.funded.state(ACCOUNT).contracts == 0)
    assert await es_position(daemon) == 0
    breaches = [e for e in risk_events(daemon, "violation") if e.data.get("action") == "flatten_block_session"]
    assert len(breaches) == 1 and breaches[0].data["numbers"]["session_loss"] == "1200.00"
    # Closed at 4988: realized 3 x -8 x $50; no hard breach (floor 48,000).
    assert daemon.risk.funded.state(ACCOUNT).balance == Decimal("48800")
    assert ACCOUNT not in daemon.engine.locked


async def test_a_breaching_webhook_price_is_acted_on_before_its_order(topstep) -> None:  # type: ignore[no-untyped-def]
    """Topstep 50K Combine, daily loss limit $1,000 (TOPSTEP_TABLE): long 2 ES from 5,000, an alert to buy one
    more arrives with price 4,990, i.e. 2 x 10 points x $50 = $1,000 down. No mark job runs in between: the
    alert's price alone must flatten and block the account, and its own buy must be refused, not placed."""
    daemon, clock = await topstep()
    assert (await send(daemon, action="buy", quantity="2", price="5000", id="w1")).status is SignalStatus.EXECUTED
    clock.now += timedelta(seconds=2)  # well inside mark_interval_seconds: the next mark has not run
    refused = await send(daemon, action="buy", quantity="1", price="4990", id="w2")
    assert refused.status is SignalStatus.REJECTED
    assert "Blocked by daily_loss_limit" in (refused.reason or "")
    [event] = [e for e in risk_events(daemon, "violation") if e.data["rule"] == "daily_loss_limit"]
    assert event.data["numbers"]["session_loss"] == "1000.00" and event.data["action"] == "flatten_block_session"
    await wait_until(lambda: risk_events(daemon, "flatten"))
    await wait_until(lambda: daemon.risk.funded.state(ACCOUNT).contracts == 0)
    assert await es_position(daemon) == 0


async def test_cash_and_intraday_margin_rules_in_the_order_path(start_daemon) -> None:  # type: ignore[no-untyped-def]
    paper = {"paper": {"starting_cash": "1000"}}
    daemon = await start_daemon(accounts={
        "cash": {**paper, "cash": {"cash_account": True}},
        "lenient": {**paper, "cash": {"cash_account": True, "allow_unsettled": True}},
        "margin": {**paper, "pdt": {"mode": "intraday_margin"}},
    })
    big = {"ticker": "AAPL", "action": "buy", "quantity": "200", "price": "10"}  # 2,000 > 1,000 of cash

    refused = await send_to(daemon, account="cash", id="c1", **big)
    assert refused.status is SignalStatus.REJECTED and "exceeds settled cash 1000" in refused.reason
    assert (await send_to(daemon, account="cash", id="c2", **{**big, "quantity": "50"})).status \
        is SignalStatus.EXECUTED

    warned = await send_to(daemon, account="lenient", id="l1", **big)
    assert warned.status is SignalStatus.EXECUTED
    [event] = [e for e in daemon.events.recent if e.kind == "violation" and e.account == "lenient"]
    assert event.data["warning"] is True and event.data["rule"] == "unsettled_funds_purchase"
    assert daemon.store.violations("lenient")[0].numbers["severity"] == "warning"

    over = await send_to(daemon, account="margin", id="m1", **big)
    assert over.status is SignalStatus.REJECTED and "exceeds buying power 1,000.00" in over.reason


async def send_to(daemon: Daemon, **fields: Any) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=fields)
    assert response.status_code == 202, response.text
    return await settled(daemon, response.json()["signal_id"])


def test_bad_funded_preset_stops_the_daemon_at_construction(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", accounts={ACCOUNT: {"funded": {"preset": "topstep_5k"}}})
    with pytest.raises(FundedConfigError, match=r"accounts\.topstep\.funded: .*unknown preset 'topstep_5k'"):
        Daemon(settings)


def test_session_roll_job_fires_at_five_pm_chicago() -> None:
    async def job() -> None:
        return None

    scheduler = build_scheduler()
    daily_at(scheduler, CME_ROLL, "America/Chicago", job, "roll")
    trigger = scheduler.get_job("roll").trigger
    friday_noon = datetime(2030, 3, 8, 12, tzinfo=CHICAGO)
    assert trigger.get_next_fire_time(None, friday_noon) == datetime(2030, 3, 8, 17, tzinfo=CHICAGO)
    after = trigger.get_next_fire_time(None, datetime(2030, 3, 8, 17, 1, tzinfo=CHICAGO))
    assert after == datetime(2030, 3, 11, 17, tzinfo=CHICAGO)  # Monday: no roll job on the weekend


async def test_an_exit_refused_by_pdt_keeps_its_stop_loss(tmp_path: Path) -> None:
    # Three day trades today under the PDT equity minimum: closing a fourth same-day opening is refused
    # (FINRA 4210(f)(8)(B)). The refusal must leave the position protected by its bracket stop-loss.
    margin = {"pdt": {"mode": "legacy", "min_equity": "1000000"}}
    settings = settings_for(tmp_path / "state", accounts={"margin": margin}, default_account="margin")
    daemon = Daemon(settings, clock=Clock(datetime(2030, 3, 5, 10, 30, tzinfo=CHICAGO)))
    await daemon.start()
    try:
        async with client_for(daemon) as client:
            async def send(body: dict[str, Any]) -> Any:
                return await settled(daemon, (await client.post(URL, json=body)).json()["signal_id"])

            for n, symbol in enumerate(("AAPL", "MSFT", "NVDA")):
                await send(alert(id=f"o{n}", ticker=symbol, quantity="1"))
                await send({"ticker": symbol, "action": "exit", "price": "101", "id": f"c{n}"})
            opened = await send(alert(id="o3", ticker="TSLA", quantity="1", stop_loss="90"))
            refused = await send({"ticker": "TSLA", "action": "exit", "price": "101", "id": "c3"})
        broker = daemon.brokers["margin"]
        assert opened.status is SignalStatus.EXECUTED
        assert refused.status is SignalStatus.REJECTED, refused.reason
        assert [(p.symbol, p.quantity) for p in await broker.positions()] == [("TSLA", Decimal(1))]
        stops = [o for o in await broker.open_orders() if o.symbol == "TSLA"]
        assert [(o.order_type.value, o.stop_price) for o in stops] == [("stop", Decimal(90))]
    finally:
        await daemon.stop()
