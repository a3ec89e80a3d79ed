"""Crypto exchange adapter over ccxt's async unified API (spot): orders, OCO/OTOCO exits, balances, streamed fills.

One adapter for every exchange ccxt knows (`exchange = "binance" | "bybit" | "kraken" | ...`), tested
against Binance's spot API. Symbols are TradingView's (`BTCUSDT`), mapped to ccxt's (`BTC/USDT`) by
`brokers.ccxt.markets`, which also rounds quantities to the lot step and refuses orders below the minimum
quantity or notional with the numbers. Spot positions are balances (`brokers.ccxt.portfolio`).

Idempotency: the engine's client order id is sent as the exchange's client order id (Binance
`newClientOrderId`) and journaled (fsynced, with its market) before it is sent. After a lost answer
(timeout, reset, 5xx, 429/418, Binance -1007) the order is looked up by that id (Binance
`origClientOrderId`; elsewhere among the market's open and closed orders) before anything is resent
(`brokers.http.place_once`); a "Duplicate order sent" returns the existing order. An id the journal never
saw was never sent, so `find_order` answers None without asking.

Brackets: a market entry with take-profit and stop-loss is followed by Binance's OCO (LIMIT_MAKER +
STOP_LOSS) for the filled quantity net of a base-currency fee; a limit entry with both is one Binance
OTOCO (`/api/v3/orderList/otoco`); one exit alone is a plain limit or stop order on any exchange; stop
entries with exits are refused. Modify is Binance's cancel-replace (elsewhere edit, or cancel then place).
Fills and order changes are polled (`brokers.updates.Feed`) and, on Binance with `stream` on, also streamed
by ccxt.pro (`brokers.ccxt.stream`; polling then slows by `stream_poll_factor`); each reaches the engine
once (`ReportGate`, keyed by the exchange's trade id on both paths).
Market data: `bars()` reads the exchange's candles (`fetch_ohlcv`, Binance `/api/v3/klines`) through
`brokers.ccxt.history`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from brokers.base import BrokerBase, BrokerContext, BrokerUnavailable, OrderNotFound, OrderRejected
from brokers.ccxt import history
from brokers.ccxt import models as cm
from brokers.ccxt.brackets import OrderLists
from brokers.ccxt.calls import Caller
from brokers.ccxt.exchange import STREAMED, make_exchange
from brokers.ccxt.markets import Markets
from brokers.ccxt.portfolio import Portfolio
from brokers.ccxt.reporting import CcxtReporting
from brokers.flatten import cancel_then_close
from brokers.http import RateLimiter, RetryPolicy, place_once
from brokers.journal import OrderJournal, sent_before
from brokers.stream import Backoff
from brokers.updates import Feed, ReportGate
from config.brokers import CcxtSettings
from daemon.domain import (
    AccountState,
    Bar,
    Fill,
    FlattenReport,
    Order,
    OrderRequest,
    OrderType,
    Position,
    Side,
    utcnow,
)
from daemon.shapes import Trail

log = logging.getLogger(__name__)


class CcxtBroker(OrderLists, BrokerBase, CcxtReporting):
    name = "ccxt"
    STREAM_GRACE = 120.0  # seconds the stream may be down (reconnecting) before healthy() says so

    def __init__(self, account: str, settings: CcxtSettings, state_dir: Path,
                 clock: Callable[[], datetime] = utcnow, *, exchange: Any = None, session: Any = None,
                 retry: RetryPolicy | None = None, poll_interval: float | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 stream_backoff: Backoff | None = None) -> None:
        super().__init__(account)
        self.settings, self.clock, self._sleep = settings, clock, sleep
        self.exchange = exchange if exchange is not None else make_exchange(settings, session)
        self.id = settings.exchange
        # Binance trails a STOP_LOSS by a percent (`trailingDelta`); other trails are the daemon's
        self.native_trailing = frozenset({"order_percent"}) if self.id == "binance" else frozenset()
        self.policy = retry or RetryPolicy(retries=settings.max_retries)
        self.calls = Caller(self.exchange, RateLimiter.per_minute(settings.rate_limit_per_minute), self.policy, sleep)
        self.portfolio = Portfolio(account, self.exchange, self.calls, settings, clock)
        self.journal = OrderJournal(state_dir / "ccxt" / f"{account}.orders")
        self.poll_interval = settings.poll_interval_seconds if poll_interval is None else poll_interval
        self.updates = Feed(f"ccxt {account}", self.poll_once, lambda: self.poll_interval,
                            lambda: self.poll_interval * settings.stream_poll_factor)
        self.reports = ReportGate(self.emit)
        if settings.stream and self.id in STREAMED:
            self.updates.stream = self._init_stream(f"ccxt {account}", stream_backoff)
        self.markets: Markets | None = None
        self._symbol_of: dict[str, str] = {}  # order id -> ccxt symbol
        self._cids: dict[str, str] = {}  # order id -> engine client order id
        self._parents: dict[str, str] = {}  # exit order id -> entry order id
        self._watch: set[str] = set()  # open order ids whose end is still to be reported
        self._fees: dict[str, list[dict[str, Any]]] = {}  # order id -> fees of its placement answer (FULL)
        self._trails: dict[str, Trail] = {}  # order id -> trail of a trailing stop the exchange moves
        self._fills_after: datetime | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Markets (and their filters) once, then the balance, which proves the keys."""
        try:
            await self.calls.safe(f"{self.id} markets", lambda: self.exchange.load_markets())
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(f"{self.id} is unreachable: {exc.reason}") from None
        self.markets = self.portfolio.markets = Markets(self.exchange)
        for entry in self.journal.entries.values():
            if entry.get("order_id") and entry.get("symbol") in self.exchange.markets:
                self._symbol_of[str(entry["order_id"])] = str(entry["symbol"])
                self._cids[str(entry["order_id"])] = cm.engine_id(str(entry["cid"]))
                if entry.get("parent"):
                    self._parents[str(entry["order_id"])] = str(entry["parent"])
        await self.portfolio.balances()
        self._fills_after = self.clock() - timedelta(seconds=1)
        self.updates.start()

    async def close(self) -> None:
        await self.updates.stop()
        await self.exchange.close()

    def healthy(self) -> bool:
        """REST answering and polling alive; a stream refused or down past the grace period too."""
        return self.calls.healthy() and self.updates.healthy(self.STREAM_GRACE)

    def quantity_step(self, symbol: str) -> Decimal:
        """The market's lot step (ccxt's `precision.amount`): a quote-currency notional (`dollar_amount`) is
        sized down to it; the minimum quantity and notional are checked when the order is placed."""
        markets = self._markets()
        return markets.step(markets.symbol(symbol)) or Decimal(1)

    def _markets(self) -> Markets:
        if self.markets is None:
            raise BrokerUnavailable(f"{self.id}: not connected (markets not loaded)")
        return self.markets

    def _order(self, data: dict[str, Any]) -> Order:
        order_id = str(data["id"])
        self._symbol_of[order_id] = str(data["symbol"])
        self._cids.setdefault(order_id, cm.engine_id(data.get("clientOrderId")))
        if data.get("fees"):
            self._fees[order_id] = list(data["fees"])
        if (trail := cm.trail_of(data)) is not None:
            self._trails[order_id] = trail
        order = cm.to_order(data, self.account, self._markets(), self.clock(), self._parents.get(order_id))
        if order.status.is_open:
            self._watch.add(order_id)
        return order

    def _traded(self) -> set[str]:
        """Markets whose fills are read: configured, traded by this daemon (journal), and held."""
        markets = self._markets()
        out = {markets.symbol(s) for s in self.settings.symbols}
        out |= {str(e["symbol"]) for e in self.journal.entries.values() if e.get("symbol") in self.exchange.markets}
        return out | set(self._symbol_of.values())

    # -- orders ------------------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> Order:
        markets = self._markets()
        symbol = markets.symbol(request.symbol)
        exits = request.take_profit is not None or request.stop_loss is not None
        both = request.take_profit is not None and request.stop_loss is not None
        if both and self.id != "binance":
            raise OrderRejected(f"{self.id}: no OCO for take-profit + stop-loss in this adapter; nothing was sent")
        if exits and request.order_type is not OrderType.MARKET and not (both and request.order_type.value == "limit"):
            raise OrderRejected(f"{self.id}: a {request.order_type.value} entry cannot carry these exits (a market "
                                "entry takes either or both, a limit entry both: Binance OTOCO); nothing was sent")
        price = request.limit_price or request.stop_price or request.reference_price or \
            await self.portfolio.mark(symbol)
        amount = markets.size(symbol, request.quantity, price, market_order=request.order_type is OrderType.MARKET)
        if exits and request.order_type is OrderType.LIMIT:
            return await self._place_otoco(request, symbol, amount)
        if exits:  # placed once the entry fills: an entry whose exits the exchange would refuse is not sent
            self._exits_pass(request, symbol, amount)
        entry = await self._place(cm.placement(request, symbol, amount, markets))
        if exits and entry.filled_quantity > 0:
            await self._place_exits(request, symbol, entry)
        return entry

    async def _place(self, p: cm.Placement) -> Order:
        cid = str(p.params["clientOrderId"])
        if (existing := await sent_before(self.journal, self.id, cid, self.find_order)) is not None:
            return existing
        self.journal.record(cid, "sending", symbol=p.symbol)

        async def send() -> Order:
            try:
                data = await self.calls.once(f"{self.id} place {cid}", lambda: self.exchange.create_order(
                    p.symbol, p.type, p.side, float(p.amount), None if p.price is None else float(p.price), p.params))
            except OrderRejected as exc:
                if "duplicate order" in exc.reason.lower() and (existing := await self.find_order(cid)):
                    return existing
                self.journal.record(cid, "refused", reason=exc.reason)
                raise
            order = self._order(data)
            self.journal.record(cid, "placed", order_id=order.broker_order_id)
            self.reports.remember(order)
            return order

        return await place_once(self.id, cid, send, lambda: self.find_order(cid), self.policy, self._sleep)

    async def find_order(self, client_order_id: str) -> Order | None:
        entry = self.journal.get(client_order_id)
        if entry is None or entry.get("symbol") not in (self.exchange.markets or {}):
            return None  # never sent by this daemon
        symbol = str(entry["symbol"])
        if self.id == "binance":
            try:
                data = await self.calls.safe(f"{self.id} find {client_order_id}", lambda: self.exchange.fetch_order(
                    "", symbol, {"origClientOrderId": client_order_id}))
            except OrderNotFound:
                return None
            return self._order(data)
        candidates = await self.calls.safe(f"{self.id} open orders {symbol}",
                                           lambda: self.exchange.fetch_open_orders(symbol))
        if self.exchange.has.get("fetchClosedOrders"):
            candidates += await self.calls.safe(f"{self.id} closed orders {symbol}",
                                                lambda: self.exchange.fetch_closed_orders(symbol))
        found = [o for o in candidates if o.get("clientOrderId") == client_order_id]
        return self._order(found[0]) if found else None

    async def _symbol(self, broker_order_id: str) -> str:
        if broker_order_id not in self._symbol_of:
            await self.open_orders()
        if broker_order_id not in self._symbol_of:
            raise OrderNotFound(f"{self.id}: order {broker_order_id} is not an open order of this account")
        return self._symbol_of[broker_order_id]

    async def _fetch(self, broker_order_id: str) -> Order:
        symbol = await self._symbol(broker_order_id)
        return self._order(await self.calls.safe(f"{self.id} order {broker_order_id}",
                                                 lambda: self.exchange.fetch_order(broker_order_id, symbol)))

    async def cancel_order(self, broker_order_id: str) -> Order:
        symbol = await self._symbol(broker_order_id)
        try:
            await self.calls.safe(f"{self.id} cancel {broker_order_id}",
                                  lambda: self.exchange.cancel_order(broker_order_id, symbol))
        except (OrderNotFound, OrderRejected):
            pass  # already filled or cancelled: answer with the order as it is
        return await self._fetch(broker_order_id)

    async def modify_order(self, broker_order_id: str, *, quantity: Decimal | None = None,
                           limit_price: Decimal | None = None, stop_price: Decimal | None = None) -> Order:
        current = await self._fetch(broker_order_id)
        if not current.status.is_open:
            raise OrderRejected(f"{self.id}: order {broker_order_id} is {current.status.value}; nothing to modify")
        group = current.oco_group
        if group is not None and (other := next((o for o in await self.open_orders() if o.oco_group == group
                                                 and o.broker_order_id != broker_order_id), None)):
            return await self._replace_oco(current, other, quantity, limit_price, stop_price)
        trail = self._trails.get(broker_order_id)
        if trail is not None and (stop_price is not None or limit_price is not None):
            raise OrderRejected(f"{self.id}: order {broker_order_id} is a trailing stop the exchange moves itself")
        symbol, markets = self._symbol_of[broker_order_id], self._markets()
        new_cid = f"{current.client_order_id[:32]}-{uuid.uuid4().hex[:3]}"
        request = OrderRequest(
            client_order_id=new_cid, account=self.account, symbol=current.symbol, side=current.side,
            quantity=quantity or current.quantity - current.filled_quantity, order_type=current.order_type,
            limit_price=limit_price or current.limit_price, stop_price=stop_price or current.stop_price,
            time_in_force=current.time_in_force, trail=trail)
        price = request.limit_price or request.stop_price
        amount = markets.size(symbol, request.quantity, price, market_order=trail is not None)
        p = cm.placement(request, symbol, amount, markets)
        self.journal.record(new_cid, "sending", symbol=symbol, replaces=broker_order_id)

        async def send() -> Order:
            if self.exchange.has.get("editOrder"):
                data = await self.calls.once(f"{self.id} modify {broker_order_id}", lambda: self.exchange.edit_order(
                    broker_order_id, symbol, p.type, p.side, float(p.amount),
                    None if p.price is None else float(p.price), p.params))
            else:
                await self.cancel_order(broker_order_id)
                data = await self.calls.once(f"{self.id} modify {broker_order_id}", lambda: self.exchange.create_order(
                    symbol, p.type, p.side, float(p.amount), None if p.price is None else float(p.price), p.params))
            order = self._order(data)
            self.journal.record(new_cid, "placed", order_id=order.broker_order_id)
            self.reports.remember(order)
            return order

        return await place_once(self.id, new_cid, send, lambda: self.find_order(new_cid), self.policy, self._sleep)

    async def open_orders(self) -> list[Order]:
        data = await self.calls.safe(f"{self.id} open orders", lambda: self.exchange.fetch_open_orders())
        return [order for item in data if (order := self._order(item)).status.is_open]

    # -- positions, account, fills -----------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        return await self.portfolio.positions()

    async def account_state(self) -> AccountState:
        return await self.portfolio.account_state()

    async def fills(self, since: datetime | None = None) -> list[Fill]:
        held = set(self.portfolio.held(await self.portfolio.balances()))
        return await self.portfolio.fills(self._traded() | held, since, self._client_id)

    async def close_position(self, symbol: str) -> Order | None:
        """Cancel the market's open orders (their locked balance), then sell the holding at market."""
        markets = self._markets()
        ccxt_symbol = markets.symbol(symbol)
        for order in await self.open_orders():
            if order.symbol == markets.ticker(ccxt_symbol):
                await self.cancel_order(order.broker_order_id)
        held = self.portfolio.held(await self.portfolio.balances()).get(ccxt_symbol)
        if not held:
            return None
        cid = f"tdx{uuid.uuid4().hex[:29]}"
        request = OrderRequest(client_order_id=cid, account=self.account, symbol=markets.ticker(ccxt_symbol),
                               side=Side.SELL, quantity=held, reduce_only=True)
        return await self._place(cm.placement(request, ccxt_symbol, held, markets))

    async def flatten(self) -> FlattenReport:
        """Cancel every working order (entries first: their exits go with them), then close every holding."""
        return await cancel_then_close(self)

    # -- market data -------------------------------------------------------------------------------------

    async def bars(self, symbol: str, timeframe_seconds: int, start: datetime, end: datetime) -> list[Bar]:
        """Closed bars of `timeframe_seconds` starting in [start, end), oldest first, from `fetch_ohlcv`."""
        if not self.exchange.has.get("fetchOHLCV"):
            raise NotImplementedError(f"{self.id} serves no candles through ccxt")
        market = self._markets().symbol(symbol)
        interval, base = history.interval_for(self.exchange.timeframes or {}, timeframe_seconds,
                                              self.exchange.parse_timeframe)

        async def fetch(iv: str, since: int, limit: int) -> list[list[Any]]:
            return await self.calls.safe(f"{self.id} candles {market} {iv}",
                                         lambda: self.exchange.fetch_ohlcv(market, iv, since, limit))

        return await history.fetch_bars(fetch, interval, base, symbol, timeframe_seconds, start, end, self.clock())


def build(account: str, settings: CcxtSettings, context: BrokerContext) -> CcxtBroker:
    """The registry's factory (the exchange's own clock stamps its fills)."""
    return CcxtBroker(account, settings, context.state_dir)
