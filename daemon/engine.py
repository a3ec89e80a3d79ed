"""Intent -> risk -> broker -> store -> events, with one ordered worker per account.

Every intent reaching `submit` is already durable in the store. A worker takes its account's intents in
arrival order, so risk checks see the position each earlier order left behind and can never race. The
client order id is derived from the signal's dedup key, so after a crash or restart the worker looks each
unfinished signal's order up at the broker before deciding anything, and never places it twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import Broker, BrokerError, BrokerReport, BrokerUnavailable, OrderRejected
from daemon.domain import (
    Action,
    Event,
    Fill,
    FlattenReport,
    Intent,
    Order,
    OrderRequest,
    Side,
    SignalStatus,
    client_order_id,
    utcnow,
)
from daemon.events import EventBus, fill_event
from daemon.metrics import Metrics
from daemon.risk.limits import OrderContext, RiskEngine
from daemon.store.repository import Store

log = logging.getLogger("traderd.engine")


@dataclass(frozen=True)
class Outcome:
    """How a signal ended; `result` carries a FlattenReport or the cancelled orders where relevant."""

    signal_id: str
    status: SignalStatus
    reason: str | None = None
    order: Order | None = None
    result: Any = None


def multiplier_of(broker: Broker, symbol: str) -> Decimal:
    return broker.multiplier(symbol)


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        brokers: Mapping[str, Broker],
        risk: RiskEngine,
        events: EventBus,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
        place_attempts: int = 3,
        retry_delay: float = 0.25,
        stall_seconds: float = 30.0,
    ) -> None:
        self.store = store
        self.brokers = dict(brokers)
        self.risk = risk
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.place_attempts = place_attempts
        self.retry_delay = retry_delay
        self.stall_seconds = stall_seconds
        self._queues: dict[str, asyncio.Queue[tuple[Intent, bool] | None]] = {}  # (intent, recovered)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._busy_since: dict[str, float | None] = {}
        # Broker reports that arrive while an account's worker executes a signal are written together
        # with the signal's outcome, in one transaction (see _finish).
        self._deferred: dict[str, list[BrokerReport]] = {}
        # Held by the worker while it executes a signal; reconciliation takes it so that it never compares
        # the store with the broker while a signal's reports are still on their way to the store.
        self._locks: dict[str, asyncio.Lock] = {account: asyncio.Lock() for account in self.brokers}
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}
        self.paused: set[str] = set()
        self.locked: set[str] = set()
        self.running = False

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load controls, queue unfinished signals in arrival order, start one worker per account."""
        for name, control in self.store.controls().items():
            if control.paused:
                self.paused.add(name)
            if control.locked:
                self.locked.add(name)
        for account, broker in self.brokers.items():
            broker.set_report_handler(self._report_handler(account))
            self._queues[account] = asyncio.Queue()
            self._busy_since[account] = None
        recovered = 0
        for intent, _status in self.store.unfinished_signals():
            if intent.account in self._queues:
                self._queues[intent.account].put_nowait((intent, True))
                recovered += 1
            else:
                self.store.set_signal_status(intent.signal_id, SignalStatus.FAILED,
                                             f"account {intent.account} is no longer configured")
        if recovered:
            log.info("re-queued %d signals accepted before the last stop", recovered)
        for account in self.brokers:
            self._workers[account] = asyncio.create_task(self._work(account), name=f"worker-{account}")
        self.running = True

    async def stop(self, grace: float) -> None:
        """Finish what is queued within `grace` seconds; what is left stays durable for the next start."""
        self.running = False
        for queue in self._queues.values():
            queue.put_nowait(None)
        if self._workers:
            _, pending = await asyncio.wait(self._workers.values(), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
                log.warning("stopped %d workers mid-signal; their signals resume on the next start",
                            len(pending))
        self._workers.clear()

    def alive(self) -> bool:
        """False when a worker has been stuck on one signal longer than `stall_seconds` (watchdog)."""
        now = time.monotonic()
        if any(task.done() for task in self._workers.values()) and self.running:
            return False
        return all(since is None or now - since < self.stall_seconds for since in self._busy_since.values())

    def exclusive(self, account: str) -> asyncio.Lock:
        """The account's worker lock: hold it to see the store and the broker between two signals."""
        return self._locks[account]

    def queue_depth(self, account: str) -> int:
        queue = self._queues.get(account)
        return queue.qsize() if queue else 0

    # ---- intake ----------------------------------------------------------------------------------

    def submit(self, intent: Intent) -> None:
        """Queue a signal that the store has already committed."""
        self._queues[intent.account].put_nowait((intent, False))

    def submit_new(self, intent: Intent) -> tuple[str, bool]:
        """Record and queue an intent from inside the daemon (chat, API, CLI, risk monitor)."""
        signal_id, is_new = self.store.record_signal(intent)
        if is_new:
            self.submit(intent)
        return signal_id, is_new

    async def wait_for(self, signal_id: str, within: float) -> Outcome:
        """Wait until a queued signal is finished (used by control actions that report their result)."""
        record = self.store.get_signal(signal_id)
        if record is not None and record.status.is_final:
            return Outcome(signal_id, record.status, record.reason)
        future = self._waiters.setdefault(signal_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), within)

    # ---- controls --------------------------------------------------------------------------------

    def targets(self, target: str) -> list[str]:
        if target == "all":
            return list(self.brokers)
        if target not in self.brokers:
            raise KeyError(f"unknown account {target!r}; accounts: {', '.join(self.brokers)}")
        return [target]

    def pause(self, target: str, actor: str, paused: bool = True) -> list[str]:
        """Pause (no new entries, exits still allowed) or resume; persisted across restarts."""
        accounts = self.targets(target)
        for account in accounts:
            self.store.set_control(account, paused=paused, by=actor)
            (self.paused.add if paused else self.paused.discard)(account)
            self.events.publish(Event(kind="paused" if paused else "resumed", account=account,
                                      summary=f"{'paused' if paused else 'resumed'} by {actor}"))
        self.store.audit(actor, "pause" if paused else "resume", target)
        return accounts

    def request_flatten(self, target: str, actor: str, request_id: str, source: str = "api") -> list[str]:
        """Queue a flatten (cancel orders, close positions) on each account's own worker; idempotent per id."""
        return self._request_all(Action.FLATTEN, "flat", target, actor, request_id, source)

    def request_cancel(self, target: str, actor: str, request_id: str, source: str = "api") -> list[str]:
        """Queue a cancel of every open order on each account's own worker; idempotent per id."""
        return self._request_all(Action.CANCEL, "cancel", target, actor, request_id, source)

    def _request_all(self, action: Action, prefix: str, target: str, actor: str, request_id: str,
                     source: str) -> list[str]:
        """An account-wide control action takes the same per-account path as any order."""
        ids = []
        for account in self.targets(target):
            intent = Intent(signal_id=f"{prefix}_{request_id}_{account}", dedup_key=f"{action.value}:{request_id}",
                            account=account, source=source, action=action,  # type: ignore[arg-type]
                            received_at=self.clock(), comment=f"{action.value} by {actor}")
            signal_id, _ = self.submit_new(intent)
            ids.append(signal_id)
        self.store.audit(actor, action.value, target, f"request {request_id}")
        return ids

    # ---- the worker ------------------------------------------------------------------------------

    async def _work(self, account: str) -> None:
        queue = self._queues[account]
        while True:
            item = await queue.get()
            if item is None:
                return
            intent, recovered = item
            async with self._locks[account]:
                self._busy_since[account] = time.monotonic()
                self._deferred[account] = []
                try:
                    await self.execute(intent, recovered)
                except Exception as exc:  # a bug must not kill the account's worker
                    log.exception("signal %s failed unexpectedly", intent.signal_id)
                    self._finish(intent, SignalStatus.FAILED, f"internal error: {type(exc).__name__}")
                finally:
                    self._busy_since[account] = None
                    self._flush_deferred(account)  # reports of a signal that ended without _finish
                self.metrics.queue_depth.labels(account).set(queue.qsize())
            # With a backlog, queue.get() returns without yielding: give the webhook (acknowledgements)
            # and the other accounts' workers a turn between signals.
            await asyncio.sleep(0)

    async def execute(self, intent: Intent, recovered: bool = False) -> Outcome:
        broker = self.brokers[intent.account]
        now = self.clock()
        if recovered and intent.action is not Action.FLATTEN:
            # Accepted before the last stop: its order may have left before the crash. Find it first.
            coid = client_order_id(intent.account, intent.dedup_key)
            try:
                found = await broker.find_order(coid)
            except BrokerError as exc:
                return self._finish(intent, SignalStatus.FAILED, f"could not look up order {coid}: {exc.reason}")
            if found is not None:
                return self._finish(intent, SignalStatus.EXECUTED, "order found at the broker after restart",
                                    order=found)
        if intent.expires_at is not None and now > intent.expires_at:
            return self._finish(intent, SignalStatus.EXPIRED,
                                f"not executed before it expired at {intent.expires_at.isoformat()}")
        try:
            if intent.price is not None and intent.symbol:
                await broker.observe_price(intent.symbol, intent.price, now)
            if intent.action is Action.FLATTEN:
                return await self._flatten(intent, broker)
            if intent.action is Action.CANCEL:
                cancelled = await self._cancel_open(intent, broker)
                return self._finish(intent, SignalStatus.EXECUTED, f"cancelled {len(cancelled)} orders",
                                    result=cancelled)
            positions = {p.symbol: p for p in await broker.positions()}
            quantities = {s: p.quantity for s, p in positions.items()}
            request, why_none = self._order_for(intent, quantities)
            if request is None:
                return self._finish(intent, SignalStatus.EXECUTED, why_none)
            price = intent.limit_price or intent.stop_price or intent.price
            if price is None and intent.symbol in positions:
                price = positions[intent.symbol].market_price
            view = await self.risk.prepare(intent.account, broker, now)  # no I/O unless PDT/cash rules apply
            ctx = OrderContext(
                request=request, signal_id=intent.signal_id,
                positions=quantities, price=price,
                multiplier=multiplier_of(broker, intent.symbol), paused=intent.account in self.paused,
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
            if result.violations:
                return self._finish(intent, SignalStatus.REJECTED,
                                    "; ".join(v.detail for v in result.violations))
            if intent.action is Action.EXIT and intent.quantity is None:
                # Only once the exit is allowed: stale brackets must not reopen a closed position, and a
                # refused exit must not leave the position without its stop-loss.
                await self._cancel_open(intent, broker)
            order = await self._place(broker, request)
        except OrderRejected as exc:
            return self._finish(intent, SignalStatus.FAILED, f"broker rejected the order: {exc.reason}")
        except BrokerError as exc:
            self.events.publish(Event(kind="broker", account=intent.account,
                                      summary=f"broker problem: {exc.reason}"))
            return self._finish(intent, SignalStatus.FAILED, f"broker unavailable: {exc.reason}")
        self.risk.record_order(intent.account, now)
        self.metrics.orders.labels(intent.account, order.status.value).inc()
        self.metrics.signal_to_order.observe((self.clock() - intent.received_at).total_seconds())
        self.events.publish(Event(
            kind="order", account=intent.account,
            summary=f"{order.side.value} {order.quantity.normalize():f} {order.symbol} {order.order_type.value}"
                    f" -> {order.status.value}",
            data={"signal_id": intent.signal_id, "order": order.model_dump(mode="json")},
        ))
        return self._finish(intent, SignalStatus.EXECUTED, None, order=order)

    def _order_for(self, intent: Intent, positions: Mapping[str, Decimal]) -> tuple[OrderRequest | None, str]:
        """The order this intent needs given the real position, or None and why nothing is needed."""
        current = positions.get(intent.symbol, Decimal(0))
        if intent.target_position is not None:
            delta = intent.target_position - current
            if delta == 0:
                return None, f"already at target position {intent.target_position.normalize():f}"
            side, quantity = (Side.BUY if delta > 0 else Side.SELL), abs(delta)
        elif intent.action is Action.EXIT:
            if current == 0:
                return None, f"no {intent.symbol} position to close"
            quantity = min(intent.quantity, abs(current)) if intent.quantity else abs(current)
            side = Side.SELL if current > 0 else Side.BUY
        else:
            side = Side.BUY if intent.action is Action.BUY else Side.SELL
            assert intent.quantity is not None  # signals.py guarantees it
            quantity = intent.quantity
        return OrderRequest(
            client_order_id=client_order_id(intent.account, intent.dedup_key),
            account=intent.account, symbol=intent.symbol, side=side, quantity=quantity,
            order_type=intent.order_type, limit_price=intent.limit_price, stop_price=intent.stop_price,
            time_in_force=intent.time_in_force, take_profit=intent.take_profit, stop_loss=intent.stop_loss,
            reference_price=intent.price, reduce_only=intent.action is Action.EXIT,
        ), ""

    async def _place(self, broker: Broker, request: OrderRequest) -> Order:
        """Place with bounded retries; after any failure of unknown outcome, look the order up first."""
        last: BrokerUnavailable | None = None
        for attempt in range(self.place_attempts):
            try:
                return await broker.place_order(request)
            except BrokerUnavailable as exc:
                last = exc
                log.warning("placing %s failed (%s), attempt %d", request.client_order_id, exc.reason, attempt + 1)
            await asyncio.sleep(self.retry_delay * 2**attempt)
            try:
                found = await broker.find_order(request.client_order_id)
            except BrokerUnavailable:
                continue
            if found is not None:
                return found
        assert last is not None
        raise last

    async def _cancel_open(self, intent: Intent, broker: Broker) -> list[Order]:
        cancelled = []
        for order in await broker.open_orders():
            if intent.symbol and order.symbol != intent.symbol:
                continue
            result = await broker.cancel_order(order.broker_order_id)
            self.store.upsert_order(result)
            cancelled.append(result)
        return cancelled

    async def _flatten(self, intent: Intent, broker: Broker) -> Outcome:
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
                                  data={"signal_id": intent.signal_id, "report": report.model_dump(mode="json")}))
        status = SignalStatus.FAILED if report.errors else SignalStatus.EXECUTED
        return self._finish(intent, status, summary, result=report)

    def _finish(self, intent: Intent, status: SignalStatus, reason: str | None, *, order: Order | None = None,
                result: Any = None) -> Outcome:
        reports = self._deferred.pop(intent.account, None) or []
        broker = self.brokers[intent.account]
        fills = [(r.fill, multiplier_of(broker, r.fill.symbol)) for r in reports if r.fill is not None]
        realized = self.store.finish_signal(intent.signal_id, status, reason, order,
                                            reports=[r.order for r in reports if r.order is not None], fills=fills)
        for (fill, _), pnl in zip(fills, realized, strict=True):
            if pnl is not None:
                self._fill_recorded(fill, pnl)
        self.metrics.signals.labels(intent.account, status.value).inc()
        if status in (SignalStatus.REJECTED, SignalStatus.FAILED, SignalStatus.EXPIRED):
            self.events.publish(Event(kind=f"signal_{status.value}", account=intent.account,  # type: ignore[arg-type]
                                      summary=f"{intent.action.value} {intent.symbol}: {reason}",
                                      data={"signal_id": intent.signal_id}))
        outcome = Outcome(intent.signal_id, status, reason, order, result)
        future = self._waiters.pop(intent.signal_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)
        return outcome

    # ---- broker reports --------------------------------------------------------------------------

    def _report_handler(self, account: str) -> Callable[[BrokerReport], Any]:
        async def handle(report: BrokerReport) -> None:
            deferred = self._deferred.get(account)
            if deferred is not None:
                deferred.append(report)
            else:
                self._record_report(account, report)

        return handle

    def _flush_deferred(self, account: str) -> None:
        for report in self._deferred.pop(account, None) or []:
            self._record_report(account, report)

    def _record_report(self, account: str, report: BrokerReport) -> None:
        if report.order is not None:
            self.store.upsert_order(report.order)
            return
        fill = report.fill
        assert fill is not None
        realized = self.store.record_fill(fill, multiplier_of(self.brokers[account], fill.symbol))
        if realized is not None:  # None: already recorded (a replayed report, or reconciliation got there first)
            self._fill_recorded(fill, realized)

    def _fill_recorded(self, fill: Fill, realized: Decimal) -> None:
        self.metrics.fills.labels(fill.account).inc()
        self.events.publish(fill_event(fill, realized))
