"""The built-in paper broker: simulated orders, fills and positions, persisted to a JSON state file.

Behaviour (accounting and the cash/equity model are described in `brokers.paper.book`):

- Prices come from `observe_price` and from `OrderRequest.reference_price`, which counts as an observed
  price at placement (it also triggers other resting orders of that symbol). Market orders fill at once at
  that price, or else the last observed one; with no known price they are rejected.
- Slippage (`slippage_bps`) moves every market-style fill against the trader. Limit fills take the observed
  price with slippage but never worse than the limit. Commission per fill:
  `max(commission_per_unit * qty, commission_minimum)`. Orders fill completely or not at all.
- Limit, stop and stop-limit orders rest (status NEW) and are checked against every observed price of
  their symbol; a marketable one fills at once. A triggered stop-limit becomes a resting limit. IOC/FOK
  orders that cannot fill at placement expire. DAY orders do not expire (there is no session here).
- Brackets: when an entry with `take_profit`/`stop_loss` fills, a LIMIT child at the take-profit and a STOP
  child at the stop-loss are created (opposite side, same quantity, one OCO group); when one fills the other
  is cancelled. Whenever a symbol's position becomes flat, its resting bracket children are cancelled so
  they cannot reopen it. `reduce_only` is checked at placement only.
- Reports: every order change is emitted as `BrokerReport(order=...)`, every fill as `BrokerReport(fill=...)`
  (the order update first, then its fill), after the state is saved and with no lock held, so a report
  handler may call back into the broker.
- State: every mutation appends one line to a journal next to the state file, which is a checkpoint of
  the live state (see `brokers.paper.book`): O(1) per mutation, whatever the history. The last
  `MAX_FINISHED_ORDERS` finished orders and `MAX_FILLS` fills survive restarts (idempotency, `find_order`,
  `fills(since)`). A file that cannot be read raises `PaperStateError`; it is never silently reset. The
  configured `starting_cash` only matters when there is no state file yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from brokers.base import BrokerBase, BrokerContext, BrokerError, BrokerReport, OrderNotFound, OrderRejected
from brokers.paper.book import PaperBook
from brokers.paper.ledger import Bracket, PaperLedger, PaperStateError
from brokers.paper.models import HAS_LIMIT, HAS_STOP, bracket_legs, check_request, fill_of, new_order
from config.brokers import PaperSettings
from daemon.domain import (
    ZERO,
    AccountState,
    Fill,
    FlattenReport,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
    utcnow,
)

__all__ = ["PaperBroker", "PaperStateError"]

T = TypeVar("T")
BPS = Decimal(10_000)


class PaperBroker(BrokerBase):
    """A simulated broker for one account; see the module docstring for its rules."""

    name = "paper"

    def __init__(
        self,
        account: str,
        settings: PaperSettings,
        state_file: Path,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__(account)
        self.settings = settings
        self.state_file = Path(state_file)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._loaded = False
        self._s = self._new_ledger()  # orders, fills, book and their files
        self._reports: list[BrokerReport] = []

    # ---- lifecycle and persistence -------------------------------------------------------------------

    @property
    def _book(self) -> PaperBook:
        return self._s.book

    def _new_ledger(self) -> PaperLedger:
        book = PaperBook(self.settings.starting_cash, self.settings.multipliers)
        return PaperLedger(self.account, book, self.state_file)

    async def connect(self) -> None:
        async with self._lock:
            if not self._loaded:  # a long history takes a moment to read: not on the event loop
                ledger = self._new_ledger()
                await asyncio.to_thread(ledger.load)
                if not self._loaded:  # a query without connect() may have loaded it meanwhile
                    self._s, self._loaded = ledger, True

    async def close(self) -> None:
        async with self._lock:
            self._ensure_loaded()
            self._s.close()

    def _ensure_loaded(self) -> None:
        """Load the state file and journal once (raises `PaperStateError` until they can be read)."""
        if not self._loaded:
            ledger = self._new_ledger()
            ledger.load()
            self._s, self._loaded = ledger, True

    async def _mutate(self, step: Callable[[], T]) -> T:
        """Run `step` under the lock, journal what it changed, then emit its reports lock-free."""
        async with self._lock:
            self._ensure_loaded()
            self._reports = []
            try:
                result = step()
            finally:
                reports, self._reports = self._reports, []
                self._s.commit()
        for report in reports:
            await self.emit(report)
        return result

    # ---- Broker protocol -----------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        return await self._mutate(lambda: self._place(request))

    async def find_order(self, client_order_id: str) -> Order | None:
        self._ensure_loaded()
        return self._s.find(client_order_id)

    async def cancel_order(self, broker_order_id: str) -> Order:
        def step() -> Order:
            order = self._get(broker_order_id)
            if not order.status.is_open:
                return order
            return self._cancel(order, self._clock())

        return await self._mutate(step)

    async def modify_order(
        self,
        broker_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> Order:
        return await self._mutate(lambda: self._modify(broker_order_id, quantity, limit_price, stop_price))

    async def open_orders(self) -> list[Order]:
        self._ensure_loaded()
        return list(self._s.open.values())

    async def positions(self) -> list[Position]:
        self._ensure_loaded()
        return self._book.positions(self.account)

    async def account_state(self) -> AccountState:
        self._ensure_loaded()
        return self._book.account_state(self.account, self.name, self._clock())

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        self._ensure_loaded()
        return self._s.fills_since(since)

    async def close_position(self, symbol: str) -> Order | None:
        return await self._mutate(lambda: self._close(symbol, self._clock()))

    async def flatten(self) -> FlattenReport:
        return await self._mutate(self._flatten)

    def multiplier(self, symbol: str) -> Decimal:
        """Point value from `PaperSettings.multipliers` (by ticker, else futures root), default 1."""
        return self._book.multiplier(symbol)

    async def observe_price(self, symbol: str, price: Decimal, at: datetime) -> None:
        if price <= ZERO:
            raise ValueError(f"price for {symbol} must be positive, got {price}")
        if at.tzinfo is None:
            raise ValueError("observe_price needs a timezone-aware time")
        await self._mutate(lambda: self._observe(symbol, price, at.astimezone(UTC)))

    # ---- order handling (called under the lock) ------------------------------------------------------

    def _get(self, broker_order_id: str) -> Order:
        order = self._s.get(broker_order_id)
        if order is None:
            raise OrderNotFound(f"no paper order {broker_order_id}")
        return order

    def _report(self, *, order: Order | None = None, fill: Fill | None = None) -> None:
        self._reports.append(BrokerReport(order=order, fill=fill))

    def _put(self, order: Order) -> Order:
        return self._s.put(order)

    def _new_order(
        self,
        request: OrderRequest,
        now: datetime,
        parent_order_id: str | None = None,
        oco_group: str | None = None,
    ) -> Order:
        oid = f"P{self._s.next_order}"
        self._s.next_order += 1
        return self._put(new_order(request, oid, self.account, now, parent_order_id, oco_group))

    def _place(self, request: OrderRequest) -> Order:
        existing = self._s.find(request.client_order_id)
        if existing is not None:
            return existing
        check_request(request, self.account, self._book)
        now = self._clock()
        if request.reference_price is not None:
            self._observe(request.symbol, request.reference_price, now)
        order = self._new_order(request, now)
        if request.take_profit is not None or request.stop_loss is not None:
            self._s.brackets[order.broker_order_id] = Bracket(
                take_profit=request.take_profit, stop_loss=request.stop_loss
            )
        self._admit(order, now)
        return self._get(order.broker_order_id)

    def _admit(self, order: Order, now: datetime) -> None:
        """A new order meets the market: fill/trigger against the last price, expire IOC/FOK, or rest."""
        price = self._book.last_price(order.symbol)
        if price is not None:
            self._check(order, price, now)
        current = self._get(order.broker_order_id)
        if not current.status.is_open:
            return
        if current.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            self._finish(current, OrderStatus.EXPIRED, now)
        else:
            self._report(order=current)

    def _observe(self, symbol: str, price: Decimal, at: datetime) -> None:
        self._book.mark(symbol, price)
        resting = [oid for oid, order in self._s.open.items() if order.symbol == symbol]
        for oid in resting:
            order = self._s.open.get(oid)
            if order is not None:  # an earlier fill may have cancelled it (OCO, flat position)
                self._check(order, price, at)

    def _slipped(self, side: Side, price: Decimal) -> Decimal:
        return price * (1 + side.sign * self.settings.slippage_bps / BPS)

    def _check(self, order: Order, price: Decimal, at: datetime) -> None:
        """Fill or trigger `order` if `price` reaches it."""
        kind, buy = order.order_type, order.side is Side.BUY
        if kind is OrderType.MARKET:
            self._fill(order, self._slipped(order.side, price), at)
            return
        if kind in HAS_STOP and order.broker_order_id not in self._s.triggered:
            stop = order.stop_price
            assert stop is not None
            if not (price >= stop if buy else price <= stop):
                return
            if kind is OrderType.STOP:
                self._fill(order, self._slipped(order.side, price), at)
                return
            self._s.triggered.add(order.broker_order_id)
            self._s.touch(order)
        limit = order.limit_price
        assert limit is not None
        if price <= limit if buy else price >= limit:
            slipped = self._slipped(order.side, price)
            self._fill(order, min(slipped, limit) if buy else max(slipped, limit), at)

    def _finish(self, order: Order, status: OrderStatus, at: datetime) -> Order:
        done = self._put(order.model_copy(update={"status": status, "updated_at": at}))
        self._s.triggered.discard(order.broker_order_id)
        self._s.brackets.pop(order.broker_order_id, None)
        self._report(order=done)
        return done

    def _cancel(self, order: Order, at: datetime) -> Order:
        return self._finish(order, OrderStatus.CANCELLED, at)

    def _fill(self, order: Order, price: Decimal, at: datetime) -> None:
        fill = fill_of(order, f"{self.account}-F{self._s.next_fill}", price, at, self.settings)
        self._s.next_fill += 1
        self._s.add_fill(fill)
        filled = self._put(
            order.model_copy(
                update={
                    "status": OrderStatus.FILLED,
                    "filled_quantity": order.quantity,
                    "average_fill_price": price,
                    "updated_at": at,
                }
            )
        )
        self._s.triggered.discard(order.broker_order_id)
        self._report(order=filled)
        self._report(fill=fill)
        for other in list(self._s.open.values()):
            if other.broker_order_id not in self._s.open:  # cancelled by this loop already
                continue
            same_oco = order.oco_group is not None and other.oco_group == order.oco_group
            orphan = other.parent_order_id is not None and other.symbol == order.symbol
            if same_oco or (orphan and self._book.quantity(order.symbol) == ZERO):
                self._cancel(other, at)
        bracket = self._s.brackets.pop(order.broker_order_id, None)
        if bracket is not None:
            self._open_children(filled, bracket, at)

    def _open_children(self, entry: Order, bracket: Bracket, at: datetime) -> None:
        children = [self._new_order(request, at, parent_order_id=entry.broker_order_id,
                                    oco_group=f"oco-{entry.broker_order_id}")
                    for request in bracket_legs(entry, bracket)]
        for child in children:
            current = self._get(child.broker_order_id)
            if current.status.is_open:
                self._admit(current, at)

    def _modify(
        self,
        broker_order_id: str,
        quantity: Decimal | None,
        limit_price: Decimal | None,
        stop_price: Decimal | None,
    ) -> Order:
        order = self._get(broker_order_id)
        if not order.status.is_open:
            raise OrderRejected(f"order {broker_order_id} is {order.status}; only resting orders can change")
        if order.order_type is OrderType.MARKET:
            raise OrderRejected(f"market order {broker_order_id} cannot be modified")
        if limit_price is not None and order.order_type not in HAS_LIMIT:
            raise OrderRejected(f"{order.order_type} order {broker_order_id} has no limit price")
        if stop_price is not None and order.order_type not in HAS_STOP:
            raise OrderRejected(f"{order.order_type} order {broker_order_id} has no stop price")
        asked = {"quantity": quantity, "limit_price": limit_price, "stop_price": stop_price}
        changes: dict[str, object] = {key: value for key, value in asked.items() if value is not None}
        for label, value in asked.items():
            if value is not None and value <= ZERO:
                raise OrderRejected(f"{label} must be positive, got {value}")
        if not changes:
            return order
        now = self._clock()
        changes["updated_at"] = now
        updated = self._put(order.model_copy(update=changes))
        price = self._book.last_price(updated.symbol)
        if price is not None:
            self._check(updated, price, now)
        current = self._get(broker_order_id)
        if current.status.is_open:  # a fill already reported the order
            self._report(order=current)
        return current

    def _close(self, symbol: str, now: datetime) -> Order | None:
        held = self._book.quantity(symbol)
        if held == ZERO:
            return None
        if self._book.last_price(symbol) is None:
            raise OrderRejected(f"no price known for {symbol}: cannot close the position")
        request = OrderRequest(
            client_order_id=f"close-{symbol}-{self._s.next_order}",
            account=self.account,
            symbol=symbol,
            side=Side.SELL if held > 0 else Side.BUY,
            quantity=abs(held),
        )
        order = self._new_order(request, now)
        self._admit(order, now)
        return self._get(order.broker_order_id)

    def _flatten(self) -> FlattenReport:
        now = self._clock()
        cancelled = [self._cancel(order, now) for order in list(self._s.open.values())]
        closing: list[Order] = []
        errors: list[str] = []
        for symbol in self._book.open_symbols():
            try:
                order = self._close(symbol, now)
            except BrokerError as exc:
                errors.append(f"{symbol}: {exc.reason}")
                continue
            if order is not None:
                closing.append(order)
        return FlattenReport(account=self.account, cancelled=cancelled, closing=closing, errors=errors)


def build(account: str, settings: PaperSettings, context: BrokerContext) -> PaperBroker:
    """The registry's factory: the paper state lives in `state_dir/paper/<account>.json`."""
    return PaperBroker(account, settings, context.state_dir / "paper" / f"{account}.json", context.clock)
