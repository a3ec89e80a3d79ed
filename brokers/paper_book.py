"""Pure parts of the paper broker: accounting (positions, cash, fees, fills), request checks, state file.

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

The state file is JSON (Decimals as strings) validated by `PaperState`, rewritten atomically with
`write_atomic`; `read_state` refuses a corrupt file with `PaperStateError` instead of resetting money.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brokers.base import BrokerError, OrderRejected
from daemon.domain import ZERO, AccountState, Fill, Order, OrderRequest, OrderType, Position, Side

ONE = Decimal(1)
HAS_LIMIT = (OrderType.LIMIT, OrderType.STOP_LIMIT)
HAS_STOP = (OrderType.STOP, OrderType.STOP_LIMIT)
_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)\d!$")  # ES1!, M2K2!
_DATED = re.compile(r"^(?P<root>[A-Z0-9]*[A-Z])[FGHJKMNQUVXZ]\d{1,2}$")  # ESZ6, NQH26, M2KZ6


def symbol_root(symbol: str) -> str:
    """The futures root of a ticker: "CME_MINI:ES1!" -> "ES", "ESZ6" / "ESZ26" -> "ES", "AAPL" -> "AAPL"."""
    bare = symbol.rsplit(":", 1)[-1].strip().upper()
    for pattern in (_CONTINUOUS, _DATED):
        match = pattern.match(bare)
        if match:
            return match.group("root")
    return bare


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
    holdings: dict[str, HoldingState]
    last_prices: dict[str, Decimal]
    fills: list[Fill]


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
        self.fills: list[Fill] = []

    def multiplier(self, symbol: str) -> Decimal:
        """Point value: the whole ticker if configured, else its futures root, else 1."""
        bare = symbol.rsplit(":", 1)[-1].strip().upper()
        if bare in self.multipliers:
            return self.multipliers[bare]
        return self.multipliers.get(symbol_root(symbol), ONE)

    def quantity(self, symbol: str) -> Decimal:
        holding = self.holdings.get(symbol)
        return holding.quantity if holding else ZERO

    def last_price(self, symbol: str) -> Decimal | None:
        return self.last_prices.get(symbol)

    def mark(self, symbol: str, price: Decimal) -> None:
        self.last_prices[symbol] = price

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
        self.fills.append(fill)
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

    def fills_since(self, since: datetime | None) -> list[Fill]:
        if since is None:
            return list(self.fills)
        return [fill for fill in self.fills if fill.filled_at >= since]

    def prune_fills(self, keep: int) -> None:
        if len(self.fills) > keep:
            del self.fills[: len(self.fills) - keep]

    def snapshot(self) -> BookState:
        return BookState(
            cash=self.cash,
            fees=self.fees,
            realized_pnl=self.realized_pnl,
            holdings={
                symbol: HoldingState(
                    quantity=h.quantity, average_price=h.average_price, realized_pnl=h.realized_pnl
                )
                for symbol, h in self.holdings.items()
            },
            last_prices=dict(self.last_prices),
            fills=list(self.fills),
        )

    @classmethod
    def restore(cls, state: BookState, multipliers: dict[str, Decimal]) -> PaperBook:
        book = cls(state.cash, multipliers)
        book.fees = state.fees
        book.realized_pnl = state.realized_pnl
        book.holdings = {
            symbol: Holding(h.quantity, h.average_price, h.realized_pnl)
            for symbol, h in state.holdings.items()
        }
        book.last_prices = dict(state.last_prices)
        book.fills = list(state.fills)
        return book


def check_request(request: OrderRequest, account: str, book: PaperBook) -> None:
    """Refuse (OrderRejected) a request the paper broker cannot accept; changes nothing."""

    def reject(reason: str) -> NoReturn:
        raise OrderRejected(reason)

    kind, symbol = request.order_type, request.symbol
    if request.account != account:
        reject(f"order for account {request.account!r} sent to paper account {account!r}")
    if not symbol.strip():
        reject("order has no symbol")
    if kind in HAS_LIMIT and request.limit_price is None:
        reject(f"{kind} order needs a limit_price")
    if kind in HAS_STOP and request.stop_price is None:
        reject(f"{kind} order needs a stop_price")
    if kind not in HAS_LIMIT and request.limit_price is not None:
        reject(f"{kind} order takes no limit_price")
    if kind not in HAS_STOP and request.stop_price is not None:
        reject(f"{kind} order takes no stop_price")
    for label in ("limit_price", "stop_price", "take_profit", "stop_loss", "reference_price"):
        value = getattr(request, label)
        if value is not None and value <= ZERO:
            reject(f"{label} must be positive, got {value}")
    current = request.reference_price or book.last_price(symbol)
    if kind is OrderType.MARKET and current is None:
        reject(f"no price known for {symbol}: include price in the alert")
    if request.reduce_only:
        held = book.quantity(symbol)
        if held == ZERO or (held > 0) == (request.side is Side.BUY) or request.quantity > abs(held):
            reject(f"reduce-only {request.side} of {request.quantity} {symbol} would not reduce {held}")
    if request.take_profit is None and request.stop_loss is None:
        return
    entry = {
        OrderType.MARKET: current,
        OrderType.LIMIT: request.limit_price,
        OrderType.STOP: request.stop_price,
        OrderType.STOP_LIMIT: request.limit_price,
    }[kind]
    sign = request.side.sign
    if request.take_profit is not None and entry is not None and (request.take_profit - entry) * sign <= 0:
        where = "above" if sign > 0 else "below"
        reject(f"take_profit {request.take_profit} must be {where} the {request.side} entry {entry}")
    if request.stop_loss is not None and entry is not None and (entry - request.stop_loss) * sign <= 0:
        where = "below" if sign > 0 else "above"
        reject(f"stop_loss {request.stop_loss} must be {where} the {request.side} entry {entry}")


class PaperStateError(BrokerError):
    """The paper state file exists but cannot be used; money is never reset silently."""


class Bracket(BaseModel):
    """Exits to open when an entry fills."""

    model_config = ConfigDict(extra="forbid")

    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None


class PaperState(BaseModel):
    """The whole JSON state file of one paper account."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    account: str
    next_order: int = Field(ge=1)
    next_fill: int = Field(ge=1)
    orders: list[Order]
    brackets: dict[str, Bracket]  # by entry broker order id, for entries that have not filled yet
    triggered: list[str]  # stop-limit orders whose stop has been hit (now resting limits)
    book: BookState


def read_state(path: Path, account: str) -> PaperState | None:
    """The saved state, or None if there is no file yet; anything unusable raises `PaperStateError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PaperStateError(f"cannot read paper state file {path}: {exc}") from exc
    try:
        state = PaperState.model_validate_json(text)
    except ValidationError as exc:
        raise PaperStateError(
            f"paper state file {path} is corrupt ({exc.error_count()} error(s), first: "
            f"{exc.errors()[0]['msg']}); fix or move it away, it is not reset automatically"
        ) from exc
    if state.account != account:
        raise PaperStateError(f"paper state file {path} is for account {state.account!r}, not {account!r}")
    return state


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically: a temp file in the same directory, then `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
