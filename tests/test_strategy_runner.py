"""Strategy runner: bar-close alignment across sessions and holidays, coalescing, disabling, restart safety."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from brokers.paper.broker import PaperBroker
from config.brokers import PaperSettings
from config.settings import RiskLimits
from config.strategies import StrategySettings
from daemon.calendar import CHICAGO, NEW_YORK
from daemon.domain import Event
from daemon.engine import Engine
from daemon.events import EventBus
from daemon.metrics import Metrics
from daemon.risk.engine import RiskEngine
from daemon.scheduler import build_scheduler
from daemon.store.repository import Store
from daemon.store.state import StateStore
from daemon.strategy.bars import CsvBarSource
from daemon.strategy.runner import BarCloseTrigger, StrategyRunner
from tests.conftest import wait_until

ALWAYS_BUY = '''
from strategies.base import Strategy, buy

class AlwaysBuy(Strategy):
    def on_bar(self, bar, history, position):
        self.state["bars"] = self.state.get("bars", 0) + 1
        return [buy(1, comment=f"bar {bar.end.isoformat()}")]
'''
BROKEN = '''
from strategies.base import Strategy

class Broken(Strategy):
    def on_bar(self, bar, history, position):
        raise ZeroDivisionError("boom")
'''


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)  # type: ignore[misc]


def fires(trigger: BarCloseTrigger, now: datetime, n: int) -> list[datetime]:
    out, previous = [], None
    for _ in range(n):
        previous = trigger.get_next_fire_time(previous, now)
        assert previous is not None
        out.append(previous)
    return out


def test_hourly_nyse_closes_skip_thanksgiving_and_honour_the_early_close() -> None:
    trigger = BarCloseTrigger("nyse", "1h", timedelta(seconds=2))
    got = fires(trigger, ny(2024, 11, 27, 14, 45), 7)
    expected = [ny(2024, 11, 27, 15, 30), ny(2024, 11, 27, 16, 0),  # last bar of the session is 15:30-16:00
                ny(2024, 11, 29, 10, 30), ny(2024, 11, 29, 11, 30), ny(2024, 11, 29, 12, 30),
                ny(2024, 11, 29, 13, 0),  # early close after Thanksgiving (the 28th is a holiday)
                ny(2024, 12, 2, 10, 30)]  # over the weekend
    assert got == [e + timedelta(seconds=2) for e in expected]


def test_daily_closes_across_a_weekend_and_a_holiday() -> None:
    nyse = fires(BarCloseTrigger("nyse", "1d"), ny(2024, 12, 24, 13, 0), 3)
    assert nyse == [ny(2024, 12, 26, 16, 0), ny(2024, 12, 27, 16, 0), ny(2024, 12, 30, 16, 0)]  # 25th closed
    cme = fires(BarCloseTrigger("cme", "1d"), datetime(2024, 12, 6, 15, 0, tzinfo=CHICAGO), 2)
    assert cme == [datetime(2024, 12, 6, 16, 0, tzinfo=CHICAGO), datetime(2024, 12, 9, 16, 0, tzinfo=CHICAGO)]
    cme_hourly = fires(BarCloseTrigger("cme", "1h"), datetime(2024, 12, 5, 15, 30, tzinfo=CHICAGO), 2)
    assert cme_hourly == [datetime(2024, 12, 5, 16, 0, tzinfo=CHICAGO),  # the daily break 16:00-17:00 CT
                          datetime(2024, 12, 5, 18, 0, tzinfo=CHICAGO)]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def write_minutes(path: Path, start: datetime, minutes: int) -> None:
    rows = ["time,open,high,low,close,volume"]
    for i in range(minutes):
        price = Decimal(100) + Decimal(i) / 10
        rows.append(f"{(start + timedelta(minutes=i)).isoformat()},{price},{price + 1},{price - 1},{price},10")
    path.write_text("\n".join(rows) + "\n")


class Rig:
    """A real store, paper broker, engine and scheduler on a controllable clock."""

    def __init__(self, tmp: Path, clock: Clock, strategies: dict[str, StrategySettings]) -> None:
        self.tmp, self.clock, self.strategies = tmp, clock, strategies
        self.published: list[Event] = []

    async def start(self) -> StrategyRunner:
        self.store = Store(f"sqlite:///{self.tmp / 'db.sqlite'}")
        self.store.open()
        self.broker = PaperBroker("paper", PaperSettings(), self.tmp / "paper.json", clock=self.clock)
        await self.broker.connect()
        events = EventBus()
        events.subscribe(self.published.append)
        self.engine = Engine(store=self.store, brokers={"paper": self.broker},
                             risk=RiskEngine({"paper": RiskLimits()}, self.clock), events=events,
                             metrics=Metrics(), clock=self.clock)
        await self.engine.start()
        self.scheduler = build_scheduler()
        bars = CsvBarSource({"XYZ": self.tmp / "xyz.csv"})
        self.runner = StrategyRunner(submit=self.engine.accept, publish=events.publish,
                                     brokers={"paper": self.broker}, scheduler=self.scheduler,
                                     state=StateStore(self.store), bars=bars, strategies=self.strategies,
                                     clock=self.clock)
        await self.runner.start()
        return self.runner

    async def stop(self) -> None:
        await self.runner.stop()
        await self.engine.stop(2)
        await self.broker.close()
        self.store.close()

    async def position(self) -> Decimal:
        """The broker's position once every accepted signal is finished."""
        await wait_until(lambda: not self.store.unfinished_signals(), within=15)
        return sum((p.quantity for p in await self.broker.positions()), Decimal(0))


@pytest.fixture
def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Rig]]:
    (tmp_path / "always_buy.py").write_text(ALWAYS_BUY)
    (tmp_path / "broken.py").write_text(BROKEN)
    write_minutes(tmp_path / "xyz.csv", ny(2024, 12, 3, 9, 30), 120)

    def make(clock: Clock, **names: str) -> Rig:
        strategies = {name: StrategySettings(strategy=str(tmp_path / f"{file}.py"), account="paper", symbol="XYZ",
                                             timeframe="5m", calendar="nyse", max_lag_seconds=600)
                      for name, file in names.items()}
        return Rig(tmp_path, clock, strategies)

    return make  # type: ignore[return-value]


async def test_restart_mid_session_does_not_signal_twice(rig_factory: Callable[..., Rig]) -> None:
    clock = Clock(ny(2024, 12, 3, 10, 0, 3))
    rig = rig_factory(clock, buyer="always_buy")
    runner = await rig.start()  # start acts once on the bar that just closed (9:55-10:00)
    assert runner.status()[0].last_bar_end == ny(2024, 12, 3, 10, 0).astimezone(UTC)
    assert await rig.position() == 1
    assert await runner.run_once("buyer") == []  # the same bar again: nothing
    await rig.stop()

    restarted = rig_factory(clock, buyer="always_buy")
    runner = await restarted.start()  # restart within the same bar: no second signal
    assert await restarted.position() == 1
    # a crash after submitting but before the state was written: the run repeats with the same dedup key
    state = StateStore(restarted.store)
    record = state.get("strategy", "buyer")
    assert record is not None and record["state"] == {"bars": 1}
    state.put("strategy", "buyer", {**record, "last_bar_end": None, "state": {}})
    await restarted.stop()
    again = rig_factory(clock, buyer="always_buy")
    runner = await again.start()
    assert await again.position() == 1
    assert StateStore(again.store).get("strategy", "buyer")["state"] == {"bars": 1}  # type: ignore[index]
    clock.now = ny(2024, 12, 3, 10, 5, 2)
    assert len(await runner.run_once("buyer")) == 1  # the next bar trades
    assert await again.position() == 2
    await again.stop()


async def test_missed_runs_are_coalesced_into_one_on_the_latest_bar(rig_factory: Callable[..., Rig]) -> None:
    clock = Clock(ny(2024, 12, 3, 10, 0, 3))
    rig = rig_factory(clock, buyer="always_buy")
    runner = await rig.start()
    assert await rig.position() == 1
    clock.now = ny(2024, 12, 3, 10, 25, 1)  # asleep for four bar closes
    ids = await runner.run_once("buyer")
    assert len(ids) == 1
    assert await rig.position() == 2
    record = rig.store.get_signal(ids[0])
    assert record is not None and record.status.value == "executed", record
    assert await rig.position() == 2
    record = runner.status()[0]
    assert record.last_bar_end == ny(2024, 12, 3, 10, 25).astimezone(UTC)
    clock.now = ny(2024, 12, 3, 13, 0, 5)  # no data for this bar: no trade, no crash
    assert await runner.run_once("buyer") == []
    await rig.stop()


async def test_failing_strategy_is_disabled_and_reported_others_run(rig_factory: Callable[..., Rig],
                                                                    tmp_path: Path) -> None:
    (tmp_path / "bad_import.py").write_text("import not_a_module_anywhere\n")
    clock = Clock(ny(2024, 12, 3, 10, 0, 3))
    rig = rig_factory(clock, buyer="always_buy", broken="broken", missing="bad_import")
    runner = await rig.start()
    status = {s.name: s for s in runner.status()}
    assert status["buyer"].status == "running"
    assert status["broken"].status == "disabled" and "ZeroDivisionError: boom" in (status["broken"].error or "")
    assert status["missing"].status == "disabled" and "not_a_module_anywhere" in (status["missing"].error or "")
    reported = {e.data.get("strategy"): e for e in rig.published if e.kind == "daemon"}
    assert reported["broken"].data["status"] == "disabled"
    assert "strategy broken disabled" in reported["broken"].summary
    assert "missing" in reported
    assert await rig.position() == 1  # the healthy strategy traded
    clock.now = ny(2024, 12, 3, 10, 5, 2)
    assert await runner.run_once("broken") == []
    assert len(await runner.run_once("buyer")) == 1
    await rig.stop()
    # disabled stays disabled across a restart, until resumed
    again = rig_factory(clock, buyer="always_buy", broken="broken", missing="bad_import")
    runner = await again.start()
    assert {s.name: s.status for s in runner.status()}["broken"] == "disabled"
    (tmp_path / "broken.py").write_text(ALWAYS_BUY)  # the trader fixes the file
    runner.resume("broken", "tester")
    assert {s.name: s.status for s in runner.status()}["broken"] == "running"
    await again.stop()


async def test_pause_and_resume_persist(rig_factory: Callable[..., Rig]) -> None:
    clock = Clock(ny(2024, 12, 3, 10, 0, 3))
    rig = rig_factory(clock, buyer="always_buy")
    runner = await rig.start()
    runner.pause("buyer", "op")
    clock.now = ny(2024, 12, 3, 10, 5, 2)
    assert await runner.run_once("buyer") == []
    with pytest.raises(KeyError):
        runner.pause("nope", "op")
    await rig.stop()
    again = rig_factory(clock, buyer="always_buy")
    runner = await again.start()
    assert runner.status()[0].status == "paused"
    runner.resume("buyer", "op")
    assert len(await runner.run_once("buyer")) == 1
    await again.stop()
