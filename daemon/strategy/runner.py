"""Runs the configured strategies on the scheduler at each bar close, through the engine's risk and broker path.

Each strategy instance (`config.strategies.StrategySettings`) gets one APScheduler job whose trigger fires
`delay_seconds` after every bar close of its timeframe on its calendar (`daemon.strategy.bars.next_bar_close`:
sessions, NYSE holidays and early closes). A run acts on the latest closed bar only: runs missed during a
pause or a sleep are coalesced (APScheduler's `coalesce`, and a run never replays skipped bars), and a bar
that closed more than `max_lag_seconds` ago is marked done without trading. On a shared store a strategy
runs where its account is executed: a daemon that takes an account over (`catch_up`) acts at once on a bar
that closed during the failover, from the last bar end the previous owner stored.

Signals become `Intent`s (source "strategy") whose dedup key is `strategy:NAME:BAR_CLOSE:INDEX`, named and
sized for the account by the webhook's own normaliser (`daemon.intake.for_account`: exchange prefix, symbol
map and ratio, one engine symbol per contract), then handed to `submit` (the engine's `accept`: record
durably, then queue), so a run repeated after a crash or restart is a no-op at the store. What a strategy
remembers (`Strategy.state`), the last bar acted on, the last signal and pause/disable flags are kept in
`StateStore` namespace "strategy" under the instance name, written after every run.

A strategy that cannot be loaded or whose `on_bar` raises is disabled (persisted, until `resume`) and
reported as an `Event` of kind "daemon" with `data={"strategy": NAME, "status": "disabled", "error": ...}`;
the daemon and the other strategies carry on. `status()`, `pause()` and `resume()` serve chat and the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from pydantic import AwareDatetime, BaseModel

from brokers.base import Broker, BrokerError
from config.groups import Leg, SymbolMapping
from config.strategies import StrategySettings
from daemon.domain import Action, Event, Intent, StrategyStatus, utcnow
from daemon.intake import for_account, symbol_for
from daemon.store.state import StateStore
from daemon.strategy.bars import BarDataError, BarSource, CalendarName, last_bar_close, next_bar_close, session_close_at
from strategies.base import Context, Position, Signal, Strategy, StrategyLoadError, load_strategy, parse_params

log = logging.getLogger("traderd.strategies")
NAMESPACE = "strategy"

Submit = Callable[[Intent], tuple[str, bool]]  # record and queue an intent -> (signal id, is new)
Publish = Callable[[Event], None]


def intent_for(signal: Signal, *, strategy: str, account: str, symbol: str, bar_end: datetime, index: int,
               price: Decimal | None, received_at: datetime, expires_at: datetime | None = None) -> Intent:
    """The Intent for the `index`-th signal a strategy returned on the bar closing at `bar_end`."""
    dedup_key = f"strategy:{strategy}:{bar_end.astimezone(UTC).isoformat()}:{index}"
    digest = hashlib.sha256(f"{account}\x00{dedup_key}".encode()).hexdigest()
    quantity: Decimal | None
    tgt: Decimal | None
    if signal.action == "target":
        assert signal.target_position is not None
        action, quantity, tgt = (Action.EXIT, None, None) if signal.target_position == 0 else (
            Action.BUY if signal.target_position > 0 else Action.SELL, None, signal.target_position)
    else:
        action, quantity, tgt = Action(signal.action), signal.quantity, None
    return Intent(
        signal_id=f"st_{digest[:24]}", dedup_key=dedup_key, account=account, source="strategy", action=action,
        symbol=symbol, quantity=quantity, target_position=tgt, order_type=signal.order_type,
        limit_price=signal.limit_price, stop_price=signal.stop_price, price=price,
        take_profit=signal.take_profit, stop_loss=signal.stop_loss, time_in_force=signal.time_in_force,
        strategy=strategy, comment=signal.comment, received_at=received_at, signal_time=bar_end,
        expires_at=expires_at,
    )


def describe(signal: Signal) -> str:
    if signal.action == "target":
        return f"target {signal.target_position}"
    return f"{signal.action} {signal.quantity}" if signal.quantity is not None else signal.action


class BarCloseTrigger(BaseTrigger):
    """Fires `delay` after every bar close of `timeframe` on `calendar`."""

    def __init__(self, calendar: CalendarName, timeframe: str, delay: timedelta = timedelta(0)) -> None:
        self.calendar, self.timeframe, self.delay = calendar, timeframe, delay

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        after = (previous_fire_time or now) - self.delay
        return next_bar_close(self.calendar, self.timeframe, after) + self.delay

    def __str__(self) -> str:
        return f"bar_close[{self.calendar} {self.timeframe} +{self.delay.total_seconds():g}s]"


class StrategyRecord(BaseModel):
    """What is persisted per strategy instance (StateStore namespace "strategy")."""

    last_bar_end: AwareDatetime | None = None
    state: dict[str, Any] = {}
    paused: bool = False
    disabled_reason: str | None = None
    last_signal: str | None = None
    last_signal_at: AwareDatetime | None = None


@dataclass
class _Slot:
    settings: StrategySettings
    record: StrategyRecord
    instance: Strategy | None = None
    signal_ids: list[str] = field(default_factory=list)
    running: asyncio.Lock = field(default_factory=asyncio.Lock)  # one run at a time: the scheduler's or a catch-up


class StrategyRunner:
    """Owns the strategy jobs of one daemon. `start()` after the engine has started, `stop()` before it stops.

    `submit` records and queues an intent (the engine's `accept`), `publish` reports a strategy's status
    changes, `brokers` (by account) give the position a strategy sees."""

    def __init__(self, *, submit: Submit, publish: Publish, brokers: Mapping[str, Broker],
                 scheduler: AsyncIOScheduler, state: StateStore, bars: BarSource,
                 strategies: Mapping[str, StrategySettings], clock: Callable[[], datetime] = utcnow,
                 owns: Callable[[str], bool] | None = None,
                 symbol_maps: Mapping[str, Mapping[str, SymbolMapping]] | None = None) -> None:
        # Several daemons on one store: a strategy runs where its account is executed, from its stored record.
        self.owns = owns
        self.submit = submit
        self.publish = publish
        self.brokers = dict(brokers)
        self.scheduler = scheduler
        self.state = state
        self.bars = bars
        self.clock = clock
        self.symbol_maps = dict(symbol_maps or {})  # by account: what it trades instead of a root or symbol
        self._slots = {name: _Slot(settings, StrategyRecord()) for name, settings in strategies.items()
                       if settings.enabled}
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every strategy, schedule its bar-close job, and act once on a just-closed bar not yet seen."""
        for name, slot in self._slots.items():
            stored = self.state.get(NAMESPACE, name)
            slot.record = StrategyRecord.model_validate(stored) if stored else StrategyRecord()
            if slot.record.disabled_reason is None:
                self._load(name, slot)
            s = slot.settings
            self.scheduler.add_job(self._job(name), BarCloseTrigger(s.calendar, s.timeframe,
                                                                    timedelta(seconds=s.delay_seconds)),
                                   id=f"strategy:{name}", name=f"strategy {name}", replace_existing=True,
                                   misfire_grace_time=int(s.max_lag_seconds), coalesce=True, max_instances=1)
        self._started = True
        for name in self._slots:
            await self.run_once(name)

    async def catch_up(self, account: str) -> None:
        """This daemon has just taken `account` over: act on a bar of its strategies that closed while no daemon
        executed it (the scheduled run then found it not ours), from the record the last owner stored."""
        if not self._started:
            return  # start() acts on the just-closed bars itself
        for name, slot in self._slots.items():
            if slot.settings.account == account:
                await self._job(name)()

    async def stop(self) -> None:
        for name in self._slots:
            job = self.scheduler.get_job(f"strategy:{name}")
            if job is not None:
                job.remove()

    def _job(self, name: str) -> Callable[[], Any]:
        async def run() -> None:
            try:
                await self.run_once(name)
            except Exception:  # the scheduler must keep running whatever a run does
                log.exception("strategy %s run failed", name)

        return run

    def _reload(self, name: str, slot: _Slot) -> None:
        """Take up the record as stored: the account's last owner may have run (or paused) it since."""
        stored = self.state.get(NAMESPACE, name)
        slot.record = StrategyRecord.model_validate(stored) if stored else StrategyRecord()
        if slot.record.disabled_reason is None and slot.instance is None:
            self._load(name, slot)
        if slot.instance is not None:
            slot.instance.state = dict(slot.record.state)

    def _load(self, name: str, slot: _Slot) -> None:
        s = slot.settings
        try:
            cls = load_strategy(s.strategy)
            params = parse_params(cls, s.params)
            context = Context(name=name, symbol=s.symbol, timeframe=s.timeframe, calendar=s.calendar,
                              account=s.account, session_close=lambda ts: session_close_at(s.calendar, ts))
            slot.instance = cls(params, context, slot.record.state)
        except StrategyLoadError as exc:
            self._disable(name, slot, str(exc))
        except Exception as exc:  # a strategy's __init__ is user code too
            self._disable(name, slot, f"starting {s.strategy} failed: {type(exc).__name__}: {exc}")

    def _disable(self, name: str, slot: _Slot, reason: str) -> None:
        slot.instance = None
        slot.record.disabled_reason = reason
        self._save(name, slot)
        log.error("strategy %s disabled: %s", name, reason)
        self.publish(Event(
            kind="daemon", account=slot.settings.account, summary=f"strategy {name} disabled: {reason}",
            data={"strategy": name, "status": "disabled", "error": reason}))

    def _save(self, name: str, slot: _Slot) -> None:
        self.state.put(NAMESPACE, name, slot.record.model_dump(mode="json"))

    # ---- one run ---------------------------------------------------------------------------------

    async def run_once(self, name: str) -> list[str]:
        """Act on the latest closed bar if it is new and fresh; returns the ids of the signals submitted."""
        slot = self._slots[name]
        async with slot.running:
            return await self._run(name, slot)

    async def _run(self, name: str, slot: _Slot) -> list[str]:
        if self.owns is not None:
            if not self.owns(slot.settings.account):
                return []
            self._reload(name, slot)
        s, record = slot.settings, slot.record
        if slot.instance is None or record.paused or record.disabled_reason:
            return []
        now = self.clock()
        bar_end = last_bar_close(s.calendar, s.timeframe, now)
        if record.last_bar_end is not None and bar_end <= record.last_bar_end:
            return []
        if (now - bar_end).total_seconds() > s.max_lag_seconds:
            log.info("strategy %s: bar closing %s is too old to act on; skipped", name, bar_end.isoformat())
            record.last_bar_end = bar_end
            self._save(name, slot)
            return []
        instance = slot.instance
        count = s.history_bars or max(instance.warmup, 1)
        leg = Leg(s.account, symbol_map=self.symbol_maps.get(s.account, {}))
        traded, ratio = symbol_for(s.symbol, leg.symbol_map, now.date())
        try:
            history: Sequence[Any] = await self.bars.bars(s.symbol, s.timeframe, s.calendar, bar_end, count)
            broker = self.brokers[s.account]
            held = next((p for p in await broker.positions() if p.symbol == traded), None)
        except (BarDataError, BrokerError) as exc:
            log.warning("strategy %s: no run for the bar closing %s: %s", name, bar_end.isoformat(), exc)
            return []
        if not history or history[-1].end != bar_end:
            log.warning("strategy %s: no bar closing at %s in the data yet", name, bar_end.isoformat())
            return []
        # the strategy thinks in the units of its own symbol: a mapped account's position is shown divided back
        position = Position(held.quantity / ratio, held.average_price) if held else Position()
        before = dict(instance.state)
        try:
            signals = list(instance.on_bar(history[-1], history, position))
            intents = [intent_for(sig, strategy=name, account=s.account, symbol=s.symbol, bar_end=bar_end,
                                  index=i, price=history[-1].close, received_at=now,
                                  expires_at=bar_end + timedelta(seconds=s.max_lag_seconds))
                       for i, sig in enumerate(signals)]
        except Exception as exc:
            instance.state = before
            self._disable(name, slot, f"on_bar raised {type(exc).__name__}: {exc}")
            return []
        ids = []
        for signal, intent in zip(signals, intents, strict=True):
            one = for_account(intent, leg, now.date(), signal_id=intent.signal_id)  # the webhook's normaliser
            if one.reason is not None:
                log.warning("strategy %s: %s on %s not sent: %s", name, describe(signal), s.account, one.reason)
                continue
            signal_id, is_new = self.submit(one.intent)
            ids.append(signal_id)
            if is_new:
                record.last_signal, record.last_signal_at = describe(signal), bar_end
        record.last_bar_end = bar_end
        record.state = dict(instance.state)
        self._save(name, slot)
        slot.signal_ids = ids
        return ids

    # ---- control ---------------------------------------------------------------------------------

    def _slot(self, name: str) -> _Slot:
        if name not in self._slots:
            raise KeyError(f"unknown strategy {name!r}; strategies: {', '.join(self._slots) or 'none'}")
        return self._slots[name]

    def pause(self, name: str, actor: str) -> None:
        slot = self._slot(name)
        slot.record.paused = True
        self._save(name, slot)
        self.publish(Event(kind="daemon", account=slot.settings.account,
                           summary=f"strategy {name} paused by {actor}",
                           data={"strategy": name, "status": "paused"}))

    def resume(self, name: str, actor: str) -> None:
        """Resume a paused strategy, or retry a disabled one (reloading its code)."""
        slot = self._slot(name)
        slot.record.paused = False
        was_disabled = slot.record.disabled_reason is not None
        slot.record.disabled_reason = None
        if was_disabled or slot.instance is None:
            self._load(name, slot)
        if slot.record.disabled_reason is None:
            self._save(name, slot)
            self.publish(Event(kind="daemon", account=slot.settings.account,
                               summary=f"strategy {name} resumed by {actor}",
                               data={"strategy": name, "status": "running"}))

    def status(self) -> list[StrategyStatus]:
        out = []
        for name, slot in self._slots.items():
            s, r = slot.settings, slot.record
            job = self.scheduler.get_job(f"strategy:{name}") if self.scheduler.running else None
            state: Literal["running", "paused", "disabled"] = (
                "disabled" if r.disabled_reason else "paused" if r.paused else "running")
            out.append(StrategyStatus(
                name=name, strategy=s.strategy, account=s.account, symbol=s.symbol, timeframe=s.timeframe,
                status=state, error=r.disabled_reason, last_bar_end=r.last_bar_end, last_signal=r.last_signal,
                last_signal_at=r.last_signal_at, next_run=getattr(job, "next_run_time", None),
            ))
        return out
