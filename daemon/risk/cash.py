"""Cash-account settlement (T+1): settled cash, good-faith violations and purchases beyond settled cash.

Sources:
- SEC Rule 15c6-1 (T+1 since 2024-05-28) and Regulation T 220.8: in a cash account a security bought must be
  paid for with settled funds before it is sold, else a good-faith violation.

Pure functions only: fills in, numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from daemon.calendar import add_business_days, next_business_day, trade_date
from daemon.domain import ZERO, Fill, OrderRequest, Side

SETTLEMENT_DAYS = 1  # T+1


def settlement_date(trade_day: date, days: int = SETTLEMENT_DAYS) -> date:
    """T+n on the business-day calendar (a trade on a holiday/weekend settles from the next business day)."""
    return add_business_days(trade_day, days)


@dataclass
class _CashLot:
    qty: Decimal
    funds_settle_on: date | None  # when the money that paid for it settles; None = paid with settled cash


class CashDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    warning: bool
    rule: str | None  # "good_faith_violation" | "unsettled_funds_purchase" | None
    settled_cash: Decimal
    unsettled_cash: Decimal
    message: str


@dataclass
class CashLedger:
    """Replays a cash account's fills to know settled cash and which holdings were bought with unsettled
    proceeds (and when those proceeds settle)."""

    settled: Decimal
    pending: list[tuple[date, Decimal]] = field(default_factory=list)  # (settles on, amount) of sale proceeds
    lots: dict[str, list[_CashLot]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def _settle(self, day: date) -> None:
        due = [(d, a) for d, a in self.pending if d <= day]
        self.pending = [(d, a) for d, a in self.pending if d > day]
        self.settled += sum((a for _, a in due), ZERO)

    def unsettled(self, day: date) -> Decimal:
        self._settle(day)
        return sum((a for _, a in self.pending), ZERO)

    def buy(self, symbol: str, qty: Decimal, cost: Decimal, day: date) -> str | None:
        self._settle(day)
        use_settled = min(self.settled, cost)
        self.settled -= use_settled
        need = cost - use_settled
        settle_on: date | None = None
        problem: str | None = None
        self.pending.sort()
        while need > 0 and self.pending:
            d, amount = self.pending[0]
            take = min(amount, need)
            need -= take
            settle_on = d
            self.pending[0] = (d, amount - take)
            if self.pending[0][1] == 0:
                self.pending.pop(0)
        if need > 0:
            self.settled -= need  # a cash debit: paid for with money the account does not have
            problem = "purchase_beyond_cash"
            settle_on = settle_on or next_business_day(day)
        self.lots.setdefault(symbol, []).append(_CashLot(qty=qty, funds_settle_on=settle_on))
        return problem

    def sell(self, symbol: str, qty: Decimal, proceeds: Decimal, day: date) -> str | None:
        """Record a sale; return "good_faith_violation" when it sells stock not yet paid for with settled funds."""
        self._settle(day)
        problem: str | None = None
        left = qty
        lots = self.lots.get(symbol, [])
        while left > 0 and lots:
            lot = lots[0]
            take = min(lot.qty, left)
            if lot.funds_settle_on is not None and lot.funds_settle_on > day:
                problem = "good_faith_violation"
            lot.qty -= take
            left -= take
            if lot.qty == 0:
                lots.pop(0)
        self.pending.append((settlement_date(day), proceeds))
        return problem

    @classmethod
    def replay(cls, fills: Sequence[Fill], starting_settled_cash: Decimal) -> CashLedger:
        ledger = cls(settled=starting_settled_cash)
        for f in sorted(fills, key=lambda x: x.filled_at):
            day = trade_date(f.filled_at)
            notional = f.quantity * f.price
            if f.side is Side.BUY:
                problem = ledger.buy(f.symbol, f.quantity, notional + f.commission, day)
            else:
                problem = ledger.sell(f.symbol, f.quantity, notional - f.commission, day)
            if problem:
                ledger.violations.append(f"{day.isoformat()} {f.side} {f.quantity} {f.symbol}: {problem}")
        return ledger


def check_cash_order(
    order: OrderRequest,
    fills: Sequence[Fill],
    starting_settled_cash: Decimal,
    at: datetime,
    allow_unsettled: bool = False,
) -> CashDecision:
    """Cash account: refuse a sale that would be a good-faith violation and a purchase beyond settled cash.

    With `allow_unsettled` the order is allowed and the decision carries a warning instead.
    """
    ledger = CashLedger.replay(fills, starting_settled_cash)
    day = trade_date(at)
    unsettled = ledger.unsettled(day)
    settled = ledger.settled
    price = order.reference_price or order.limit_price or ZERO
    notional = order.quantity * price
    rule: str | None = None
    if order.side is Side.SELL:
        lots = ledger.lots.get(order.symbol, [])
        left = order.quantity
        for lot in lots:
            if left <= 0:
                break
            if lot.funds_settle_on is not None and lot.funds_settle_on > day:
                rule = "good_faith_violation"
                msg = (
                    f"cash account: selling {order.symbol} bought with unsettled funds that settle "
                    f"{lot.funds_settle_on.isoformat()} would be a good-faith violation"
                )
                break
            left -= lot.qty
    elif notional > settled:
        rule = "unsettled_funds_purchase"
        msg = f"cash account: purchase {notional} exceeds settled cash {settled} (unsettled {unsettled})"
    if rule is None:
        msg = f"cash account: settled cash {settled}, unsettled {unsettled}"
    return CashDecision(
        allowed=rule is None or allow_unsettled,
        warning=rule is not None and allow_unsettled,
        rule=rule,
        settled_cash=settled,
        unsettled_cash=unsettled,
        message=msg,
    )
