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
)
from daemon.events import EventBus, fill_event
from daemon.metrics import Metrics
from daemon.ownership.fence import NotOwner, no_fence
from daemon.risk.context import OrderContext
from daemon.risk.engine import RiskEngine
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
    lookup = getattr(broker, "multiplier", None)
    return lookup(symbol) if callable(lookup) else Decimal(1)


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
        place_attempts: int,
        retry_delay: float,
        fence: Callable[[str], None] = no_fence,
    ) -> None:
        self.fence = fence  # raises NotOwner unless this process can prove it owns the account right now
        self.store = store
        self.brokers = brokers
        self.risk = risk
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.paused = paused
        self.locked = locked
        self.place_attempts = place_attempts
        self.retry_delay = retry_delay
        self._deferred: dict[str, list[BrokerReport]] = {}
        self._waiters: dict[str, asyncio.Future[Outcome]] = {}

    async def run(self, intent: Intent, recovered: bool) -> None:
        """Execute on the account's worker: the broker's reports meanwhile wait for the signal's outcome."""
        self._deferred[intent.account] = []
        try:
            await self.execute(intent, recovered)
        except NotOwner:
            raise  # nothing was finished: the signal stays unfinished for the account's owner
        except Exception as exc:  # a bug must not kill the account's worker
            log.exception("signal %s failed unexpectedly", intent.signal_id)
            self._finish(intent, SignalStatus.FAILED, f"internal error: {type(exc).__name__}")
        finally:
            self._flush_deferred(intent.account)  # reports of a signal that ended without _finish

    async def wait_for(self, signal_id: str, within: float) -> Outcome:
        """Wait until a queued signal is finished (used by control actions that report their result)."""
        record = self.store.get_signal(signal_id)
        if record is not None and record.status.is_final:
            return Outcome(signal_id, record.status, record.reason)
        future = self._waiters.setdefault(signal_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), within)

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
    # ---- placement -------------------------------------------------------------------------------

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
                self.fence(request.account)  # ownership is proven right before every send
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
            self.fence(intent.account)
            result = await broker.cancel_order(order.broker_order_id)
            self.store.upsert_order(result)
            cancelled.append(result)
        return cancelled

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
