"""Carries out the managed exit rules at the broker: moves each rule's stop on price marks, durably.

Marks come from the prices signals carry (the executor calls `mark` inside the account's worker) and from
a periodic read of each account's positions (`poll`, which takes the account's worker lock first), so a
stop is moved between signals, never while one executes. Every move is proven by the account's fence
before it is sent and saved to the store after it, so a restart resumes from the stop the broker holds.
A rule ends when its stop is no longer working (filled, cancelled, or shrunk away with its position); a stop
replaced by other means (shrunk by a replace that gives it a new id) is followed to its successor.
The active rules are also kept in memory (read from the store once per account, and again at each poll, when
another daemon may have handed the account over), so a signal or a fill without rules costs no disk read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from decimal import Decimal

from brokers.base import Broker, BrokerError
from daemon.domain import Event, Order, OrderType, utcnow
from daemon.events import EventBus
from daemon.managed_exits.rules import ExitRule, on_mark
from daemon.ownership.fence import NotOwner, no_fence
from daemon.store.exit_rules import ACTIVE, DONE
from daemon.store.repository import Store

log = logging.getLogger("traderd.engine")


class ManagedExits:
    """`exclusive(account)` is the account's worker lock; `fence(account)` raises NotOwner unless owned."""

    def __init__(self, *, store: Store, brokers: Mapping[str, Broker], events: EventBus,
                 exclusive: Callable[[str], asyncio.Lock], fence: Callable[[str], None] = no_fence) -> None:
        self.store = store
        self.brokers = brokers
        self.events = events
        self.exclusive = exclusive
        self.fence = fence
        self._active: dict[str, dict[str, ExitRule]] = {}  # account -> rule id -> active rule

    def load(self, account: str) -> None:
        """Read the account's active rules afresh: when this process starts executing it (its last owner
        may have left rules), and before its first signal needs them."""
        self._reload(account)

    def rules(self, account: str, symbol: str | None = None) -> list[ExitRule]:
        if account not in self._active:
            self._reload(account)
        return [r for r in self._active[account].values() if symbol is None or r.symbol == symbol]

    def _reload(self, account: str) -> None:
        rules = [ExitRule.model_validate_json(doc) for doc in self.store.active_exit_rules(account)]
        self._active[account] = {r.id: r for r in rules}

    def add(self, rule: ExitRule) -> None:
        self._save(rule, ACTIVE)
        log.info("%s: %s %s managed by the daemon from %s (stop %s)", rule.account, rule.symbol, rule.kind,
                 rule.best.normalize(), rule.stop_price.normalize())

    def stop_ids(self, account: str) -> set[str]:
        """Broker ids of the stops the daemon moves for `account` (the exit guard counts them as exits)."""
        return {r.stop_order_id for r in self.rules(account) if r.stop_order_id is not None}

    async def poll(self, accounts: list[str]) -> None:
        """Mark every symbol with a rule at its broker's current price, one account at a time."""
        for account in accounts:
            self._reload(account)
            if not self._active[account]:
                continue
            async with self.exclusive(account):
                try:
                    prices = {p.symbol: p.market_price for p in await self.brokers[account].positions()}
                except BrokerError as exc:
                    log.warning("%s: no marks for its managed exits: %s", account, exc.reason)
                    continue
                for symbol in sorted({r.symbol for r in self.rules(account)}):
                    await self.mark(account, symbol, prices.get(symbol))

    async def mark(self, account: str, symbol: str, price: Decimal | None) -> None:
        """Apply a mark to `symbol`'s rules (the caller holds the account's worker lock). With no price (the
        position is gone) the rules only check whether their stop is still working."""
        rules = self.rules(account, symbol)
        if not rules:
            return
        broker = self.brokers[account]
        try:
            working = {o.broker_order_id: o for o in await broker.open_orders()}
            for rule in rules:
                await self._apply(broker, rule, working, price)
        except NotOwner:
            log.info("%s %s: no longer this daemon's account; its owner moves the stops", account, symbol)
        except BrokerError as exc:
            log.warning("%s: could not move the managed stops of %s: %s", account, symbol, exc.reason)

    async def _apply(self, broker: Broker, rule: ExitRule, working: Mapping[str, Order],
                     price: Decimal | None) -> None:
        if rule.waiting:
            leg = _stop_leg(working, rule.entry_order_id)
            if leg is None:
                if rule.entry_order_id not in working:  # the entry is done and its stop is not working
                    self._end(rule, "its bracket stop is not working")
                return
            rule = rule.model_copy(update={"stop_order_id": leg.broker_order_id,
                                           "stop_price": leg.stop_price or rule.stop_price})
            self._save(rule, ACTIVE)
        stop = working.get(rule.stop_order_id or "") or _successor(rule, working)
        if stop is None:
            self._end(rule, "its stop is no longer working")
            return
        if stop.broker_order_id != rule.stop_order_id:  # replaced by other means (shrunk with its position)
            rule = rule.model_copy(update={"stop_order_id": stop.broker_order_id})
            self._save(rule, ACTIVE)
        if price is None:
            return
        moved = on_mark(rule, price)
        if moved is rule:
            return
        if moved.stop_price != rule.stop_price:
            self.fence(rule.account)
            result = await broker.modify_order(stop.broker_order_id, stop_price=moved.stop_price)
            self.store.upsert_order(result)
            moved = moved.model_copy(update={"stop_order_id": result.broker_order_id})  # a replace gives a new id
            summary = (f"{rule.symbol} trailing stop {rule.exit_side.value} moved {rule.stop_price.normalize():f}"
                       f" -> {moved.stop_price.normalize():f} (best {price.normalize():f})")
            log.info("%s: %s", rule.account, summary)
            self.events.publish(Event(kind="order", account=rule.account, summary=summary,
                                      data={"order": result.model_dump(mode="json"), "managed_exit": rule.id}))
        self._save(moved, ACTIVE)

    def _end(self, rule: ExitRule, why: str) -> None:
        log.info("%s: %s %s ended: %s", rule.account, rule.symbol, rule.kind, why)
        self._save(rule.model_copy(update={"updated_at": utcnow()}), DONE)

    def _save(self, rule: ExitRule, status: str) -> None:
        self.store.save_exit_rule(rule.id, account=rule.account, symbol=rule.symbol, kind=rule.kind,
                                  status=status, rule_json=rule.model_dump_json())
        if rule.account not in self._active:
            self._reload(rule.account)  # the store has the rule as just saved
            return
        active = self._active[rule.account]
        if status == ACTIVE:
            active[rule.id] = rule
        else:
            active.pop(rule.id, None)


def _successor(rule: ExitRule, working: Mapping[str, Order]) -> Order | None:
    """The working order that took the place of the rule's stop (a broker whose modify is a replace gives it a
    new id): the entry's stop leg, or the stop order that carries the rule's own client order id."""
    if rule.entry_order_id is not None:
        return _stop_leg(working, rule.entry_order_id)
    return next((o for o in working.values() if o.client_order_id == rule.id and o.symbol == rule.symbol
                 and o.order_type is OrderType.STOP), None)


def _stop_leg(working: Mapping[str, Order], entry_order_id: str | None) -> Order | None:
    return next((o for o in working.values() if o.parent_order_id == entry_order_id
                 and o.order_type is OrderType.STOP), None)
