"""Executes one signal to its end: the order it needs, the risk check, the broker, and the outcome in the store.

The client order id derives from the signal's dedup key, so a signal resumed after a crash or restart looks its
order up at the broker before deciding anything, and never places it twice. Broker reports that arrive while
a signal executes are written together with its outcome, in one transaction (one commit per signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import Broker, BrokerError, BrokerReport, DeadlinePassed, OrderRejected, UnknownSymbol
from brokers.symbols import tick_size
from daemon.cancelling import cancel_open
from daemon.domain import (
    Action,
    Event,
    Fill,
    FlattenReport,
    Intent,
    Order,
    OrderRequest,
    OrderStatus,
    SignalStatus,
    client_order_id,
)
from daemon.entry_hooks import EntryShapes, needs_shapes
from daemon.events import EventBus, fill_event
from daemon.exit_follow import ExitFollower
from daemon.exit_guard import ExitGuard
from daemon.ladder import plan
from daemon.managed_exits import trailing
from daemon.managed_exits.runner import ManagedExits
from daemon.metrics import Metrics
from daemon.ownership.fence import NotOwner, no_fence
from daemon.planner import EXIT_LEG, Instrument, PlanError, after_exit_leg
from daemon.risk.context import OrderContext
from daemon.risk.engine import AccountView, RiskEngine
from daemon.shapes import QuantityType
from daemon.store.commits import OUTCOME_WAIT_SECONDS, written
from daemon.store.repository import Store
from daemon.store.retry import Backoff, describe, is_transient, until_written

log = logging.getLogger("traderd.engine")


@dataclass(frozen=True)
class Outcome:
    """How a signal ended; `result` carries a FlattenReport or the cancelled orders where relevant."""

    signal_id: str
    status: SignalStatus
    reason: str | None = None
    order: Order | None = None
    result: Any = None


class Executor:
    """`paused` and `locked` are the engine's own control sets, read when each risk check is built."""

    def __init__(
        self,
        *,
        store: Store,
        brokers: Mapping[str, Broker],
        risk: RiskEngine,
        events: EventBus,
        metrics: Metrics,
        clock: Callable[[], datetime],
        paused: Set[str],
        locked: Set[str],
        exclusive: Callable[[str], asyncio.Lock],
        fence: Callable[[str], None] = no_fence,
        shapes: EntryShapes | None = None,
        others_busy: Callable[[str], bool] = lambda account: False,
    ) -> None:
        self.fence = fence  # raises NotOwner unless this process can prove it owns the account right now
        self.shapes = shapes  # ATR exits and time exits (none: such entries are refused by the planner)
        self.others_busy = others_busy  # whether other accounts have signals queued or running
        self.store = store
        self.brokers = brokers
        self.risk = risk
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.paused = paused
        self.locked = locked
        self.managed = ManagedExits(store=store, brokers=brokers, events=events, exclusive=exclusive, fence=fence)
        self.exits = ExitGuard(store=store, brokers=brokers, events=events, exclusive=exclusive, fence=fence,
                               managed=self.managed.stop_ids)
        self.follow = ExitFollower(store=store, brokers=brokers, events=events, exclusive=exclusive, fence=fence,
                                   clock=clock)
        self._deferred: dict[str, list[BrokerReport]] = {}
        self._flushes: dict[str, asyncio.Task[None]] = {}  # reports written once the store is back
        self._check_exits: dict[str, set[str]] = {}  # per account: symbols whose position a signal shrank
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}

    async def run(self, intent: Intent, recovered: bool) -> None:
        """Execute on the account's worker: the broker's reports meanwhile wait for the signal's outcome.

        When the store refuses a write (disk full, I/O error, locked), the signal is executed again once it
        takes writes, as after a restart: its order is looked up at the broker first, so it is neither lost
        nor placed twice, and the signals queued behind it wait their turn.
        """
        self._deferred.setdefault(intent.account, [])  # reports the store has not taken yet stay first
        backoff = Backoff()
        while True:
            try:
                try:
                    await self.execute(intent, recovered)
                except NotOwner:
                    raise  # nothing was finished: the signal stays unfinished for the account's owner
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.exception("signal %s failed unexpectedly", intent.signal_id)  # a bug: keep the worker
                    await self._finish(intent, SignalStatus.FAILED, f"internal error: {type(exc).__name__}")
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = backoff.next_delay()
                log.warning("the store refused a write for signal %s (%s); executing it again in %.2f s",
                            intent.signal_id, describe(exc), delay)
                await asyncio.sleep(delay)
                recovered = True
        # Reports of a signal that ended without _finish, or that came in while the store was away.
        await until_written(lambda: self._flush_deferred(intent.account), "the broker's reports")
        for symbol in sorted(self._check_exits.pop(intent.account, ())):
            await self.exits.protect(intent.account, symbol)
        await self.follow.check(intent.account)

    async def wait_for(self, signal_id: str, within: float) -> Outcome:
        """Wait until a queued signal is finished (used by control actions that report their result)."""
        known = self.store.signal_outcome(signal_id)
        if known is not None and known[0].is_final:
            return Outcome(signal_id, *known)
        return await asyncio.wait_for(asyncio.shield(self.outcome_future(signal_id)), within)

    def outcome_future(self, signal_id: str) -> asyncio.Future[Outcome]:
        """Resolved when this process finishes the signal (the caller knows it has not finished yet)."""
        return self._waiters.setdefault(signal_id, asyncio.get_running_loop().create_future())

    async def execute(self, intent: Intent, recovered: bool = False) -> Outcome:
        broker = self.brokers[intent.account]
        now = self.clock()
        sent: Order | None = None  # the exit half of a flip, sent before a restart
        if recovered and intent.action is not Action.FLATTEN:
            # Accepted before the last stop: its order may have left before the crash. Find it first.
            coid = client_order_id(intent.account, intent.dedup_key)
            try:
                found = await broker.find_order(coid)
                if found is None and intent.action is not Action.CANCEL:
                    sent = await broker.find_order(client_order_id(intent.account, intent.dedup_key, EXIT_LEG))
            except BrokerError as exc:
                return await self._finish(intent, SignalStatus.FAILED, f"could not look up order {coid}: {exc.reason}")
            if found is not None:
                return await self._finish(intent, SignalStatus.EXECUTED, "order found at the broker after restart",
                                          order=found)
        if intent.expires_at is not None and now > intent.expires_at:
            return await self._finish(intent, SignalStatus.EXPIRED,
                                      f"not executed before it expired at {intent.expires_at.isoformat()}")
        placed: list[Order] = [] if sent is None else [sent]
        try:
            if intent.price is not None and intent.symbol:
                await broker.observe_price(intent.symbol, intent.price, now)
                # A price that breaches a loss floor acts now, before this alert's own order is checked.
                self.risk.observe_price(intent.account, intent.symbol, intent.price, now)
                await self.managed.mark(intent.account, intent.symbol, intent.price)  # stops trail first
            if intent.action is Action.FLATTEN:
                return await self._flatten(intent, broker)
            if intent.action is Action.CANCEL:
                cancelled = await self._cancel_open(intent, broker)
                return await self._finish(intent, SignalStatus.EXECUTED, f"cancelled {len(cancelled)} orders",
                                          result=cancelled)
            positions = {p.symbol: p for p in await broker.positions()}
            quantities = {s: p.quantity for s, p in positions.items()}
            market = positions[intent.symbol].market_price if intent.symbol in positions else None
            needs_equity = intent.quantity_type in (QuantityType.PERCENT_OF_EQUITY, QuantityType.RISK_PERCENT)
            account = await broker.account_state() if needs_equity and intent.target_position is None else None
            held, instrument = quantities.get(intent.symbol, Decimal(0)), self._instrument(broker, intent.symbol)
            try:
                shaped = await self.shapes.measure(intent, instrument, now) if self.shapes is not None and \
                    needs_shapes(intent) else intent
            except PlanError as exc:
                return await self._finish(intent, SignalStatus.REJECTED, str(exc))
            if sent is None:
                todo = plan(shaped, position=held, account=account, instrument=instrument, market_price=market)
            else:
                todo = after_exit_leg(shaped, sent, position=held, account=account, instrument=instrument,
                                      market_price=market, plan=plan)
            todo = trailing.shape(todo, intent, instrument, market)
            if todo.refusal is not None:
                return await self._finish(intent, SignalStatus.REJECTED, todo.refusal)
            if not todo.orders:
                return await self._finish(intent, SignalStatus.EXECUTED, todo.note, order=sent)
            refused = self._check_risk(intent, broker, todo.orders, quantities, market,
                                       await self.risk.prepare(intent.account, broker, now), now)
            if refused is not None:
                return await self._finish(intent, SignalStatus.REJECTED, refused)
            if todo.cancel_first:
                # Only once the exit is allowed: stale brackets must not reopen a closed position, and a
                # refused exit must not leave the position without its stop-loss.
                await self._cancel_open(intent, broker)
            if any(r.reduce_only for r in todo.orders):
                self._check_exits.setdefault(intent.account, set()).add(intent.symbol)
            if self.shapes is not None and intent.time_exit is not None and not todo.orders[-1].reduce_only:
                self.shapes.arm(intent, todo.orders[-1], now)  # durable before the entry leaves
            self.follow.register(intent, todo.orders)  # before sending: a restart must find it
            for request in todo.orders:
                if request.expires_at is not None and self.clock() > request.expires_at:
                    raise DeadlinePassed(f"order {request.client_order_id} not sent: the signal expired at "
                                         f"{request.expires_at.isoformat(timespec='seconds')}")
                outgoing, managed = trailing.for_broker(request, broker.native_trailing)
                placed.append(await self._place(broker, outgoing))
                self._order_placed(intent, placed[-1], now)
                rule = trailing.managed_rule(intent, outgoing, request.trail, placed[-1], instrument, market)
                if managed and rule is not None:
                    self.managed.add(rule)  # the daemon trails this stop: saved before the signal ends
        except UnknownSymbol as exc:
            return await self._finish(intent, SignalStatus.FAILED, f"order rejected: unknown symbol {intent.symbol} "
                                      f"({exc.reason})", order=placed[-1] if placed else None)
        except OrderRejected as exc:
            return await self._finish(intent, SignalStatus.FAILED, f"broker rejected the order: {exc.reason}",
                                      order=placed[-1] if placed else None)
        except DeadlinePassed as exc:
            done = f" after sending {placed[-1].client_order_id}" if placed else "; nothing was sent"
            return await self._finish(intent, SignalStatus.EXPIRED, f"{exc.reason}{done}",
                                      order=placed[-1] if placed else None)
        except BrokerError as exc:
            self.events.publish(Event(kind="broker", account=intent.account,
                                      summary=f"broker problem: {exc.reason}"))
            return await self._finish(intent, SignalStatus.FAILED, f"broker unavailable: {exc.reason}",
                                      order=placed[-1] if placed else None)
        for order in placed[:-1]:  # the exit half of a flip; the entry is stored with the outcome
            self.store.upsert_order(order, intent.signal_id)
        return await self._finish(intent, SignalStatus.EXECUTED, None, order=placed[-1])

    def _check_risk(self, intent: Intent, broker: Broker, requests: list[OrderRequest],
                    quantities: Mapping[str, Decimal], market: Decimal | None, view: AccountView,
                    now: datetime) -> str | None:
        """Check every planned order, each against the position the ones before it leave; None if all pass."""
        price = intent.limit_price or intent.stop_price or intent.price or market
        positions = dict(quantities)
        violations = []
        for request in requests:
            ctx = OrderContext(
                request=request, signal_id=intent.signal_id, positions=dict(positions), price=price,
                multiplier=broker.multiplier(intent.symbol), paused=intent.account in self.paused,
                locked=intent.account in self.locked, now=now, account_state=view.state, recent_fills=view.fills,
            )
            result = self.risk.check(ctx)
            # Warnings let the order go and tell the trader (data.warning = true); violations refuse it.
            for violation, warning in [(w, True) for w in result.warnings] + [(v, False) for v in result.violations]:
                self.store.record_violation(violation)
                if not warning:
                    self.metrics.rejections.labels(intent.account, violation.rule).inc()
                self.events.publish(Event(kind="violation", account=intent.account, summary=violation.detail,
                                          data={**violation.model_dump(mode="json"), "warning": warning}))
            violations.extend(result.violations)
            positions[request.symbol] = ctx.after
        return "; ".join(v.detail for v in violations) if violations else None

    def _order_placed(self, intent: Intent, order: Order, now: datetime) -> None:
        self.risk.record_order(intent.account, now)
        self.metrics.orders.labels(intent.account, order.status.value).inc()
        self.metrics.signal_to_order.observe((self.clock() - intent.received_at).total_seconds())
        self.events.publish(Event(
            kind="order", account=intent.account,
            summary=f"{order.side.value} {order.quantity.normalize():f} {order.symbol} {order.order_type.value}"
                    f" -> {order.status.value}",
            data={"signal_id": intent.signal_id, "order": order.model_dump(mode="json")},
        ))

    # ---- placement -------------------------------------------------------------------------------

    @staticmethod
    def _instrument(broker: Broker, symbol: str) -> Instrument:
        return Instrument(symbol=symbol, tick_size=tick_size(symbol), point_value=broker.multiplier(symbol),
                          quantity_step=broker.quantity_step(symbol))

    async def _place(self, broker: Broker, request: OrderRequest) -> Order:
        """Send one order. Retries live in the adapter (`brokers.http.place_once`), bounded by the request's
        `expires_at`; a lost answer is looked up there before anything is resent."""
        self.fence(request.account)  # ownership is proven right before every send
        return await broker.place_order(request)

    async def _cancel_open(self, intent: Intent, broker: Broker) -> list[Order]:
        return await cancel_open(broker, intent.account, intent.symbol, store=self.store, fence=self.fence)

    async def _flatten(self, intent: Intent, broker: Broker) -> Outcome:
        self.fence(intent.account)
        report: FlattenReport = await broker.flatten()
        for order in (*report.cancelled, *report.closing):
            self.store.upsert_order(order, intent.signal_id)
        closed = ", ".join(f"{o.symbol} {o.side.value} {o.quantity.normalize():f}"
                           + (f" @ {o.average_fill_price.normalize():f}" if o.average_fill_price else "")
                           for o in report.closing) or "no positions"
        summary = f"flattened: {len(report.cancelled)} orders cancelled; closed {closed}"
        if report.errors:
            summary += "; errors: " + "; ".join(report.errors)
        self.events.publish(Event(kind="flatten", account=intent.account, summary=summary,
                                  data={"signal_id": intent.signal_id, "report": report.model_dump(mode="json"),
                                        "requested": intent.comment}))
        status = SignalStatus.FAILED if report.errors else SignalStatus.EXECUTED
        return await self._finish(intent, status, summary, result=report)

    async def _finish(self, intent: Intent, status: SignalStatus, reason: str | None, *, order: Order | None = None,
                      result: Any = None) -> Outcome:
        waiting = self._deferred.get(intent.account)
        reports = list(waiting or ())
        broker = self.brokers[intent.account]
        fills = [(r.fill, broker.multiplier(r.fill.symbol)) for r in reports if r.fill is not None]
        # Fills of other orders (a take-profit, a manual close) may have shrunk a position under its exits.
        own = {client_order_id(intent.account, intent.dedup_key, leg) for leg in ("", EXIT_LEG)}
        self._check_exits.setdefault(intent.account, set()).update(
            f.symbol for f, _ in fills if f.client_order_id not in own)
        written_orders = [r.order for r in reports if r.order is not None]
        if self.others_busy(intent.account):
            # On the commit thread, beside the other accounts' outcomes: the loop runs their signals meanwhile.
            realized = await written(self.store.submit_finish(
                intent.signal_id, status, reason, order, reports=written_orders, fills=fills), OUTCOME_WAIT_SECONDS)
        else:  # alone, the hand-over to the commit thread and back would cost more than the write itself
            realized = self.store.finish_signal(intent.signal_id, status, reason, order, reports=written_orders,
                                                fills=fills)
        if waiting is not None:  # only once written: a refused write keeps them for the retry
            del waiting[:len(reports)]
            if not waiting and self._deferred.get(intent.account) is waiting:
                del self._deferred[intent.account]  # reports that came in during the write stay queued
        for (fill, _), pnl in zip(fills, realized, strict=True):
            if pnl is not None:
                self._fill_recorded(fill, pnl)
        self.metrics.signals.labels(intent.account, status.value).inc()
        if status in (SignalStatus.REJECTED, SignalStatus.FAILED, SignalStatus.EXPIRED):
            self.events.publish(Event(kind=f"signal_{status.value}", account=intent.account,
                                      summary=f"{intent.action.value} {intent.symbol}: {reason}",
                                      data={"signal_id": intent.signal_id}))
        outcome = Outcome(intent.signal_id, status, reason, order, result)
        future = self._waiters.pop(intent.signal_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)
        return outcome

    # ---- broker reports --------------------------------------------------------------------------

    def report_handler(self, account: str) -> Callable[[BrokerReport], Any]:
        async def handle(report: BrokerReport) -> None:
            deferred = self._deferred.get(account)
            if deferred is not None:
                deferred.append(report)
                return
            try:
                self._record_report(account, report)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Kept in order: later reports queue behind this one until the store takes them.
                self._deferred[account] = [report]
                self._flushes[account] = asyncio.create_task(
                    until_written(lambda: self._flush_deferred(account), f"the broker's reports for {account}"))

        return handle

    def _flush_deferred(self, account: str) -> None:
        """Write the waiting reports one by one, each removed once written (a retry resumes where it stopped)."""
        reports = self._deferred.get(account) or []
        while reports:
            self._record_report(account, reports[0])
            reports.pop(0)
        self._deferred.pop(account, None)

    def _record_report(self, account: str, report: BrokerReport) -> None:
        if report.order is not None:
            self.store.upsert_order(report.order)
            if report.order.status is OrderStatus.FILLED:  # a take-profit level may move a stop
                self.follow.soon(account)
            return
        fill = report.fill
        assert fill is not None
        realized = self.store.record_fill(fill, self.brokers[account].multiplier(fill.symbol))
        if realized is not None:  # None: already recorded (a replayed report, or reconciliation got there first)
            self._fill_recorded(fill, realized)
            self.exits.soon(account, fill.symbol)
            self.follow.soon(account)

    def _fill_recorded(self, fill: Fill, realized: Decimal) -> None:
        self.metrics.fills.labels(fill.account).inc()
        self.events.publish(fill_event(fill, realized))
