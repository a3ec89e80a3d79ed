"""Pattern-day-trader counting (FINRA 4210(f)(8)(B)) and the intraday buying-power check of margin accounts.

Sources:
- FINRA Rule 4210(f)(8)(B)(i)-(ii): a day trade is purchasing and selling, or selling short and purchasing,
  the same security on the same day in a margin account, except a long (short) position held overnight and
  sold (bought) the next day prior to any new purchase (sale) of that security. A pattern day trader executes
  four or more day trades within five business days, unless they are 6% or less of the customer's total
  trades in the margin account for that period. https://www.finra.org/rules-guidance/rulebooks/finra-rules/4210
- FINRA "Day Trading" investor page / FAQ: each opening transaction closed in part or in full the same day
  is a day trade; partial executions of one order are one transaction.
  https://www.finra.org/investors/investing/investment-products/stocks/day-trading
- Regulatory Notice 21-13 (Interpretation /02): firms may instead count the changes of direction, from
  buying a security to selling it or the reverse. https://www.finra.org/rules-guidance/notices/21-13
- FINRA Rule 4210(f)(8)(B)(iv)c.: a pattern day trader's day-trading buying power is four times the
  maintenance margin excess (equity at the previous close less the maintenance margin requirement); while a
  day-trading margin call is unmet it is restricted to two times (FINRA investor page "Day-Trading Margin
  Requirements: Know the Rules", https://www.finra.org/investors/learn-to-invest/advanced-investing/day-trading-margin-requirements-know-rules).
- SR-FINRA-2025-017 / Regulatory Notice 26-10 (effective 2026-06-04) replaces the pattern-day-trader
  minimum with intraday margin; `PdtMode.INTRADAY_MARGIN` checks the broker's buying power instead.

Cash-account settlement (T+1, good-faith violations) lives in `daemon.risk.cash`.

Pure functions only: fills in, numbers out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from daemon.calendar import previous_business_days, trade_date
from daemon.domain import ZERO, Fill, OrderRequest, Side

PATTERN_THRESHOLD = 4  # day trades within the window that make a pattern day trader
WINDOW_DAYS = 5  # business days
SIX_PERCENT = Decimal("0.06")
DEFAULT_MIN_EQUITY = Decimal(25000)


class PdtMode(StrEnum):
    LEGACY = "legacy"  # FINRA 4210(f)(8)(B) pattern-day-trader counting
    INTRADAY_MARGIN = "intraday_margin"  # SR-FINRA-2025-017: intraday exposure vs buying power
    OFF = "off"


class CountMethod(StrEnum):
    TRADITIONAL = "traditional"  # each opening transaction closed the same day is one day trade
    DIRECTION = "direction"  # RN 21-13: each change from opening to closing direction is one day trade


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


@dataclass
class _Lot:
    order: str
    remaining: Decimal  # signed: > 0 long, < 0 short
    counted: bool = False
    price: Decimal = ZERO  # of the opening fill(s), for the day's open exposure


@dataclass
class _Book:
    overnight: Decimal = ZERO  # signed quantity carried into the day
    lots: list[_Lot] = field(default_factory=list)  # today's openings, oldest first
    armed_side: Side | None = None  # direction method: side of the current opening run


def _order_key(fill: Fill) -> str:
    """Partial executions of one order count as one transaction."""
    return fill.broker_order_id or fill.client_order_id or fill.fill_id


def _apply(book: _Book, fill: Fill, method: CountMethod) -> int:
    """Apply one fill to a symbol's day book; return the day trades it completes."""
    signed = fill.quantity * fill.side.sign
    key = _order_key(fill)
    trades = 0
    remaining = signed
    # 1. Close today's opposite lots first (FIFO): closing a same-day opening is what makes a day trade.
    closed_today = False
    for lot in book.lots:
        if remaining == 0:
            break
        if lot.remaining == 0 or (lot.remaining > 0) == (remaining > 0):
            continue
        take = min(abs(lot.remaining), abs(remaining))
        lot.remaining += take if lot.remaining < 0 else -take
        remaining += take if remaining < 0 else -take
        closed_today = True
        if method is CountMethod.TRADITIONAL and not lot.counted:
            lot.counted = True
            trades += 1
    book.lots = [lot for lot in book.lots if lot.remaining != 0]
    if closed_today and method is CountMethod.DIRECTION and book.armed_side not in (None, fill.side):
        trades += 1
        book.armed_side = None
    # 2. Then the overnight position (the "held overnight, closed before any new opening" exception).
    if remaining != 0 and book.overnight != 0 and (book.overnight > 0) != (remaining > 0):
        take = min(abs(book.overnight), abs(remaining))
        book.overnight += take if book.overnight < 0 else -take
        remaining += take if remaining < 0 else -take
    # 3. What is left opens (or adds to) a position today.
    if remaining != 0:
        last = book.lots[-1] if book.lots else None
        if last is not None and last.order == key and (last.remaining > 0) == (remaining > 0):
            # another partial fill of the same opening order: one lot at the average price
            total = last.remaining + remaining
            last.price = (last.price * last.remaining + fill.price * remaining) / total
            last.remaining = total
        else:
            book.lots.append(_Lot(order=key, remaining=remaining, price=fill.price))
        if book.armed_side is None:
            book.armed_side = fill.side
    return trades


class DayCount(_Frozen):
    day: date
    day_trades: int
    trades: int  # transactions (orders) in the account that day
    by_symbol: dict[str, int]


def _positions_before(fills: Iterable[Fill], day: date) -> dict[str, Decimal]:
    pos: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for f in fills:
        if trade_date(f.filled_at) < day:
            pos[f.symbol] += f.quantity * f.side.sign
    return dict(pos)


def count_day(
    fills: Sequence[Fill],
    day: date,
    method: CountMethod = CountMethod.TRADITIONAL,
    opening_positions: dict[str, Decimal] | None = None,
) -> DayCount:
    """Day trades completed on `day` (ET trade date). Positions carried in are derived from earlier fills
    unless `opening_positions` (signed quantities at the start of the day) is given."""
    ordered = sorted(fills, key=lambda f: f.filled_at)
    carried = opening_positions if opening_positions is not None else _positions_before(ordered, day)
    books: dict[str, _Book] = {}
    by_symbol: dict[str, int] = {}
    orders: set[str] = set()
    for f in ordered:
        if trade_date(f.filled_at) != day:
            continue
        orders.add(_order_key(f))
        book = books.setdefault(f.symbol, _Book(overnight=carried.get(f.symbol, ZERO)))
        n = _apply(book, f, method)
        if n:
            by_symbol[f.symbol] = by_symbol.get(f.symbol, 0) + n
    return DayCount(day=day, day_trades=sum(by_symbol.values()), trades=len(orders), by_symbol=by_symbol)


class WindowReport(_Frozen):
    asof: date
    method: CountMethod
    days: list[DayCount]
    day_trades: int
    trades: int
    pattern_count_reached: bool  # 4+ day trades in the window
    six_percent_exempt: bool  # ...but they are 6% or less of all trades in the window
    is_pattern: bool

    @property
    def ratio(self) -> Decimal:
        return Decimal(self.day_trades) / Decimal(self.trades) if self.trades else ZERO


def window_report(fills: Sequence[Fill], asof: date, method: CountMethod = CountMethod.TRADITIONAL) -> WindowReport:
    """The rolling five-business-day window ending at `asof` (holidays are not business days)."""
    days = [count_day(fills, d, method) for d in previous_business_days(asof, WINDOW_DAYS)]
    dts = sum(d.day_trades for d in days)
    trades = sum(d.trades for d in days)
    reached = dts >= PATTERN_THRESHOLD
    exempt = reached and trades > 0 and Decimal(dts) <= SIX_PERCENT * trades
    return WindowReport(
        asof=asof,
        method=method,
        days=days,
        day_trades=dts,
        trades=trades,
        pattern_count_reached=reached,
        six_percent_exempt=exempt,
        is_pattern=reached and not exempt,
    )


class PdtDecision(_Frozen):
    allowed: bool
    warning: bool
    mode: PdtMode
    day_trades_used: int  # in the window, before this order
    day_trades_left: int  # before the pattern threshold, after this order
    order_is_day_trade: bool
    equity: Decimal
    min_equity: Decimal
    message: str
    is_pattern: bool = False  # the window, with this order, makes a pattern day trader

    def numbers(self) -> dict[str, str]:
        return {
            "day_trades_used": str(self.day_trades_used),
            "day_trades_left": str(self.day_trades_left),
            "equity": str(self.equity),
            "min_equity": str(self.min_equity),
        }


def would_block(
    order: OrderRequest,
    fills: Sequence[Fill],
    equity: Decimal,
    min_equity: Decimal = DEFAULT_MIN_EQUITY,
    asof: datetime | None = None,
    method: CountMethod = CountMethod.TRADITIONAL,
) -> PdtDecision:
    """Would `order`, filled at `asof`, make this margin account a pattern day trader below `min_equity`?

    The order is simulated as one more fill; if it completes a day trade and the window then holds four or
    more day trades (and more than 6% of the trades), it is blocked unless equity >= `min_equity`.
    A warning is raised when, after the order, one day trade or none is left.
    """
    at = asof or max((f.filled_at for f in fills), default=None)
    if at is None:
        raise ValueError("asof is required when there are no fills")
    day = trade_date(at)
    before = window_report(fills, day, method)
    probe = Fill(
        fill_id="__probe__",
        broker_order_id="__probe__",
        client_order_id=order.client_order_id,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=order.reference_price or order.limit_price or ZERO,
        filled_at=at,
    )
    after = window_report([*fills, probe], day, method)
    is_dt = after.day_trades > before.day_trades
    left = max(0, PATTERN_THRESHOLD - 1 - after.day_trades)
    rich = equity >= min_equity
    blocked = is_dt and after.is_pattern and not rich
    if blocked:
        msg = (
            f"PDT: this {order.side} {order.quantity} {order.symbol} would be day trade #{after.day_trades} "
            f"in 5 business days with equity {equity} < {min_equity}; blocked"
        )
    elif rich:
        msg = f"PDT: equity {equity} >= {min_equity}; day trades in 5 business days: {after.day_trades}"
    else:
        msg = f"PDT: {after.day_trades} day trade(s) in 5 business days, {left} left"
    warning = not blocked and not rich and left <= 1
    return PdtDecision(
        allowed=not blocked,
        warning=warning,
        mode=PdtMode.LEGACY,
        day_trades_used=before.day_trades,
        day_trades_left=left,
        order_is_day_trade=is_dt,
        equity=equity,
        min_equity=min_equity,
        message=msg,
        is_pattern=after.is_pattern,
    )


class BuyingPowerDecision(_Frozen):
    allowed: bool
    order_notional: Decimal
    exposure: Decimal
    buying_power: Decimal
    left: Decimal
    message: str


def check_buying_power(order_notional: Decimal, exposure: Decimal, buying_power: Decimal) -> BuyingPowerDecision:
    """`intraday_margin` mode: refuse an order whose notional would take intraday exposure past the broker's
    reported buying power. `exposure` is the current gross intraday exposure; all values are absolute."""
    after = exposure + abs(order_notional)
    allowed = after <= buying_power
    left = buying_power - exposure
    msg = (
        f"intraday margin: order {abs(order_notional)} + exposure {exposure} "
        f"{'<=' if allowed else '>'} buying power {buying_power}"
    )
    return BuyingPowerDecision(
        allowed=allowed,
        order_notional=abs(order_notional),
        exposure=exposure,
        buying_power=buying_power,
        left=left,
        message=msg,
    )


DTBP_MULTIPLIER = Decimal(4)  # times the maintenance margin excess
DTBP_MULTIPLIER_WITH_CALL = Decimal(2)  # while a day-trading margin call is unmet


def day_trading_buying_power(prior_close_equity: Decimal, maintenance_margin: Decimal,
                             call_open: bool = False) -> Decimal:
    """FINRA 4210(f)(8)(B)(iv)c.: (equity at the previous close - maintenance margin requirement) x 4, or x 2
    while a day-trading call is open; never below zero. 40,000 and 6,000 give 136,000 (68,000 with a call)."""
    excess = max(ZERO, prior_close_equity - maintenance_margin)
    return excess * (DTBP_MULTIPLIER_WITH_CALL if call_open else DTBP_MULTIPLIER)


def open_day_exposure(fills: Sequence[Fill], day: date, opening_positions: dict[str, Decimal] | None = None,
                      multipliers: dict[str, Decimal] | None = None) -> Decimal:
    """Notional of the positions opened on `day` and still open (what counts against day-trading buying
    power): quantity x opening price x multiplier, summed over symbols, long and short alike."""
    ordered = sorted(fills, key=lambda f: f.filled_at)
    carried = opening_positions if opening_positions is not None else _positions_before(ordered, day)
    books: dict[str, _Book] = {}
    for f in ordered:
        if trade_date(f.filled_at) == day:
            _apply(books.setdefault(f.symbol, _Book(overnight=carried.get(f.symbol, ZERO))), f,
                   CountMethod.TRADITIONAL)
    mult = multipliers or {}
    return sum((abs(lot.remaining) * lot.price * mult.get(symbol, Decimal(1))
                for symbol, book in books.items() for lot in book.lots), ZERO)
