"""The paper broker's accounting: positions, cash, fees and P&L, and its state as JSON.

Cash model (one per symbol, chosen by its point-value multiplier):

- multiplier 1 (stocks, ETFs, crypto) — cash ledger: a buy pays `qty * price` out of cash, a sell receives it,
  commissions are paid from cash. Such a position contributes its market value `qty * last` to equity.
- multiplier > 1 (futures) — balance model: only realized P&L and commissions move cash (the "balance");
  such a position contributes its open P&L `(last - average) * qty * multiplier` to equity.

Either way `equity = starting_cash + realized_pnl + unrealized_pnl - fees`, and `buying_power = equity`
(the paper broker models no margin). Realized P&L is gross of fees and uses the average-cost method:
adding to a position re-averages the price, reducing it realizes `(fill - average) * closed * multiplier`
(sign-adjusted for shorts), and a fill that flips the position through zero closes the old side and opens
the remainder at the fill price.

The files (journal and checkpoint) are `brokers/paper/ledger.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from brokers.symbols import POINT_VALUES, futures_root, symbol_root
from daemon.domain import ZERO, AccountState, Fill, Position

ONE = Decimal(1)




class HoldingState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Decimal
    average_price: Decimal
    realized_pnl: Decimal


class BookState(BaseModel):
    """The JSON form of a `PaperBook` (Decimals serialise as strings)."""

    model_config = ConfigDict(extra="forbid")

    cash: Decimal
    fees: Decimal
    realized_pnl: Decimal
    holdings: dict[str, HoldingState] = Field(default_factory=dict)
    last_prices: dict[str, Decimal] = Field(default_factory=dict)
    fills: list[Fill] = Field(default_factory=list)  # in version-1 state files and in journal lines


@dataclass
class Holding:
    """One symbol's signed quantity, average price and realized P&L (kept after the position goes flat)."""

    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    def apply(self, signed_qty: Decimal, price: Decimal, multiplier: Decimal) -> Decimal:
        """Apply a fill of `signed_qty` at `price`; returns the P&L it realized."""
        held = self.quantity
        if held == ZERO or (held > 0) == (signed_qty > 0):
            new = held + signed_qty
            self.average_price = (self.average_price * abs(held) + price * abs(signed_qty)) / abs(new)
            self.quantity = new
            return ZERO
        closed = min(abs(signed_qty), abs(held))
        direction = ONE if held > 0 else -ONE
        pnl = (price - self.average_price) * closed * direction * multiplier
        new = held + signed_qty
        if new == ZERO:
            self.average_price = ZERO
        elif (new > 0) != (held > 0):
            self.average_price = price  # flipped through zero: the remainder opens at the fill price
        self.quantity = new
        self.realized_pnl += pnl
        return pnl


class PaperBook:
    """Positions and money of one paper account. Not thread- or task-safe: the broker serialises calls."""

    def __init__(self, starting_cash: Decimal, multipliers: dict[str, Decimal]) -> None:
        self.multipliers = {key.strip().upper(): value for key, value in multipliers.items()}
        self.cash = starting_cash
        self.fees = ZERO
        self.realized_pnl = ZERO
        self.holdings: dict[str, Holding] = {}
        self.last_prices: dict[str, Decimal] = {}
        self.touched: set[str] = set()  # symbols whose holding or last price changed since the last commit

    def multiplier(self, symbol: str) -> Decimal:
        """Point value: the whole ticker if configured, else its root if configured, else the CME point value
        of a futures ticker (`ES1!`, `ESZ6`), else 1."""
        bare = symbol.rsplit(":", 1)[-1].strip().upper()
        if bare in self.multipliers:
            return self.multipliers[bare]
        root = symbol_root(symbol)
        if root in self.multipliers:
            return self.multipliers[root]
        return POINT_VALUES.get(root, ONE) if futures_root(symbol) else ONE

    def quantity(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        return holding.quantity if holding else ZERO

    def last_price(self, symbol: str) -> Decimal | None:
        return self.last_prices.get(symbol)

    def mark(self, symbol: str, price: Decimal) -> None:
        self.last_prices[symbol] = price
        self.touched.add(symbol)

    def apply_fill(self, fill: Fill) -> Decimal:
        """Book a fill: position, realized P&L, fees and cash. Returns the P&L it realized."""
        multiplier = self.multiplier(fill.symbol)
        signed = fill.quantity * fill.side.sign
        holding = self.holdings.setdefault(fill.symbol, Holding())
        realized = holding.apply(signed, fill.price, multiplier)
        self.realized_pnl += realized
        self.fees += fill.commission
        if multiplier == ONE:
            self.cash -= signed * fill.price
        else:
            self.cash += realized
        self.cash -= fill.commission
        self.touched.add(fill.symbol)
        return realized

    def open_symbols(self) -> list[str]:
        return [symbol for symbol, holding in self.holdings.items() if holding.quantity != ZERO]

    def unrealized(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        last = self.last_prices.get(symbol)
        if holding is None or holding.quantity == ZERO or last is None:
            return ZERO
        return (last - holding.average_price) * holding.quantity * self.multiplier(symbol)

    def positions(self, account: str) -> list[Position]:
        """Open (non-zero) positions with their mark, open P&L and the symbol's realized P&L so far."""
        result = []
        for symbol in self.open_symbols():
            holding = self.holdings[symbol]
            result.append(
                Position(
                    account=account,
                    symbol=symbol,
                    quantity=holding.quantity,
                    average_price=holding.average_price,
                    market_price=self.last_prices.get(symbol),
                    unrealized_pnl=self.unrealized(symbol),
                    realized_pnl=holding.realized_pnl,
                )
            )
        return result

    def account_state(self, account: str, broker: str, as_of: datetime) -> AccountState:
        equity = self.cash
        unrealized = ZERO
        for symbol in self.open_symbols():
            open_pnl = self.unrealized(symbol)
            unrealized += open_pnl
            if self.multiplier(symbol) == ONE:
                holding = self.holdings[symbol]
                last = self.last_prices.get(symbol, holding.average_price)
                equity += holding.quantity * last
            else:
                equity += open_pnl
        return AccountState(
            account=account,
            broker=broker,
            cash=self.cash,
            equity=equity,
            buying_power=equity,
            realized_pnl=self.realized_pnl,
            unrealized_pnl=unrealized,
            fees=self.fees,
            as_of=as_of,
        )

    def holding_state(self, symbol: str) -> HoldingState:
        h = self.holdings[symbol]
        return HoldingState(quantity=h.quantity, average_price=h.average_price, realized_pnl=h.realized_pnl)

    def apply_change(self, change: BookState) -> None:
        """Take the money, holdings and prices of a journal line or state file."""
        self.cash, self.fees, self.realized_pnl = change.cash, change.fees, change.realized_pnl
        for symbol, h in change.holdings.items():
            self.holdings[symbol] = Holding(h.quantity, h.average_price, h.realized_pnl)
        self.last_prices.update(change.last_prices)

    def state(self, symbols: Iterable[str] | None = None) -> dict[str, Any]:
        """The fields of a `BookState`, with only these symbols' holdings and last prices if given."""
        held = self.holdings if symbols is None else [s for s in symbols if s in self.holdings]
        priced = self.last_prices if symbols is None else [s for s in symbols if s in self.last_prices]
        return {
            "cash": self.cash,
            "fees": self.fees,
            "realized_pnl": self.realized_pnl,
            "holdings": {symbol: self.holding_state(symbol) for symbol in held},
            "last_prices": {symbol: self.last_prices[symbol] for symbol in priced},
        }

    @classmethod
    def restore(cls, state: BookState, multipliers: dict[str, Decimal]) -> PaperBook:
        book = cls(state.cash, multipliers)
        book.apply_change(state)
        return book
