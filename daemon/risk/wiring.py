"""Builds the daemon's risk parts from Settings: the RiskEngine, the funded-rule book, the monitor and its jobs.

Kept here so that `daemon/app.py` needs only three calls:

    self.risk = build_risk_engine(settings, self.store, clock)
    self.risk_monitor = build_monitor(self.risk, self.engine, self.store, self.events, self.brokers, clock)
    schedule_risk_jobs(self._scheduler, self.risk_monitor, settings)      # in start(), after engine.start()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from brokers.base import Broker
from config.settings import Settings
from daemon.calendar import CME_ROLL, DAY_ROLL
from daemon.events import EventBus
from daemon.risk.engine import AccountRisk, RiskEngine
from daemon.risk.funded_book import FundedBook, rules_from_settings
from daemon.risk.monitor import AccountControls, RiskMonitor
from daemon.scheduler import daily_at, every
from daemon.store.repository import Store
from daemon.store.state import StateStore

PDT_FILLS_LIMIT = 10_000  # fills read per check for the 5-business-day window


def build_risk_engine(settings: Settings, store: Store, clock: Callable[[], datetime]) -> RiskEngine:
    """Raises `FundedConfigError` when an account's funded preset or overrides are invalid."""
    accounts = settings.enabled_accounts()
    rules = {name: rules_from_settings(name, acc.funded) for name, acc in accounts.items() if acc.funded}
    book = FundedBook(rules, StateStore(store), clock)
    return RiskEngine(
        {name: AccountRisk(limits=acc.risk, pdt=acc.pdt, cash=acc.cash) for name, acc in accounts.items()},
        clock, funded=book, fills=lambda account, since: store.fills(account, since=since, limit=PDT_FILLS_LIMIT),
    )


def build_monitor(risk: RiskEngine, controls: AccountControls, store: Store, events: EventBus,
                  brokers: Mapping[str, Broker], clock: Callable[[], datetime],
                  owns: Callable[[str], bool] = lambda account: True) -> RiskMonitor:
    """`controls` is what the monitor locks, unlocks and flattens accounts through: the daemon's `Engine`;
    `owns` says which accounts this daemon executes (the monitor watches only those)."""
    monitor = RiskMonitor(book=risk.funded, controls=controls, store=store, events=events, brokers=brokers,
                          clock=clock, owns=owns)
    events.subscribe(monitor.on_event)
    risk.watch_prices(monitor.observe_price)
    return monitor


def schedule_risk_jobs(scheduler: AsyncIOScheduler, monitor: RiskMonitor, settings: Settings) -> None:
    """Live-equity marks (which also trigger the flat-by flatten) and the trading-day roll (17:00 CT for
    futures accounts, midnight in the account's zone for 24x7 ones);
    nothing is scheduled when no account has funded rules. Call after the store is open."""
    accounts = monitor.configured()
    if not accounts:
        return
    monitor.start()
    funded = [acc.funded for name, acc in settings.enabled_accounts().items() if name in accounts and acc.funded]
    interval = min(f.mark_interval_seconds for f in funded)
    every(scheduler, interval, monitor.mark_all, "risk_marks")
    days = monitor.calendars()
    if ("cme", "America/Chicago") in days:
        daily_at(scheduler, CME_ROLL, "America/Chicago", monitor.session_roll, "risk_session_roll_futures")
    for zone in sorted(zone for calendar, zone in days if calendar == "24x7"):
        daily_at(scheduler, DAY_ROLL, zone, partial(monitor.session_roll, "24x7", zone),
                 f"risk_session_roll_24x7_{zone}")
