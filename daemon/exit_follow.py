"""Follows an entry's exits once it fills: relative exits re-priced from the fill, stops moved to break-even.

The planner prices relative exits from the signal's price and the broker places them with the entry (a
native bracket), so a position is never without its stop, not even for a moment. Once the entry has filled,
its legs are moved to the prices the same distances give from the actual fill price; until then (the time
between the fill and the daemon hearing of it: the fill report, at most one poll interval) they rest at the
prices measured from the signal. ProjectX's brackets are tick offsets from the fill already, so there
nothing moves. A ladder's break-even: once its chosen level's take-profit has filled, the stops of the
levels still open move to their entry's fill price plus the offset (never back, away from the market).

What is still to be done is kept durably (namespace `exit_follow` of the state store, one document per
signal), written before the entry is sent, so a restart picks it up: `check(account)` runs after every
signal, after each fill reported outside one, and when the daemon takes the account up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from brokers.base import Broker, BrokerError, OrderRejected
from brokers.symbols import tick_size
from daemon.domain import ZERO, Event, Intent, Order, OrderRequest, OrderStatus, OrderType, Side, utcnow
from daemon.events import EventBus
from daemon.ownership.fence import NotOwner, no_fence
from daemon.planner import Instrument, PlanError, exit_price, offset_distance, round_to_tick
from daemon.shapes import BreakEven, Ladder, PriceOffset
from daemon.store.repository import Store
from daemon.store.state import StateStore

log = logging.getLogger("traderd.engine")
NAMESPACE = "exit_follow"
Level = Decimal | PriceOffset | None


class FollowedLevel(BaseModel):
    """One bracketed entry of a signal (a ladder has one per level) and what is known of it."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: str
    take_profit: Level = None
    stop_loss: Level = None
    entry_order_id: str | None = None
    fill_price: Decimal | None = None
    repriced: bool = False
    ended: bool = False  # never sent, cancelled unfilled, or its bracket is over


class FollowPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str
    symbol: str
    side: Side
    signal_id: str
    quantity: Decimal  # of all its entries together (a stop in position dollars is measured on it)
    levels: list[FollowedLevel]
    break_even: BreakEven | None = None
    break_even_done: bool = False
    created_at: AwareDatetime


def _relative(level: object) -> bool:
    return isinstance(level, PriceOffset)


def follow_plan(intent: Intent, requests: Sequence[OrderRequest], now: datetime) -> FollowPlan | None:
    """What to follow for the bracketed entries of `intent` (None: their exits are final as placed)."""
    bracketed = [r for r in requests if r.take_profit is not None or r.stop_loss is not None]
    ladder = intent.take_profit if isinstance(intent.take_profit, Ladder) else None
    tps: list[Level] = [lv.price for lv in ladder.levels] if ladder else [intent.take_profit] * len(bracketed)  # type: ignore[list-item]
    if not bracketed or not (any(_relative(t) for t in tps) or _relative(intent.stop_loss)
                             or (ladder is not None and ladder.break_even is not None)):
        return None
    levels = [FollowedLevel(client_order_id=r.client_order_id, take_profit=tp, stop_loss=intent.stop_loss)
              for r, tp in zip(bracketed, tps, strict=False)]
    return FollowPlan(account=intent.account, symbol=intent.symbol, side=bracketed[0].side,
                      signal_id=intent.signal_id, levels=levels, created_at=now,
                      quantity=sum((r.quantity for r in bracketed), ZERO),
                      break_even=ladder.break_even if ladder else None)


class ExitFollower:
    """`exclusive(account)` is the account's worker lock: `check` runs between signals, never inside one."""

    def __init__(self, *, store: Store, brokers: Mapping[str, Broker], events: EventBus,
                 exclusive: Callable[[str], asyncio.Lock], fence: Callable[[str], None] = no_fence,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.brokers, self.events, self.exclusive, self.fence = store, brokers, events, exclusive, fence
        self.state = StateStore(store)
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._following: dict[str, set[str]] | None = None  # account -> signal ids with a plan (read once)
        self._pending: set[str] = set()  # accounts with a check queued that has not started yet

    def _ids(self, account: str) -> set[str]:
        if self._following is None:
            self.reload()
        assert self._following is not None
        return self._following.setdefault(account, set())

    def reload(self) -> None:
        """Read which signals have a plan again (on a shared store another daemon may have written them)."""
        self._following = {}
        for signal_id, doc in self.state.all(NAMESPACE).items():
            self._following.setdefault(str(doc.get("account")), set()).add(signal_id)

    def register(self, intent: Intent, requests: Sequence[OrderRequest]) -> None:
        """Keep what to follow of these orders, before they are sent (kept as first written on a resend)."""
        plan = follow_plan(intent, requests, self.clock())
        if plan is not None and self.state.get(NAMESPACE, intent.signal_id) is None:
            self.state.put(NAMESPACE, intent.signal_id, plan.model_dump(mode="json"))
            self._ids(intent.account).add(intent.signal_id)

    def _plans(self, account: str) -> list[FollowPlan]:
        docs = [self.state.get(NAMESPACE, signal_id) for signal_id in sorted(self._ids(account))]
        return [FollowPlan.model_validate(doc) for doc in docs if doc is not None]

    def soon(self, account: str) -> None:
        """Check the account's plans once its worker is free (a fill reported outside any signal, a start)."""
        if not self._ids(account) or account in self._pending:
            return  # a check queued and not started yet will see this report too
        self._pending.add(account)

        async def later() -> None:
            async with self.exclusive(account):
                self._pending.discard(account)
                await self.check(account)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def check(self, account: str) -> None:
        """Do what is due for the account's plans (the caller holds the account's lock)."""
        if not self._ids(account):
            return
        plans = self._plans(account)
        broker = self.brokers[account]
        try:
            open_orders = await broker.open_orders()
            for plan in plans:
                finished = await self._follow(plan, broker, open_orders)
                if finished:
                    self.state.delete(NAMESPACE, plan.signal_id)
                    self._ids(account).discard(plan.signal_id)
                else:
                    self.state.put(NAMESPACE, plan.signal_id, plan.model_dump(mode="json"))
        except NotOwner:
            log.info("%s: no longer this daemon's account; its owner follows the exits", account)
        except BrokerError as exc:
            log.warning("%s: could not follow the exits: %s", account, exc.reason)

    async def _follow(self, plan: FollowPlan, broker: Broker, open_orders: list[Order]) -> bool:
        """One pass over a plan; True when nothing is left to do for it."""
        signal = self.store.get_signal(plan.signal_id)
        final = signal is None or signal.status.is_final
        instrument = Instrument(plan.symbol, tick_size(plan.symbol), broker.multiplier(plan.symbol))
        for level in plan.levels:
            legs = [o for o in open_orders if level.entry_order_id and o.parent_order_id == level.entry_order_id]
            if level.ended or level.repriced:
                level.ended = level.ended or (level.repriced and not legs)
                continue
            entry = await broker.find_order(level.client_order_id)
            if entry is None:
                level.ended = final  # never sent (a refusal, or a crash before it left)
                continue
            level.entry_order_id = entry.broker_order_id
            if entry.status is OrderStatus.FILLED and entry.average_fill_price is not None:
                level.fill_price = entry.average_fill_price
                legs = [o for o in open_orders if o.parent_order_id == entry.broker_order_id]
                await self._reprice(plan, level, legs, broker, instrument)
                level.repriced = True
            elif not entry.status.is_open:
                level.ended = True
        if plan.break_even is not None and not plan.break_even_done:
            trigger = plan.levels[plan.break_even.after - 1]
            outcome = self._take_profit_filled(plan.account, trigger.entry_order_id)
            if outcome is True:
                await self._break_even(plan, plan.break_even, broker, open_orders, instrument)
                plan.break_even_done = True
            elif outcome is False or (trigger.ended and trigger.fill_price is None):
                plan.break_even_done = True  # its stop filled or it never opened: nothing to move to
        return all(lv.ended or lv.repriced for lv in plan.levels) and (
            plan.break_even is None or plan.break_even_done or all(lv.ended for lv in plan.levels))

    def _take_profit_filled(self, account: str, entry_order_id: str | None) -> bool | None:
        """True once the entry's take-profit leg filled, False once its bracket ended otherwise, else None (also
        while the store has not heard how its legs ended: a fill can be reported before its order's status)."""
        if entry_order_id is None:
            return None
        legs = self.store.child_orders(account, entry_order_id)
        if any(o.order_type is OrderType.LIMIT and o.status is OrderStatus.FILLED for o in legs):
            return True
        if any(o.order_type is not OrderType.LIMIT and o.status is OrderStatus.FILLED for o in legs):
            return False
        if legs and not any(o.status.is_open for o in legs):
            return False  # cancelled or expired without a fill
        return None

    async def _reprice(self, plan: FollowPlan, level: FollowedLevel, legs: list[Order], broker: Broker,
                       instrument: Instrument) -> None:
        fill = level.fill_price
        assert fill is not None
        for leg in legs:
            try:
                stop = exit_price(level.stop_loss, side=plan.side, entry=fill, quantity=plan.quantity,
                                  instrument=instrument, profit=False)
                risk = None if stop is None else abs(fill - stop)
                if leg.order_type is OrderType.LIMIT and _relative(level.take_profit):
                    target = exit_price(level.take_profit, side=plan.side, entry=fill, quantity=leg.quantity,
                                        instrument=instrument, profit=True, risk=risk)
                    await self._move(plan, leg, broker, target, f"take-profit priced from the fill {fill:f}")
                elif leg.order_type is OrderType.STOP and _relative(level.stop_loss):
                    await self._move(plan, leg, broker, stop, f"stop-loss priced from the fill {fill:f}")
            except PlanError as exc:
                log.warning("%s: exit %s stays where it is: %s", plan.account, leg.broker_order_id, exc)

    async def _break_even(self, plan: FollowPlan, rule: BreakEven, broker: Broker, open_orders: list[Order],
                          instrument: Instrument) -> None:
        for level in plan.levels:
            if level.fill_price is None or level.entry_order_id is None:
                continue
            offset = ZERO if rule.offset is None else offset_distance(rule.offset, level.fill_price,
                                                                        Decimal(1), instrument)
            target = round_to_tick(level.fill_price + plan.side.sign * offset, instrument.tick_size)
            for leg in open_orders:
                if leg.parent_order_id != level.entry_order_id or leg.order_type is not OrderType.STOP:
                    continue
                current = leg.stop_price
                if current is not None and (current - target) * plan.side.sign >= 0:
                    continue  # already at or past break-even: a stop never moves away from the market
                await self._move(plan, leg, broker, target, f"stop to break-even after take-profit "
                                 f"{rule.after} filled")

    async def _move(self, plan: FollowPlan, leg: Order, broker: Broker, target: Decimal | None, why: str) -> None:
        current = leg.limit_price if leg.order_type is OrderType.LIMIT else leg.stop_price
        if target is None or current == target:
            return
        self.fence(plan.account)
        price = {"limit_price": target} if leg.order_type is OrderType.LIMIT else {"stop_price": target}
        try:
            result = await broker.modify_order(leg.broker_order_id, **price)
        except OrderRejected as exc:
            summary = f"{plan.symbol} exit {leg.order_type.value} stays at {current}: the broker refused " \
                      f"{target:f} ({exc.reason})"
            log.warning("%s: %s", plan.account, summary)
            self.events.publish(Event(kind="order", account=plan.account, summary=summary))
            return
        self.store.upsert_order(result)
        summary = f"{plan.symbol} exit {leg.order_type.value} {leg.side.value} moved {current} -> {target:f}: {why}"
        log.info("%s: %s", plan.account, summary)
        self.events.publish(Event(kind="order", account=plan.account, summary=summary,
                                  data={"signal_id": plan.signal_id, "order": result.model_dump(mode="json")}))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

