"""Prop-firm consistency rules: the best day's share of total profit, its boundary, and the profit still needed.

Firms word the boundary two ways, and the difference decides the exact case: Take Profit Trader's best day
"needs to be less than 50%" (strict: $2,000 of $4,000 fails) while MyFundedFutures' "should not exceed 50%"
(at most: $1,500 of $3,000 passes). `report` says whether the rule is met and how much more total profit
(to the cent) would meet it with the best day as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from daemon.domain import ZERO
from daemon.money import plain_money

CENT = Decimal("0.01")


def is_met(best_day: Decimal, total_profit: Decimal, limit_pct: Decimal, strict: bool) -> bool:
    """Best day < (strict) or <= limit_pct % of a positive total profit."""
    if total_profit <= 0:
        return False
    share, cap = best_day * 100, limit_pct * total_profit
    return share < cap if strict else share <= cap


def profit_needed(best_day: Decimal, limit_pct: Decimal, strict: bool) -> Decimal:
    """The smallest total profit, in cents, that meets the rule with this best day."""
    if best_day <= 0:
        return CENT
    bound = best_day * 100 / limit_pct
    if strict:  # strictly more than the bound: the next cent above it
        return (bound / CENT).to_integral_value(ROUND_FLOOR) * CENT + CENT
    return (bound / CENT).to_integral_value(ROUND_CEILING) * CENT


def report(day_profits: Iterable[Decimal], total_profit: Decimal, limit_pct: Decimal,
           strict: bool) -> dict[str, Any]:
    best = max(day_profits, default=ZERO)
    ok = is_met(best, total_profit, limit_pct, strict)
    needed = profit_needed(best, limit_pct, strict)
    return {
        "limit_pct": str(limit_pct),
        "boundary": "less than" if strict else "at most",
        "best_day": plain_money(best),
        "total_profit": plain_money(total_profit),
        "best_day_pct": plain_money(best * 100 / total_profit) if total_profit > 0 else None,
        "ok": ok,
        "profit_needed": plain_money(needed),
        "more_needed": plain_money(ZERO if ok else max(ZERO, needed - total_profit)),
    }


