"""Monte Carlo: reproducible with a seed, and its breach and target odds equal to exact answers on
synthetic trade lists (a gambler's-ruin chain solved exactly, and a closed form for daily losses)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from daemon.risk.funded import AccountRules
from daemon.strategy.montecarlo import MonteCarloError, max_drawdown, percentile, simulate, walk_rules

D = Decimal


def _rules(**kw: object) -> AccountRules:
    base: dict[str, object] = {"starting_balance": "50000", "max_loss": "1000000", "drawdown_model": "static"}
    return AccountRules.model_validate({**base, **kw})


def test_one_seed_one_report_and_another_seed_another() -> None:
    pnls = [D(x) for x in ("120", "-80", "35.5", "-200", "410", "-15", "60", "-95")]
    sessions = [1, 1, 2, 3, 3, 3, 4, 5]
    rules = _rules(max_loss="300", drawdown_model="intraday", daily_loss_limit="250", profit_target="400")
    a = simulate(pnls, sessions, 500, seed=42, rules=rules)
    b = simulate(pnls, sessions, 500, seed=42, rules=rules)
    c = simulate(pnls, sessions, 500, seed=43, rules=rules)
    assert a == b
    assert a.final_pnls != c.final_pnls
    assert all(isinstance(v, Decimal) for v in a.final_pnls)
    shuffled = simulate(pnls, sessions, 200, seed=1, method="shuffle")
    assert set(shuffled.final_pnls) == {sum(pnls, D(0))}  # a permutation keeps the total, only the path moves
    assert len(set(shuffled.max_drawdowns)) > 1
    with pytest.raises(MonteCarloError):
        simulate([], [], 10)
    with pytest.raises(MonteCarloError):
        simulate(pnls, sessions, 0)


def _ruin_exact(p: Fraction, down: int, up: int, steps: int) -> tuple[Fraction, Fraction]:
    """P(hit -down first) and P(hit +up first) within `steps` +-1 steps, by dynamic programming."""
    dist = {0: Fraction(1)}
    ruined = reached = Fraction(0)
    for _ in range(steps):
        nxt: dict[int, Fraction] = {}
        for x, w in dist.items():
            for y, q in ((x + 1, p), (x - 1, 1 - p)):
                if y <= -down:
                    ruined += w * q
                elif y >= up:
                    reached += w * q
                else:
                    nxt[y] = nxt.get(y, Fraction(0)) + w * q
        dist = nxt
    return ruined, reached


def test_max_loss_and_target_odds_match_the_exact_gamblers_ruin() -> None:
    # 30 wins and 20 losses of $100: a bootstrap draws +-100 with p = 0.6, 50 trades, one a session
    pnls = [D(100)] * 30 + [D(-100)] * 20
    sessions = list(range(50))
    rules = _rules(max_loss="300", profit_target="500")
    runs = 20000
    mc = simulate(pnls, sessions, runs, seed=7, rules=rules, keep_samples=False)
    ruined, reached = _ruin_exact(Fraction(3, 5), 3, 5, 50)
    assert mc.rules is not None and mc.rules.p_target_first is not None
    for estimate, exact in ((mc.rules.p_max_loss, float(ruined)), (mc.rules.p_target_first, float(reached))):
        sigma = math.sqrt(exact * (1 - exact) / runs)
        assert abs(estimate - exact) < 4 * sigma, (estimate, exact)
    assert mc.rules.p_daily_loss == 0


def test_daily_loss_odds_match_the_closed_form() -> None:
    # Two trades a session, each -100 with probability 0.2: a $200 daily limit is lost when both lose
    pnls = [D(100)] * 40 + [D(-100)] * 10
    sessions = [i // 2 for i in range(50)]
    runs = 20000
    mc = simulate(pnls, sessions, runs, seed=3, rules=_rules(daily_loss_limit="200"), keep_samples=False)
    exact = 1 - (1 - 0.2**2) ** 25
    assert mc.rules is not None
    assert abs(mc.rules.p_daily_loss - exact) < 4 * math.sqrt(exact * (1 - exact) / runs)
    assert mc.rules.p_max_loss == 0 and mc.rules.p_target_first is None


def test_the_rules_walk_trails_the_floor_as_the_firm_does() -> None:
    up_then_down = [D(1000), D(-2000)]
    assert walk_rules(up_then_down, [1, 2], _rules(max_loss="2000", drawdown_model="intraday")).max_loss
    assert walk_rules(up_then_down, [1, 2], _rules(max_loss="2000", drawdown_model="eod")).max_loss
    assert not walk_rules(up_then_down, [1, 2], _rules(max_loss="2000", drawdown_model="static")).max_loss
    # end of day: a peak inside the session that is given back before the close does not raise the floor
    intraday_peak = [D(1500), D(-1500), D(-1900)]
    assert walk_rules(intraday_peak, [1, 1, 2], _rules(max_loss="2000", drawdown_model="intraday")).max_loss
    assert not walk_rules(intraday_peak, [1, 1, 2], _rules(max_loss="2000", drawdown_model="eod")).max_loss
    # the floor stops trailing at starting balance + floor_lock_offset
    locked = _rules(max_loss="2000", drawdown_model="intraday", floor_lock_offset="0")
    assert not walk_rules([D(5000), D(-4900)], [1, 2], locked).max_loss
    assert walk_rules([D(5000), D(-5000)], [1, 2], locked).max_loss
    # a daily breach skips the rest of that session (the firm flattens and blocks it)
    blocked = walk_rules([D(-300), D(-900), D(100)], [1, 1, 2], _rules(max_loss="1000", daily_loss_limit="300"))
    assert blocked.daily_loss and not blocked.max_loss


def test_drawdown_and_percentiles_agree_with_numpy() -> None:
    np = pytest.importorskip("numpy")
    assert max_drawdown([D(5), D(-3), D(-4), D(10), D(-12)]) == D(12)
    assert max_drawdown([D(-5), D(2)]) == D(5)  # the start counts as a peak
    values = sorted(D(x) / 7 for x in (3, 99, -40, 12, 7, 0, 55, -3, 18))
    for pct in (5, 25, 50, 75, 95):
        assert float(percentile(values, pct)) == pytest.approx(float(np.percentile([float(v) for v in values], pct)))
