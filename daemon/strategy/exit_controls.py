"""Exits set by hand on a held position: `/stop SYMBOL atr K` moves its resting stop, `/exit-after SYMBOL 30m`
arms a time exit; and the job that fires due time exits.

Both act between two signals (the account's worker lock) on what the broker reports. `/stop` only moves a
stop that already protects the position (a bracket's stop leg, found by `daemon.planner.resting_exits`): it
never places a free-standing stop, which nothing would cancel when the position closes another way and which
could then open one. The new stop is K x ATR (`daemon.strategy.exit_shapes`) from the position's average
price, rounded to the tick. `/exit-after` arms a durable time exit (`daemon.store.time_exits`) for the whole
position, on its side, fired like an entry's by `daemon.strategy.time_exits`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal

from brokers.base import Broker
from brokers.symbols import tick_size
from config.settings import Settings
from daemon.domain import ZERO, Event, OrderType, Side
from daemon.engine import Engine
from daemon.events import EventBus
from daemon.planner import PlanError, resting_exits, round_to_tick
from daemon.shapes import AtrOffset, TimeExit
from daemon.store.repository import Store
from daemon.strategy.exit_shapes import due_at, entry_exits
from daemon.strategy.time_exits import TimeExitRunner

_STOPS = (OrderType.STOP, OrderType.STOP_LIMIT)


class ExitRefused(ValueError):
    """The exit cannot be set; the message says why (shown in chat)."""


class ExitControls:
    """`fence(account)` raises NotOwner unless this daemon owns the account; `owns` limits the timer to them."""

    def __init__(self, *, settings: Settings, store: Store, brokers: Mapping[str, Broker], engine: Engine,
                 events: EventBus, clock: Callable[[], datetime], fence: Callable[[str], None],
                 owns: Callable[[str], bool]) -> None:
        self.shapes = entry_exits(settings, store, brokers)
        self.store = store
        self.brokers = brokers
        self.engine = engine
        self.events = events
        self.clock = clock
        self.fence = fence
        self.timer = TimeExitRunner(store=store, accept=engine.accept, publish=events.publish, clock=clock,
                                    owns=owns)

    async def tick(self) -> None:
        """The scheduler's job: fire the due time exits."""
        self.timer.run_due()

    async def _held(self, account: str, symbol: str) -> tuple[Broker, Decimal]:
        broker = self.brokers.get(account)
        if broker is None:
            raise ExitRefused(f"unknown account {account!r}")
        held = sum((p.quantity for p in await broker.positions() if p.symbol == symbol), ZERO)
        if held == ZERO:
            raise ExitRefused(f"no {symbol} position on {account}")
        return broker, held

    async def set_stop(self, account: str, symbol: str, offset: AtrOffset, actor: str) -> str:
        """Move the position's resting stop(s) to `offset` from its average price; what was done, in words."""
        async with self.engine.exclusive(account):
            broker, held = await self._held(account, symbol)
            closing = Side.SELL if held > 0 else Side.BUY
            stops = [o for o in resting_exits(await broker.open_orders(), symbol)
                     if o.order_type in _STOPS and o.side is closing]
            if not stops:
                raise ExitRefused(f"{symbol} on {account} has no resting stop to move: send the entry with a "
                                  "stop_loss (a free-standing stop could outlive the position)")
            average = next(p.average_price for p in await broker.positions() if p.symbol == symbol)
            tick = tick_size(symbol)
            try:
                distance = await self.shapes.distance(account, symbol, offset, tick, self.clock())
            except PlanError as exc:
                raise ExitRefused(str(exc).replace("; nothing was sent", "; the stop was not moved")) from None
            price = round_to_tick(average - (1 if held > 0 else -1) * distance, tick)
            if price <= ZERO:
                raise ExitRefused(f"{offset.atr.normalize():f} ATR below {average.normalize():f} is not above zero")
            for stop in stops:
                self.fence(account)
                moved = await broker.modify_order(stop.broker_order_id, stop_price=price)
                self.store.upsert_order(moved)
            summary = (f"{symbol} stop moved to {price.normalize():f} ({offset.atr.normalize():f} x ATR "
                       f"{offset.period} {offset.timeframe} = {distance.normalize():f} from {average.normalize():f})")
            self.store.audit(actor, "stop", account, summary)
            self.events.publish(Event(kind="order", account=account, summary=summary))
            return summary

    async def exit_after(self, account: str, symbol: str, spec: TimeExit, actor: str) -> str:
        """Arm a time exit for the whole position; what was armed, in words."""
        async with self.engine.exclusive(account):
            _, held = await self._held(account, symbol)
            now = self.clock()
            due = due_at(spec, self.shapes.calendar(account), now)
            self.store.arm_time_exit(entry_signal_id=f"chat_{secrets.token_hex(8)}", account=account,
                                     symbol=symbol, side=Side.BUY if held > 0 else Side.SELL, quantity=abs(held),
                                     spec=spec.describe(), due_at=due, now=now, origin="chat")
        summary = (f"{symbol} {abs(held).normalize():f} on {account} closes {spec.describe()}, at "
                   f"{due:%Y-%m-%d %H:%M} UTC")
        self.store.audit(actor, "exit_after", account, summary)
        return summary
