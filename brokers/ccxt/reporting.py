"""How the ccxt adapter hears of fills and order changes: its polling round and its account stream's events.

`CcxtReporting` is that half of `CcxtBroker` (the host provides orders, fills and the report gate).
A polling round pushes new fills (the trade history since the last one seen, with 2 s of overlap), then
the changes of the orders the adapter knows open, and the end of each one that left the open list. The
stream (`brokers.ccxt.stream.UserStream`, Binance) pushes each trade and order update as it happens.
Both go through the one `ReportGate`, so an overlap never doubles a fill.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from brokers.base import OrderNotFound
from brokers.ccxt.calls import Caller
from brokers.ccxt.portfolio import Portfolio
from brokers.ccxt.stream import UserStream
from brokers.stream import Backoff
from brokers.updates import Feed, ReportGate
from config.brokers import CcxtSettings
from daemon.domain import Fill, Order


class CcxtReporting:
    """The polling and streaming half of `CcxtBroker` (module docstring)."""

    id: str
    exchange: Any
    settings: CcxtSettings
    calls: Caller
    portfolio: Portfolio
    updates: Feed
    reports: ReportGate
    _symbol_of: dict[str, str]
    _cids: dict[str, str]
    _watch: set[str]
    _fills_after: datetime | None

    if TYPE_CHECKING:  # provided by CcxtBroker
        def _order(self, data: dict[str, Any]) -> Order: ...
        async def _fetch(self, broker_order_id: str) -> Order: ...
        async def fills(self, since: datetime | None = None) -> list[Fill]: ...

    def _init_stream(self, name: str, backoff: Backoff | None) -> UserStream:
        return UserStream(name, self.exchange, on_trade=self._streamed_trade, on_order=self._streamed_order,
                          connect_timeout=self.settings.timeout_seconds, backoff=backoff,
                          on_up=self.updates.wake, on_down=self.updates.wake)

    async def _client_id(self, order_id: str, symbol: str) -> str:
        if order_id and order_id not in self._cids:
            self._symbol_of.setdefault(order_id, symbol)
            try:
                await self._fetch(order_id)
            except OrderNotFound:
                self._cids[order_id] = ""
        return self._cids.get(order_id, "")

    async def _streamed_trade(self, trade: dict[str, Any]) -> None:
        await self.reports.fill(await self.portfolio.fill_of(trade, self._client_id))

    async def _streamed_order(self, data: dict[str, Any]) -> None:
        await self.reports.order(self._order(data))

    async def poll_once(self) -> None:
        """Push new fills, then the changes of the orders this adapter knows open (placed, or seen by
        `open_orders`), and the end of each one that left the open list."""
        since = self._fills_after
        for fill in await self.fills(since - timedelta(seconds=2) if since else None):
            await self.reports.fill(fill)
            if self._fills_after is None or fill.filled_at > self._fills_after:
                self._fills_after = fill.filled_at
        watched = set(self._watch)
        open_now = []  # per market: Binance weighs an all-markets openOrders 80, one market 6
        for symbol in sorted({self._symbol_of[i] for i in watched if i in self._symbol_of}):
            data = await self.calls.safe(f"{self.id} open orders {symbol}",
                                         lambda s=symbol: self.exchange.fetch_open_orders(s))  # type: ignore[misc]
            open_now += [order for item in data if (order := self._order(item)).status.is_open]
        for order in open_now:
            await self.reports.order(order)
        for order_id in watched - {o.broker_order_id for o in open_now}:
            order = await self._fetch(order_id)
            await self.reports.order(order)
            if not order.status.is_open:
                self._watch.discard(order_id)
