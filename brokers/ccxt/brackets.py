"""The exits of a ccxt entry: an exit order or Binance's OCO after a market fill, an OTOCO for a limit entry, and
one leg of an OCO changed (the list placed again).

A mixin of `CcxtBroker` (`brokers.ccxt.broker`), kept apart so the adapter stays readable: it places the
order lists and records them (journal, parent links, the report gate) the way the adapter's single orders
are, and reads only what the adapter declares below.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from brokers.base import OrderRejected
from brokers.ccxt import models as cm
from brokers.ccxt.calls import Caller
from brokers.ccxt.markets import Markets
from brokers.http import RetryPolicy, place_once
from brokers.journal import OrderJournal, sent_before
from brokers.updates import ReportGate
from daemon.domain import ZERO, Order, OrderRequest, OrderStatus, OrderType, Side, TimeInForce

log = logging.getLogger("brokers.ccxt.broker")


class OrderLists:
    """Exit placement for `CcxtBroker`; the attributes and methods below are the adapter's."""

    id: str
    account: str
    exchange: Any
    calls: Caller
    policy: RetryPolicy
    journal: OrderJournal
    reports: ReportGate
    _sleep: Callable[[float], Awaitable[None]]
    _parents: dict[str, str]
    _symbol_of: dict[str, str]
    _fees: dict[str, list[dict[str, Any]]]

    def _markets(self) -> Markets:
        raise NotImplementedError

    def _order(self, data: dict[str, Any]) -> Order:
        raise NotImplementedError

    async def _place(self, p: cm.Placement) -> Order:
        raise NotImplementedError

    async def find_order(self, client_order_id: str) -> Order | None:
        raise NotImplementedError

    async def cancel_order(self, broker_order_id: str) -> Order:
        raise NotImplementedError

    async def open_orders(self) -> list[Order]:
        raise NotImplementedError

    def _exits_pass(self, request: OrderRequest, symbol: str, amount: Decimal) -> None:
        """OrderRejected, before the entry is sent, when the exits that follow its fill would fail the market's
        filters (what a buy leaves after its fee, at each exit's price)."""
        markets = self._markets()
        left = amount if request.side is Side.SELL else markets.after_fee(symbol, amount)
        for price in (request.take_profit, request.stop_loss):
            if price is None:
                continue
            try:
                markets.size(symbol, left, price, market_order=False)
            except OrderRejected as exc:
                raise OrderRejected(f"its exits would be refused, leaving the position unprotected: {exc.reason}"
                                    ) from None

    async def _place_exits(self, request: OrderRequest, symbol: str, entry: Order) -> None:
        """Protect a filled market entry; a failure is logged loudly (the position stands unprotected)."""
        markets = self._markets()
        base = markets.market(symbol)["base"]
        fee = sum((Decimal(str(f.get("cost") or 0)) for f in self._fees.get(entry.broker_order_id, [])
                   if f.get("currency") == base), ZERO) if request.side.value == "buy" else ZERO
        quantity = markets.round_quantity(symbol, entry.filled_quantity - fee)
        try:
            if request.take_profit is not None and request.stop_loss is not None:
                await self._place_oco(request, symbol, quantity, entry)
                return
            exit_request = request.model_copy(update={
                "client_order_id": request.client_order_id + ("tp" if request.take_profit else "sl"),
                "side": request.side.opposite(), "quantity": quantity, "take_profit": None, "stop_loss": None,
                "order_type": OrderType.LIMIT if request.take_profit else OrderType.STOP,
                "limit_price": request.take_profit, "stop_price": request.stop_loss, "time_in_force": TimeInForce.GTC})
            leg = await self._place(cm.placement(exit_request, symbol, quantity, markets))
            self._parents[leg.broker_order_id] = entry.broker_order_id
            await self._tell(leg.model_copy(update={"parent_order_id": entry.broker_order_id}))
        except Exception as exc:
            log.error("%s %s: entry %s filled but its exits were not placed: %s", self.id, self.account,
                      entry.broker_order_id, getattr(exc, "reason", exc))

    async def _tell(self, leg: Order) -> None:
        """An exit placed for an entry is news for the engine (it is told of the entry only), also when this
        adapter has already seen it."""
        self.reports.known.pop(leg.broker_order_id, None)
        await self.reports.order(leg)

    async def _listed(self, data: dict[str, Any], symbol: str, entry_id: str | None) -> list[Order]:
        """The orders of a Binance order list answer; exits point to `entry_id` (the working order if None)
        and are reported, the entry only remembered."""
        legs = [self.exchange.parse_order(r, self._markets().market(symbol)) for r in data["orderReports"]]
        entry = entry_id or next(str(leg["id"]) for leg in legs if not cm.is_exit(leg.get("clientOrderId")))
        for leg in legs:
            parent = {"parent": entry} if str(leg["id"]) != entry else {}
            self._parents.update({str(leg["id"]): entry} if parent else {})
            self.journal.record(str(leg["clientOrderId"]), "placed", order_id=str(leg["id"]), **parent)
        orders = [self._order(leg) for leg in legs]
        for order in orders:
            if order.broker_order_id == entry:
                self.reports.remember(order)
            else:
                await self._tell(order)
        return orders

    async def _place_oco(self, request: OrderRequest, symbol: str, quantity: Decimal, entry: Order | str) -> Order:
        """The OCO of `request`'s exits for `quantity`, its legs pointing to `entry` (an order or its id); the
        take-profit leg is returned."""
        params = cm.oco_params(request, symbol, quantity, self._markets())
        entry_id = entry if isinstance(entry, str) else entry.broker_order_id
        cid = request.client_order_id + "tp"
        for leg in (params["aboveClientOrderId"], params["belowClientOrderId"]):
            self.journal.record(str(leg), "sending", symbol=symbol)

        async def send() -> Order:
            data = await self.calls.once(f"{self.id} oco {cid}", lambda: self.exchange.privatePostOrderListOco(params))
            return next(o for o in await self._listed(data, symbol, entry_id) if o.order_type is OrderType.LIMIT)

        return await place_once(self.id, cid, send, lambda: self.find_order(cid), self.policy, self._sleep)

    async def _replace_oco(self, leg: Order, other: Order, quantity: Decimal | None, limit_price: Decimal | None,
                           stop_price: Decimal | None) -> Order:
        """Change one order of a Binance OCO. Binance changes neither in place and cancelling one cancels the
        list, so the list is cancelled and placed again: the changed leg at its new price, the other as it
        was, for what is left, under the same entry. Returns the new order of `leg`."""
        take, stop = (leg, other) if leg.order_type is OrderType.LIMIT else (other, leg)
        target = take.limit_price if limit_price is None or leg is not take else limit_price
        protect = stop.stop_price if stop_price is None or leg is not stop else stop_price
        symbol, entry = self._symbol_of[leg.broker_order_id], self._parents.get(leg.broker_order_id)
        if entry is None:
            raise OrderRejected(f"{self.id}: order {leg.broker_order_id} is in an OCO traderd did not place with an "
                                "entry; change it at the exchange")
        base = f"{leg.client_order_id[:28]}-{uuid.uuid4().hex[:3]}"  # Binance ids: 36 characters at most
        size = quantity or leg.quantity - leg.filled_quantity
        request = OrderRequest(client_order_id=base, account=self.account, symbol=leg.symbol,
                               side=leg.side.opposite(), quantity=size, take_profit=target, stop_loss=protect)
        cancelled = await self.cancel_order(leg.broker_order_id)
        if cancelled.status is not OrderStatus.CANCELLED:
            raise OrderRejected(f"{self.id}: order {leg.broker_order_id} is {cancelled.status.value}; its OCO is "
                                "over, nothing to change")
        try:
            placed = await self._place_oco(request, symbol, size, entry)
        except Exception as exc:
            log.error("%s %s: the OCO of order %s was cancelled to change it and not placed again: the position "
                      "has no exits there: %s", self.id, self.account, leg.broker_order_id, getattr(exc, "reason", exc))
            raise
        if leg is take:
            return placed
        return next(o for o in await self.open_orders()
                    if o.oco_group == placed.oco_group and o.order_type is not OrderType.LIMIT)

    async def _place_otoco(self, request: OrderRequest, symbol: str, amount: Decimal) -> Order:
        """A limit entry with both exits as one Binance OTOCO, its exits sized to what the entry leaves."""
        markets, cid = self._markets(), request.client_order_id
        if (existing := await sent_before(self.journal, self.id, cid, self.find_order)) is not None:
            return existing
        pending = amount if request.side is Side.SELL else markets.after_fee(symbol, amount)
        markets.size(symbol, pending, request.stop_loss, market_order=False)  # the exits pass the filters too
        params = cm.otoco_params(request, symbol, amount, pending, markets)
        for leg in (cid, cid + "tp", cid + "sl"):  # fsynced before the send: a restart looks each up
            self.journal.record(leg, "sending", symbol=symbol)

        async def send() -> Order:
            try:
                data = await self.calls.once(f"{self.id} otoco {cid}",
                                             lambda: self.exchange.privatePostOrderListOtoco(params))
            except OrderRejected as exc:
                self.journal.record(cid, "refused", reason=exc.reason)
                raise
            return next(o for o in await self._listed(data, symbol, None) if o.parent_order_id is None)

        return await place_once(self.id, cid, send, lambda: self.find_order(cid), self.policy, self._sleep)
