"""Monte Carlo of a trade sequence: seeded resampling, drawdown and P&L distributions, funded-rule odds.

Each run draws a new sequence of the replay's closed-trade net P&Ls, with replacement (`bootstrap`, the
default) or as a permutation (`shuffle`, which keeps the final P&L and varies only the path). The k-th drawn
trade takes the k-th original trade's session, so the number of trades per session is kept and daily rules
apply to the same calendar. A run reports its final P&L and the maximum drawdown of its trade-by-trade
equity (from the starting equity, the peak included).

With a funded-account preset the same run is walked through its rules, trade by trade on closed P&L:

- max loss: the floor is `starting balance - max_loss` (`static`) or trails the peak balance by `max_loss`
  (after each trade for `intraday`, at each session's end for `eod`), up to `starting balance +
  floor_lock_offset`; equity at or below the floor breaches it and ends the account.
- daily loss: a session whose balance falls `daily_loss_limit` or more below its start breaches it; the
  rest of that session's trades are skipped (the firm flattens and blocks the session).
- profit target: balance `profit_target` or more above the start.

A run's account ends at the first max-loss breach or the first time the target is reached (an evaluation
is failed or passed then); without a target it goes through every trade. The probabilities are the shares
of runs where each happened: max loss before the target, at least one daily-loss breach before the end,
target before max loss. Trades are closed P&L only: a drawdown inside
an open trade that came back is not seen, so the breach odds are a lower bound of the live ones. The random
draws use `random.Random(seed)`: one seed gives the same report every time.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from daemon.domain import ZERO
from daemon.risk.funded import AccountRules, DrawdownModel

Method = Literal["bootstrap", "shuffle"]
PERCENTILES = (5, 25, 50, 75, 95)


class MonteCarloError(ValueError):
    """Nothing to resample or a bad setting; the message says which."""


class Distribution(BaseModel):
    mean: Decimal
    percentiles: dict[str, Decimal]  # "p5" .. "p95"
    worst: Decimal
    best: Decimal


class RuleOdds(BaseModel):
    preset: str | None
    starting_balance: Decimal
    max_loss: Decimal
    daily_loss_limit: Decimal | None
    profit_target: Decimal | None
    p_max_loss: float  # share of runs that breached the max-loss floor (before reaching the target)
    p_daily_loss: float  # share of runs with at least one daily-loss breach
    p_target_first: float | None  # share of runs reaching the profit target before any max-loss breach


class MonteCarloReport(BaseModel):
    runs: int
    seed: int | None
    method: Method
    trades: int
    final_pnl: Distribution
    max_drawdown: Distribution
    rules: RuleOdds | None = None
    final_pnls: list[Decimal] = Field(default_factory=list)  # one per run, in run order
    max_drawdowns: list[Decimal] = Field(default_factory=list)


def percentile(sorted_values: Sequence[Decimal], pct: float) -> Decimal:
    """Linear interpolation between closest ranks (numpy's default), on Decimals."""
    if not sorted_values:
        raise MonteCarloError("no values")
    pos = Decimal(str(pct / 100)) * (len(sorted_values) - 1)
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def distribution(values: Sequence[Decimal]) -> Distribution:
    ordered = sorted(values)
    return Distribution(mean=sum(ordered, ZERO) / len(ordered),
                        percentiles={f"p{p}": percentile(ordered, p) for p in PERCENTILES},
                        worst=ordered[0], best=ordered[-1])


def max_drawdown(pnls: Sequence[Decimal]) -> Decimal:
    """Largest fall of cumulative P&L from its running peak (the start, 0, counts as a peak)."""
    equity = peak = worst = ZERO
    for pnl in pnls:
        equity += pnl
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


class RulePath(BaseModel):
    """What the funded rules made of one resampled sequence."""

    max_loss: bool = False
    daily_loss: bool = False
    target_first: bool = False


def walk_rules(pnls: Sequence[Decimal], sessions: Sequence[Hashable], rules: AccountRules) -> RulePath:
    """Apply `rules` to the trades `pnls` closing in `sessions` (see the module docstring)."""
    start = rules.starting_balance
    lock = rules.lock_level
    balance = peak = start
    floor = start - rules.max_loss if lock is None else min(start - rules.max_loss, lock)
    out = RulePath()
    session: Hashable = object()
    session_start, blocked = balance, False

    def raise_floor(level: Decimal) -> Decimal:
        nonlocal peak
        if rules.drawdown_model is DrawdownModel.STATIC:
            return floor
        peak = max(peak, level)
        trailed = peak - rules.max_loss
        return max(floor, trailed if lock is None else min(trailed, lock))

    for pnl, day in zip(pnls, sessions, strict=True):
        if day != session:
            if rules.drawdown_model is DrawdownModel.EOD:
                floor = raise_floor(balance)
            session, session_start, blocked = day, balance, False
        if blocked:
            continue
        balance += pnl
        if rules.drawdown_model is DrawdownModel.INTRADAY:
            floor = raise_floor(balance)
        if balance <= floor:
            out.max_loss = True
            return out
        if rules.profit_target is not None and balance - start >= rules.profit_target:
            out.target_first = True  # the evaluation is passed: the account's story ends here
            return out
        if rules.daily_loss_limit is not None and session_start - balance >= rules.daily_loss_limit:
            out.daily_loss, blocked = True, True
    return out


def simulate(pnls: Sequence[Decimal], sessions: Sequence[Hashable], runs: int, *, seed: int | None = None,
             method: Method = "bootstrap", rules: AccountRules | None = None,
             keep_samples: bool = True) -> MonteCarloReport:
    """`runs` resampled sequences of `pnls` (closing in `sessions`), their distributions and rule odds."""
    if not pnls:
        raise MonteCarloError("no closed trades to resample")
    if len(sessions) != len(pnls):
        raise MonteCarloError("one session per trade is needed")
    if runs <= 0:
        raise MonteCarloError("--monte-carlo needs a positive number of runs")
    if method not in ("bootstrap", "shuffle"):
        raise MonteCarloError(f"unknown resampling method {method!r}")
    rng = random.Random(seed)
    finals: list[Decimal] = []
    drawdowns: list[Decimal] = []
    hits = {"max_loss": 0, "daily_loss": 0, "target_first": 0}
    for _ in range(runs):
        drawn = rng.choices(pnls, k=len(pnls)) if method == "bootstrap" else rng.sample(list(pnls), len(pnls))
        finals.append(sum(drawn, ZERO))
        drawdowns.append(max_drawdown(drawn))
        if rules is not None:
            path = walk_rules(drawn, sessions, rules)
            hits["max_loss"] += path.max_loss
            hits["daily_loss"] += path.daily_loss
            hits["target_first"] += path.target_first
    odds = None
    if rules is not None:
        odds = RuleOdds(preset=rules.preset, starting_balance=rules.starting_balance, max_loss=rules.max_loss,
                        daily_loss_limit=rules.daily_loss_limit, profit_target=rules.profit_target,
                        p_max_loss=hits["max_loss"] / runs, p_daily_loss=hits["daily_loss"] / runs,
                        p_target_first=hits["target_first"] / runs if rules.profit_target is not None else None)
    return MonteCarloReport(runs=runs, seed=seed, method=method, trades=len(pnls), final_pnl=distribution(finals),
                            max_drawdown=distribution(drawdowns), rules=odds,
                            final_pnls=finals if keep_samples else [],
                            max_drawdowns=drawdowns if keep_samples else [])
