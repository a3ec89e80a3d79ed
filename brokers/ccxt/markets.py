"""An exchange's spot markets as traderd sees them: TradingView tickers to ccxt symbols, and order size checks.

TradingView names a pair by concatenating base and quote (`BINANCE:BTCUSDT`); ccxt names it `BTC/USDT`.
`Markets` maps both ways over the markets ccxt loaded (`BTCUSDT`, `BTC/USDT`, `BTC-USDT` all find it), and
the engine keeps seeing the TradingView form (`BTCUSDT`) in orders, fills and positions.

`Markets.size` applies the market's rules before anything is sent: the quantity is rounded down to the
lot step (`amount_to_precision`, Binance LOT_SIZE stepSize), and an order below the minimum quantity
(LOT_SIZE / MARKET_LOT_SIZE minQty) or the minimum notional (MIN_NOTIONAL / NOTIONAL minNotional) is
refused with the numbers, as the exchange itself would refuse it, so the trader reads why.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt.async_support as ccxt
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from brokers.base import OrderRejected, UnknownSymbol
from brokers.symbols import split_exchange


def dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def plain(value: Decimal) -> str:
    """A Decimal as the exchange wants it: no exponent, no trailing zeros."""
    text = f"{value.normalize():f}"
    return text


def _filters(market: dict[str, Any]) -> dict[str, dict[str, Any]]:
    info = market.get("info") or {}
    raw = info.get("filters") if isinstance(info, dict) else None
    return {str(f.get("filterType")): f for f in raw or [] if isinstance(f, dict)}


class Markets:
    """The spot markets of one exchange (what `load_markets` returned), quoted in any currency."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self._by_name: dict[str, str] = {}  # every accepted spelling -> ccxt symbol
        for symbol, market in (exchange.markets or {}).items():
            if not market.get("spot"):
                continue
            base, quote = str(market.get("base", "")), str(market.get("quote", ""))
            for name in (symbol, f"{base}{quote}", f"{base}-{quote}", str(market.get("id", ""))):
                self._by_name.setdefault(name.upper(), symbol)

    def symbol(self, ticker: str) -> str:
        """The ccxt symbol of a TradingView ticker; `UnknownSymbol` (nothing sent) for a pair not listed."""
        _, bare = split_exchange(ticker.strip())
        found = self._by_name.get(bare.upper())
        if found is None:
            raise UnknownSymbol(f"{ticker} is not a spot market on {self.exchange.id}; nothing was sent")
        return found

    def market(self, symbol: str) -> dict[str, Any]:
        market: dict[str, Any] = self.exchange.markets[symbol]
        return market

    def ticker(self, symbol: str) -> str:
        """The TradingView spelling of a ccxt symbol (`BTC/USDT` -> `BTCUSDT`)."""
        market = self.market(symbol)
        return f"{market['base']}{market['quote']}"

    def pair(self, base: str, quote: str) -> str | None:
        symbol = f"{base}/{quote}"
        market = (self.exchange.markets or {}).get(symbol)
        return symbol if market and market.get("spot") else None

    def step(self, symbol: str) -> Decimal | None:
        """The lot step: ccxt's `precision.amount`, which is a step (TICK_SIZE mode) or a count of decimals."""
        amount = dec((self.market(symbol).get("precision") or {}).get("amount"))
        if amount is None or self.exchange.precisionMode == TICK_SIZE:
            return amount
        return Decimal(1).scaleb(-int(amount)) if self.exchange.precisionMode == DECIMAL_PLACES else None

    def round_quantity(self, symbol: str, quantity: Decimal) -> Decimal:
        """Down to the lot step (never more than asked); 0 below one step."""
        try:
            return Decimal(self.exchange.amount_to_precision(symbol, plain(quantity)))
        except ccxt.InvalidOrder:  # "must be greater than minimum amount precision"
            return Decimal(0)

    def after_fee(self, symbol: str, bought: Decimal) -> Decimal:
        """What a buy of `bought` leaves to sell when the fee is paid in the base currency, at the market's
        larger of its maker and taker rates, rounded down to the step."""
        market = self.market(symbol)
        rate = max(dec(market.get("taker")) or Decimal(0), dec(market.get("maker")) or Decimal(0))
        return self.round_quantity(symbol, bought * (1 - rate))

    def price(self, symbol: str, price: Decimal) -> str:
        return str(self.exchange.price_to_precision(symbol, plain(price)))

    def size(self, symbol: str, quantity: Decimal, price: Decimal | None, *, market_order: bool) -> Decimal:
        """The quantity to send: rounded down to the step, refused below the minimum quantity or notional."""
        market = self.market(symbol)
        filters = _filters(market)
        rounded = self.round_quantity(symbol, quantity)
        lot = filters.get("MARKET_LOT_SIZE" if market_order and "MARKET_LOT_SIZE" in filters else "LOT_SIZE", {})
        min_qty = dec(lot.get("minQty")) or dec(((market.get("limits") or {}).get("amount") or {}).get("min"))
        name = self.ticker(symbol)
        if rounded <= 0 or (min_qty is not None and min_qty > 0 and rounded < min_qty):
            where = " (LOT_SIZE)" if lot else ""
            raise OrderRejected(
                f"{name}: quantity {plain(quantity)} is below the exchange's minimum {plain(min_qty or Decimal(0))}"
                f"{where} (step {plain(self.step(symbol) or Decimal(0))}); nothing was sent")
        max_qty = dec(lot.get("maxQty")) or dec(((market.get("limits") or {}).get("amount") or {}).get("max"))
        if max_qty is not None and max_qty > 0 and rounded > max_qty:
            raise OrderRejected(f"{name}: quantity {plain(rounded)} is above the exchange's maximum "
                                f"{plain(max_qty)}; nothing was sent")
        notional_filter = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        min_notional = dec(notional_filter.get("minNotional")) or dec(
            ((market.get("limits") or {}).get("cost") or {}).get("min"))
        applies = not market_order or notional_filter.get("applyMinToMarket", notional_filter.get("applyToMarket",
                                                                                                 True))
        if price is not None and min_notional and applies and rounded * price < min_notional:
            kind = next((k for k in ("NOTIONAL", "MIN_NOTIONAL") if k in filters), "")
            raise OrderRejected(
                f"{name}: order value {plain(rounded * price)} {market['quote']} ({plain(rounded)} x {plain(price)})"
                f" is below the exchange's minimum notional {plain(min_notional)}{f' ({kind})' if kind else ''};"
                " nothing was sent")
        return rounded
