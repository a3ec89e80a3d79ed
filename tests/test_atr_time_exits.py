"""ATR stops and targets from the account's bars, and time exits (exit_after / exit_at), end to end through the
webhook on the paper broker with a controllable clock, including a real restart."""

from __future__ import annotations

import csv
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from brokers.projectx.broker import ProjectXBroker
from daemon.app import Daemon
from daemon.atr import NoBars, average_true_range
from daemon.domain import Bar, SignalStatus
from daemon.strategy.exit_shapes import AccountBars
from daemon.strategy.time_exits import TimeExitRunner
from tests.conftest import SECRET, client_for, settings_for, settled, wait_until
from tests.standins.projectx_api import ProjectXStandin
from tests.standins.telegram_api import TelegramStandin
from tests.test_broker_bars import FIRST_OPEN, minute_series
from tests.test_chat_e2e import OPERATOR, VIEWER, ask, tg_settings
from tests.test_projectx_adapter import contract_id, ensure_front_contracts, make_broker

URL = f"/webhook/tradingview/{SECRET}"
T0 = datetime(2024, 3, 4, 17, 22, tzinfo=UTC)  # Monday 11:22 CT / 12:22 NY, inside both sessions
TICK = Decimal("0.25")  # ES


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seeded_rows(seed: int = 7, count: int = 40) -> list[dict[str, str]]:
    """5-minute ES bars ending at 17:20 UTC, a seeded random walk (gaps included, so the previous close counts)."""
    rng = random.Random(seed)
    start = T0.replace(minute=20) - timedelta(minutes=5 * count)
    rows, close = [], 5100.0
    for i in range(count):
        open_ = close + rng.choice([-1, 0, 1]) * rng.randint(0, 8) * 0.25
        high = max(open_, close) + rng.randint(0, 12) * 0.25
        low = min(open_, close) - rng.randint(0, 12) * 0.25
        close = rng.uniform(low, high)
        close = round(close * 4) / 4
        rows.append({"time": (start + timedelta(minutes=5 * i)).isoformat(), "open": f"{open_:.2f}",
                     "high": f"{high:.2f}", "low": f"{low:.2f}", "close": f"{close:.2f}", "volume": "100"})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def reference_atr(rows: list[dict[str, str]], period: int) -> float:
    """A separate computation in floats over the whole series: true range per row, mean of the last `period`."""
    highs = [float(r["high"]) for r in rows]
    lows = [float(r["low"]) for r in rows]
    closes = [float(r["close"]) for r in rows]
    ranges = [highs[0] - lows[0]]
    for i in range(1, len(rows)):
        ranges.append(max(highs[i] - lows[i], abs(highs[i] - closes[i - 1]), abs(lows[i] - closes[i - 1])))
    window = ranges[-period:]
    return sum(window) / len(window)


def on_tick(value: float) -> Decimal:
    return (Decimal(repr(value)) / TICK).quantize(Decimal(1), rounding=ROUND_HALF_UP) * TICK


def futures_settings(state_dir: Path, bar_file: Path | None = None) -> Any:
    account: dict[str, Any] = {"market": "futures", "paper": {"starting_cash": "100000", "multipliers": {"ES": "50"}}}
    if bar_file is not None:
        account["bar_files"] = {"ES": str(bar_file)}
    return settings_for(state_dir, accounts={"paper": account})


async def start(settings: Any, clock: Clock) -> Daemon:
    daemon = Daemon(settings, clock=clock)
    await daemon.start()
    return daemon


async def post(daemon: Daemon, body: dict[str, Any], status: int = 202) -> Any:
    async with client_for(daemon) as client:
        response = await client.post(URL, json=body)
    assert response.status_code == status, response.text
    return response.json() if status != 202 else await settled(daemon, response.json()["signal_id"])


async def open_orders(daemon: Daemon) -> dict[str, Decimal]:
    return {o.order_type.value: o.limit_price or o.stop_price for o in await daemon.brokers["paper"].open_orders()}


async def held(daemon: Daemon, symbol: str = "ES1!") -> Decimal:
    return sum((p.quantity for p in await daemon.brokers["paper"].positions() if p.symbol == symbol), Decimal(0))


async def api_positions(daemon: Daemon) -> list[dict[str, Any]]:
    async with client_for(daemon) as client:
        response = await client.get("/api/positions")
    assert response.status_code == 200
    positions: list[dict[str, Any]] = response.json()["positions"]
    return positions


# ---------------------------------------------------------------------------------------------------- ATR


def test_atr_equals_an_independent_computation_on_a_seeded_series() -> None:
    rows = seeded_rows(seed=11, count=60)
    bars = [Bar("ES", datetime.fromisoformat(r["time"]), datetime.fromisoformat(r["time"]) + timedelta(minutes=5),
                Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"])) for r in rows]
    for period in (1, 5, 14, 30):
        assert float(average_true_range(bars, period)) == pytest.approx(reference_atr(rows, period), abs=1e-9)
    with pytest.raises(NoBars, match="needs 15 closed bars, 14 available"):
        average_true_range(bars[:14], 14)


async def test_atr_stop_and_target_from_the_configured_bar_file_rounded_to_the_tick(tmp_path: Path) -> None:
    rows = seeded_rows()
    daemon = await start(futures_settings(tmp_path / "s", write_csv(tmp_path / "es.csv", rows)), Clock(T0))
    try:
        record = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                     "stop_loss": {"atr": "2", "period": 14, "timeframe": "5m"},
                                     "take_profit": {"atr": "3"}})
        assert record.status is SignalStatus.EXECUTED, record.reason
        atr = reference_atr(rows, 14)
        expected = {"stop": Decimal(5100) - on_tick(2 * atr), "limit": Decimal(5100) + on_tick(3 * atr)}
        assert await open_orders(daemon) == expected
        assert all(price % TICK == 0 for price in expected.values())
        assert on_tick(2 * atr) != Decimal(repr(2 * atr))  # the seeded series needs the rounding
    finally:
        await daemon.stop()


async def test_risk_sizing_with_an_atr_stop(tmp_path: Path) -> None:
    rows = seeded_rows()
    daemon = await start(futures_settings(tmp_path / "s", write_csv(tmp_path / "es.csv", rows)), Clock(T0))
    try:
        record = await post(daemon, {"ticker": "ES1!", "action": "buy", "price": "5100", "quantity": "2000",
                                     "quantity_type": "risk_dollar_amount", "stop_loss": {"atr": "1.5"}})
        assert record.status is SignalStatus.EXECUTED, record.reason
        distance = on_tick(1.5 * reference_atr(rows, 14))
        assert await held(daemon) == (Decimal(2000) / (distance * 50)).to_integral_value(rounding="ROUND_DOWN")
        assert await held(daemon) >= 1
    finally:
        await daemon.stop()


async def test_no_bars_refuses_the_entry_and_sends_nothing(tmp_path: Path) -> None:
    daemon = await start(futures_settings(tmp_path / "s"), Clock(T0))
    try:
        record = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                     "stop_loss": {"atr": "2"}})
        assert record.status is SignalStatus.REJECTED
        assert "no ATR for the ES1! exit" in record.reason and "no bar_files CSV is configured" in record.reason
        assert "nothing was sent" in record.reason and daemon.store.orders() == []
    finally:
        await daemon.stop()


async def test_too_few_bars_in_the_file_refuse_the_entry(tmp_path: Path) -> None:
    daemon = await start(futures_settings(tmp_path / "s", write_csv(tmp_path / "es.csv", seeded_rows(count=10))),
                         Clock(T0))
    try:
        record = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                     "stop_loss": {"atr": "2", "period": 14}})
        assert record.status is SignalStatus.REJECTED
        assert "needs 15 closed bars, 10 available" in record.reason and daemon.store.orders() == []
    finally:
        await daemon.stop()


# ---------------------------------------------------------------------------------------------- time exits


@pytest.fixture
async def tg() -> AsyncIterator[TelegramStandin]:
    standin = await TelegramStandin(max_poll=1.0).start()
    yield standin
    await standin.stop()


def runner(daemon: Daemon, clock: Clock) -> TimeExitRunner:
    """A second runner on the daemon's own store and engine: lets a test ask "is anything due now?" at once."""
    return TimeExitRunner(store=daemon.store, accept=daemon.engine.accept, publish=daemon.events.publish, clock=clock)


async def test_exit_after_fires_once_at_the_right_time_and_cancels_the_resting_exits(tmp_path: Path) -> None:
    clock = Clock(T0)
    daemon = await start(futures_settings(tmp_path / "s"), clock)
    try:
        entry = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "2", "price": "5100",
                                    "take_profit": {"points": "20"}, "stop_loss": {"points": "10"},
                                    "exit_after": "45m", "id": "e1"})
        assert entry.status is SignalStatus.EXECUTED, entry.reason
        [position] = await api_positions(daemon)
        assert position["time_exits"] == [{"entry_signal_id": entry.signal_id, "spec": "after 45m",
                                           "quantity": "2", "due_at": (T0 + timedelta(minutes=45)).isoformat()
                                           .replace("+00:00", "Z"), "seconds_left": 2700}]
        clock.now = T0 + timedelta(minutes=44, seconds=59)
        assert runner(daemon, clock).run_due() == [] and await held(daemon) == 2
        [position] = await api_positions(daemon)
        assert position["time_exits"][0]["seconds_left"] == 1
        clock.now = T0 + timedelta(minutes=45)
        await wait_until(lambda: daemon.store.time_exit(entry.signal_id).status == "fired", within=15)
        closing = daemon.store.time_exit(entry.signal_id).close_signal_id
        record = await settled(daemon, closing, within=15)
        assert record.status is SignalStatus.EXECUTED, record.reason
        assert await held(daemon) == 0 and await open_orders(daemon) == {}
        assert runner(daemon, clock).run_due() == []  # fires once
        assert [s.signal_id for s in daemon.store.signals_page("paper").items if s.source == "timer"] == [closing]
        assert await api_positions(daemon) == []
    finally:
        await daemon.stop()


async def test_a_time_exit_due_while_the_daemon_was_down_runs_at_once_after_the_restart(tmp_path: Path) -> None:
    clock = Clock(T0)
    settings = futures_settings(tmp_path / "s")
    daemon = await start(settings, clock)
    entry = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                "stop_loss": {"points": "10"}, "exit_after": "30m", "id": "r1"})
    assert entry.status is SignalStatus.EXECUTED, entry.reason
    await daemon.stop()
    clock.now = T0 + timedelta(hours=2)
    again = await start(settings, clock)
    try:
        assert await held(again) == 1  # the paper account kept its position across the restart
        await wait_until(lambda: again.store.time_exit(entry.signal_id).status == "fired", within=15)
        record = await settled(again, again.store.time_exit(entry.signal_id).close_signal_id, within=15)
        assert record.status is SignalStatus.EXECUTED, record.reason
        await wait_until(lambda: again.store.orders(open_only=True) == [], within=15)
        assert await held(again) == 0 and await open_orders(again) == {}
    finally:
        await again.stop()


async def test_a_position_flipped_by_another_signal_is_not_closed_by_the_time_exit(tmp_path: Path) -> None:
    clock = Clock(T0)
    daemon = await start(futures_settings(tmp_path / "s"), clock)
    try:
        entry = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                    "exit_after": "10m", "id": "f1"})
        await post(daemon, {"ticker": "ES1!", "action": "sell", "quantity": "3", "price": "5101", "id": "f2"})
        assert await held(daemon) == -2
        clock.now = T0 + timedelta(minutes=10)
        [closing] = runner(daemon, clock).run_due()
        record = await settled(daemon, closing, within=15)
        assert record.status is SignalStatus.EXECUTED and record.reason == "no long ES1! position to close"
        assert await held(daemon) == -2
        assert daemon.store.time_exit(entry.signal_id).status == "fired"
    finally:
        await daemon.stop()


async def test_exit_at_and_bar_counts_are_due_in_the_exchange_time(tmp_path: Path) -> None:
    clock = Clock(T0)  # 11:22 CT
    daemon = await start(futures_settings(tmp_path / "s"), clock)
    try:
        at = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                 "exit_at": "15:55", "id": "a1"})
        bars = await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                                   "exit_after": "3 bars of 15m", "id": "a2"})
        due = {t.entry_signal_id: t.due_at for t in daemon.store.time_exits()}
        assert due[at.signal_id] == datetime(2024, 3, 4, 21, 55, tzinfo=UTC)  # 15:55 CT
        assert due[bars.signal_id] == datetime(2024, 3, 4, 18, 0, tzinfo=UTC)  # closes 11:30, 11:45, 12:00 CT
    finally:
        await daemon.stop()


async def test_an_entry_that_did_not_execute_skips_its_time_exit(tmp_path: Path) -> None:
    clock = Clock(T0)
    settings = settings_for(tmp_path / "s", accounts={"paper": {"risk": {"max_order_quantity": "5"}}})
    daemon = await start(settings, clock)
    try:
        entry = await post(daemon, {"ticker": "AAPL", "action": "buy", "quantity": "10", "price": "100",
                                    "exit_after": "5m"})
        assert entry.status is SignalStatus.REJECTED
        assert daemon.store.time_exit(entry.signal_id) is None  # refused before anything was armed
    finally:
        await daemon.stop()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"exit_after": "45x"}, "exit_after must be a duration"),
        ({"exit_after": "3 bars"}, "counts bars of which timeframe"),
        ({"exit_after": "3 bars of 7m"}, "timeframe must be one of"),
        ({"exit_after": "45m", "exit_at": "15:55"}, "not both"),
        ({"exit_at": "25:99"}, "exit_at must be a time of day"),
        ({"action": "exit", "exit_after": "5m"}, "go with an entry"),
        ({"stop_loss": {"atr": "2", "timeframe": "7m"}}, "stop_loss.timeframe must be one of"),
        ({"stop_loss": {"atr": "2", "period": "0"}}, "between 1 and 500"),
        ({"stop_loss": {"atr": "-1"}}, "stop_loss.atr must be greater than zero"),
        ({"take_profit": {"atr": "2", "ticks": "3"}}, "takes atr, period and timeframe"),
    ],
)
async def test_bad_atr_and_time_fields_are_refused(tmp_path: Path, fields: dict[str, Any], problem: str) -> None:
    daemon = await start(settings_for(tmp_path / "s"), Clock(T0))
    try:
        body = {"ticker": "AAPL", "action": "buy", "quantity": "1", "price": "100", **fields}
        answer = await post(daemon, body, status=422)
        assert problem in answer["detail"], answer
        assert daemon.store.orders() == []
    finally:
        await daemon.stop()


async def test_chat_positions_and_the_status_page_show_the_countdown(tmp_path: Path, tg: TelegramStandin) -> None:
    clock = Clock(T0)
    settings = futures_settings(tmp_path / "s")
    settings = settings_for(tmp_path / "s", accounts={"paper": settings.accounts["paper"].model_dump(
        exclude_none=True)}, **tg_settings(tg))
    daemon = await start(settings, clock)
    try:
        await tg.wait_for(lambda: tg.commands, within=10)
        await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "1", "price": "5100",
                            "exit_after": "90m"})
        clock.now = T0 + timedelta(minutes=25, seconds=30)
        reply = " ".join((await ask(tg, "/positions")).text.split())
        assert "Time exits paper ES1! +1 closes after 90m: 1h04m30s left (due 18:52 UTC)" in reply
        async with client_for(daemon) as client:
            page = await client.get("/")
        assert page.status_code == 200
        assert 'data-deadline="2024-03-04T18:52:00+00:00">1h04m30s</b> (after 90m, 1)' in page.text
    finally:
        await daemon.stop()


async def test_stop_atr_and_exit_after_from_chat(tmp_path: Path, tg: TelegramStandin) -> None:
    rows = seeded_rows()
    clock = Clock(T0)
    account = futures_settings(tmp_path / "s", write_csv(tmp_path / "es.csv", rows)).accounts["paper"]
    settings = settings_for(tmp_path / "s", accounts={"paper": account.model_dump(exclude_none=True)},
                            **tg_settings(tg))
    daemon = await start(settings, clock)
    try:
        await tg.wait_for(lambda: tg.menu(OPERATOR), within=10)
        assert {"stop", "exit_after"} <= set(tg.menu(OPERATOR))
        assert not {"stop", "exit_after"} & set(tg.menu(VIEWER))  # operator commands: not on a viewer's menu
        no_stop = " ".join((await ask(tg, "/stop ES1! atr 2")).text.split())
        assert no_stop == "No ES1! position on any account."
        await post(daemon, {"ticker": "ES1!", "action": "buy", "quantity": "2", "price": "5100",
                            "take_profit": {"points": "30"}, "stop_loss": {"points": "10"}})
        assert await open_orders(daemon) == {"limit": Decimal("5130"), "stop": Decimal("5090")}
        denied = (await ask(tg, "/stop ES1! atr 2", user=VIEWER)).text
        assert "needs the operator role" in denied
        assert await open_orders(daemon) == {"limit": Decimal("5130"), "stop": Decimal("5090")}
        moved = " ".join((await ask(tg, "/stop ES1! atr 2")).text.split())
        stop = Decimal(5100) - on_tick(2 * reference_atr(rows, 14))
        assert moved.startswith(f"paper: ES1! stop moved to {stop.normalize():f} (2 x ATR 14 5m")
        assert await open_orders(daemon) == {"limit": Decimal("5130"), "stop": stop}
        bad = (await ask(tg, "/exit-after ES1! soon")).text
        assert "exit_after must be a duration" in bad and daemon.store.time_exits() == []
        armed = " ".join((await ask(tg, "/exit-after ES1! 30m")).text.split())
        assert armed == "ES1! 2 on paper closes after 30m, at 2024-03-04 17:52 UTC"
        [position] = await api_positions(daemon)
        assert [t["seconds_left"] for t in position["time_exits"]] == [1800]
        clock.now = T0 + timedelta(minutes=30)
        await wait_until(lambda: daemon.store.time_exits() == [], within=15)
        await wait_until(lambda: daemon.store.orders(open_only=True) == [], within=15)
        assert await held(daemon) == 0 and await open_orders(daemon) == {}
        actions = [e.action for e in daemon.store.audit_log()]
        assert "stop" in actions and "exit_after" in actions
    finally:
        await daemon.stop()


# ------------------------------------------------------------------------------ broker market data first


@pytest.fixture
async def px_broker() -> AsyncIterator[ProjectXBroker]:
    stand = ProjectXStandin()
    ensure_front_contracts(stand)
    stand.history.add_minutes(contract_id(stand, "MES1!"), minute_series(FIRST_OPEN, 6 * 60))
    await stand.start()
    broker = make_broker(stand)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()
        await stand.stop()
    stand.assert_no_violations()


async def test_atr_comes_from_the_brokers_bars_where_it_serves_them(px_broker: ProjectXBroker, tmp_path: Path
                                                                    ) -> None:
    until = FIRST_OPEN + timedelta(hours=2, minutes=3)
    other = write_csv(tmp_path / "other.csv", seeded_rows())  # would give another ATR: must not be used
    source = AccountBars({"px": px_broker}, {"px": {"MES": other}})
    bars = await source.bars("px", "MES1!", "5m", "cme", until, 15)
    # The same 5-minute bars, built straight from the stand-in's minutes.
    minutes = minute_series(FIRST_OPEN, 6 * 60)
    rows = []
    for k in range(24):
        start = FIRST_OPEN + timedelta(minutes=5 * k)
        inside = [m for m in minutes if start <= m.start < start + timedelta(minutes=5)]
        rows.append({"high": str(max(m.high for m in inside)), "low": str(min(m.low for m in inside)),
                     "close": str(inside[-1].close)})
    assert [b.end for b in bars][-1] == FIRST_OPEN + timedelta(hours=2)
    assert float(average_true_range(bars, 14)) == pytest.approx(reference_atr(rows, 14), abs=1e-9)
    assert float(average_true_range(bars, 14)) != pytest.approx(reference_atr(seeded_rows(), 14), abs=1e-6)
