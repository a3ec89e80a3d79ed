"""The ccxt adapter's reads of the account: spot balances as positions, account state, and fills from trades.

A spot account holds currencies, not positions: each currency with a market against the account's quote
currency (`BTC` with `quote_currency = "USDT"` -> `BTCUSDT`) is a long position of its balance (free +
locked), rounded down to the lot step; a holding below the market's minimum quantity is dust that cannot
be sold and is not reported. Its average price comes from the account's own trades of that market (a part
they do not explain, e.g. a deposit, is valued at the mark). Cash is the quote currency's balance; equity is
cash plus the positions at the mark. Currencies without a market against the quote currency are not valued.

Fills come from the trade history (Binance `myTrades`) or the stream (`fill_of`). The history needs a
market: the markets read are those configured (`symbols`), those held, and those this daemon has traded
(its order journal).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.ccxt import models as cm
from brokers.ccxt.calls import Caller
from brokers.ccxt.markets import Markets, dec
from config.brokers import CcxtSettings
from daemon.domain import ZERO, AccountState, Fill, Position

log = logging.getLogger(__name__)
TRADES_PAGE = 1000
MAX_PAGES = 20


class Portfolio:
    def __init__(self, account: str, exchange: Any, calls: Caller, settings: CcxtSettings,
                 clock: Callable[[], datetime]) -> None:
        self.account, self.exchange, self.calls = account, exchange, calls
        self.quote = settings.quote_currency
        self.clock = clock
        self.markets: Markets | None = None

    def _markets(self) -> Markets:
        assert self.markets is not None, "connect() first"
        return self.markets

    async def balances(self) -> dict[str, Decimal]:
        data = await self.calls.safe(f"{self.exchange.id} balance", lambda: self.exchange.fetch_balance())
        return {str(k): d for k, v in (data.get("total") or {}).items() if (d := dec(v)) is not None and d > 0}

    async def mark(self, symbol: str) -> Decimal | None:
        ticker = await self.calls.safe(f"{self.exchange.id} ticker {symbol}",
                                       lambda: self.exchange.fetch_ticker(symbol))
        return dec(ticker.get("last")) or dec(ticker.get("close"))

    def held(self, balances: dict[str, Decimal]) -> dict[str, Decimal]:
        """ccxt symbol -> tradable quantity of every holding with a market against the quote currency."""
        markets, out = self._markets(), {}
        for currency, total in balances.items():
            symbol = markets.pair(currency, self.quote) if currency != self.quote else None
            if symbol is None:
                continue
            quantity = markets.round_quantity(symbol, total)
            minimum = dec(((markets.market(symbol).get("limits") or {}).get("amount") or {}).get("min"))
            if quantity > 0 and (minimum is None or quantity >= minimum):
                out[symbol] = quantity
        return out

    async def trades(self, symbol: str, since: datetime | None) -> list[dict[str, Any]]:
        """The account's trades of one market since `since` (all the exchange returns if None), oldest first."""
        out: list[dict[str, Any]] = []
        seen: set[Any] = set()
        start = cm.millis(since) if since is not None else None
        for _ in range(MAX_PAGES):
            page = await self.calls.safe(
                f"{self.exchange.id} trades {symbol}",
                lambda s=start: self.exchange.fetch_my_trades(symbol, s, TRADES_PAGE))  # type: ignore[misc]
            new = [t for t in page if t["id"] not in seen]
            out += new
            seen.update(t["id"] for t in new)
            if len(page) < TRADES_PAGE or not new:
                break
            start = int(page[-1]["timestamp"])
        return out

    async def positions(self) -> list[Position]:
        markets = self._markets()
        out = []
        for symbol, quantity in self.held(await self.balances()).items():
            average, explained = cm.average_cost(await self.trades(symbol, None), quantity)
            out.append(cm.to_position(self.account, markets.ticker(symbol), quantity, average, explained,
                                      await self.mark(symbol)))
        return out

    async def account_state(self) -> AccountState:
        balances = await self.balances()
        free = await self.calls.safe(f"{self.exchange.id} balance", lambda: self.exchange.fetch_free_balance())
        cash = balances.get(self.quote, ZERO)
        value = unrealized = ZERO
        for position in await self.positions():
            value += position.quantity * (position.market_price or position.average_price)
            unrealized += position.unrealized_pnl
        return AccountState(account=self.account, broker="ccxt", currency=self.quote, cash=cash,
                            equity=cash + value, buying_power=dec(free.get(self.quote)) or ZERO,
                            unrealized_pnl=unrealized, as_of=self.clock())

    async def fills(self, symbols: Iterable[str], since: datetime | None,
                    client_id: Callable[[str, str], Any]) -> list[Fill]:
        """Fills of `symbols` since `since`, oldest first; `client_id(order id, symbol)` awaits the engine's
        client order id of an order."""
        out: list[Fill] = []
        rates: dict[str, Decimal] = {}
        for symbol in sorted(set(symbols)):
            for trade in await self.trades(symbol, since):
                if since is not None and cm.when(trade.get("timestamp"), self.clock()) < since:
                    continue
                out.append(await self.fill_of(trade, client_id, rates))
        out.sort(key=lambda f: f.filled_at)
        return out

    async def fill_of(self, trade: dict[str, Any], client_id: Callable[[str, str], Any],
                      rates: dict[str, Decimal] | None = None) -> Fill:
        """One ccxt trade (from the trade history or the stream) as a Fill, its fees in the quote currency."""
        markets, symbol = self._markets(), str(trade["symbol"])
        market, rates = markets.market(symbol), {} if rates is None else rates
        await self._rates_for(trade, market, rates)
        fee = cm.fee_in_quote(trade, str(market["quote"]), str(market["base"]), Decimal(str(trade["price"])), rates)
        cid = await client_id(str(trade.get("order") or ""), symbol)
        return cm.to_fill(trade, self.account, markets, cid, fee, self.clock())

    async def _rates_for(self, trade: dict[str, Any], market: dict[str, Any], rates: dict[str, Decimal]) -> None:
        """The quote-currency price of a fee paid in a third currency (Binance BNB discounts)."""
        for fee in trade.get("fees") or ([trade["fee"]] if trade.get("fee") else []):
            currency = str((fee or {}).get("currency") or "")
            if currency in (market["base"], market["quote"], "") or currency in rates:
                continue
            pair = self._markets().pair(currency, str(market["quote"]))
            price = await self.mark(pair) if pair else None
            if price is None:
                log.warning("%s: fee in %s cannot be valued in %s; counted as 0", self.account, currency,
                            market["quote"])
            rates[currency] = price or ZERO
