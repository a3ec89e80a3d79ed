"""Prop-firm rule state machine: trailing floors from the firms' worked examples, breaches and their actions."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from pydantic import ValidationError

from daemon.calendar import CHICAGO
from daemon.domain import Fill, Side
from daemon.risk.funded import (
    AccountRules,
    FundedState,
    check_order,
    contracts_allowed,
    new_state,
    on_fill,
    on_mark,
    on_session_close,
    reset_lock,
    snapshot,
)
from daemon.risk.presets import PRESETS

D = Decimal
_ids = itertools.count()


def ct(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """March 2026, Chicago time (2026-03-02 is a Monday)."""
    return datetime.combine(date(2026, 3, day), time(hh, mm, ss), tzinfo=CHICAGO)


def fill(ts: datetime, side: str, qty: int, price: str, symbol: str = "ESM6") -> Fill:
    n = next(_ids)
    return Fill(
        fill_id=f"f{n}", broker_order_id=f"o{n}", client_order_id=f"c{n}", account="acct", symbol=symbol,
        side=Side(side), quantity=D(qty), price=D(price), filled_at=ts,
    )  # fmt: skip


def close_days(rules: AccountRules, balances: list[str]) -> list[FundedState]:
    """Run one end-of-day close per balance (Mon, Tue, ...) and return the state after each."""
    state = new_state(rules, ct(2, 8))
    out = []
    for i, bal in enumerate(balances):
        state, _ = on_session_close(state, rules, D(bal), ct(2 + i, 16))
        out.append(state)
    return out


def test_topstep_help_center_example() -> None:
    # https://help.topstep.com/en/articles/8284204-what-is-the-maximum-loss-limit (50K, $2,000 MLL):
    # +$500 on day 1 -> balance $50,500, MLL $48,500; -$500 on day 2 -> MLL stays $48,500;
    # +$2,500 on day 3 -> balance $52,500, MLL moves to $50,000 (the starting balance) and stays there.
    rules = AccountRules(preset="topstep_50k_combine")
    floors = [s.floor for s in close_days(rules, ["50500", "50000", "52500", "54000", "51000"])]
    assert floors == [D(48500), D(48500), D(50000), D(50000), D(50000)]


def test_eod_floor_is_enforced_live_but_moves_only_at_the_close() -> None:
    # Third-party worked example (https://traderssecondbrain.com/guides/topstep-trading-journal):
    # 50,000 -> +800 -> +600 (floor 49,400) -> -500 -> -900 -> -1,450 = 48,550: breached.
    rules = AccountRules(preset="topstep_50k_combine", daily_loss_limit=None)
    states = close_days(rules, ["50800", "51400", "50900", "50000"])
    assert [s.floor for s in states] == [D(48800), D(49400), D(49400), D(49400)]
    state = states[-1]
    # Intraday open profit does not raise an EOD floor...
    state, _ = on_mark(state, rules, ct(6, 9), live_equity=D(51900))
    assert state.floor == D(49400)
    # ...but the floor is enforced against live equity in real time: hard breach, flatten and lock.
    state, breaches = on_mark(state, rules, ct(6, 10), live_equity=D(48550))
    assert [(b.rule, b.action) for b in breaches] == [("max_loss", "flatten_lock")]
    assert breaches[0].numbers["floor"] == "49400.00"
    assert state.locked


def test_intraday_trailing_follows_unrealized_peak() -> None:
    # Funded Futures Family's intraday example (https://intercom.help/funded-futures-family/en/articles/10114602):
    # 50K, $2,000 intraday trailing: +$1,500 open -> floor $49,500; +$2,500 open -> $50,500; close the trade
    # with +$1,000 realized -> floor stays $50,500.
    rules = AccountRules(starting_balance=D(50000), max_loss=D(2000), drawdown_model="intraday")
    state = new_state(rules, ct(2, 8))
    state, _ = on_fill(state, rules, fill(ct(2, 9), "buy", 1, "5000.00"))  # ES: $50 a point
    state, _ = on_mark(state, rules, ct(2, 9, 5), prices={"ESM6": D("5030.00")})
    assert (state.live_equity, state.floor) == (D(51500), D(49500))
    state, _ = on_mark(state, rules, ct(2, 9, 10), prices={"ESM6": D("5050.00")})
    assert state.floor == D(50500)
    state, breaches = on_fill(state, rules, fill(ct(2, 9, 15), "sell", 1, "5020.00"))
    assert (state.balance, state.floor, breaches) == (D(51000), D(50500), [])
    assert not state.positions


def test_apex_floor_stops_trailing_at_start_plus_100() -> None:
    # Apex 50K: $2,500 live trailing threshold that stops at starting balance + $100
    # (https://fundedwiki.com/apex-trader-funding; numbers not confirmed on apextraderfunding.com).
    rules = AccountRules(preset="apex_50k")
    state = new_state(rules, ct(2, 8))
    assert state.floor == D(47500)
    for equity, floor in [("51000", "48500"), ("52600", "50100"), ("53500", "50100"), ("50200", "50100")]:
        state, breaches = on_mark(state, rules, ct(2, 9), live_equity=D(equity))
        assert state.floor == D(floor) and not breaches
    assert state.floor_locked
    state, breaches = on_mark(state, rules, ct(2, 10), live_equity=D("50100"))
    assert breaches[0].rule == "max_loss"


def test_static_floor_never_moves() -> None:
    rules = AccountRules(starting_balance=D(50000), max_loss=D(1000), drawdown_model="static")
    state = new_state(rules, ct(2, 8))
    state, _ = on_mark(state, rules, ct(2, 9), live_equity=D(58000))
    state, _ = on_session_close(state, rules, D(58000), ct(2, 16))
    assert state.floor == D(49000)


def test_daily_loss_breach_during_a_burst_of_fills() -> None:
    # Topstep 50K Combine: $1,000 daily loss limit (realized + unrealized since the session start).
    rules = AccountRules(preset="topstep_50k_combine")
    state = new_state(rules, ct(3, 8))
    state, _ = on_fill(state, rules, fill(ct(3, 9), "buy", 5, "5000.00"))
    state, _ = on_mark(state, rules, ct(3, 9, 1), prices={"ESM6": D("4997.00")})  # -750 open
    burst = [fill(ct(3, 9, 2, i), "sell", 1, "4996.00") for i in range(5)]
    seen = []
    for f in burst:
        state, breaches = on_fill(state, rules, f)
        seen.append([b.rule for b in breaches])
    # The first sale realizes -200 and marks the other 4 at 4996: equity 49,000 -> breach, reported once.
    assert seen == [["daily_loss_limit"], [], [], [], []]
    assert state.balance == D(49000) and not state.positions
    assert state.blocked_until == ct(3, 17)  # the next session opens at 17:00 CT
    # New exposure is refused until then; the next session accepts it again.
    rejects = check_order(state, rules, D(1), ct(3, 10))
    assert [(b.rule, b.action) for b in rejects] == [("session_blocked", "reject")]
    assert check_order(state, rules, D(1), ct(3, 17, 1)) == []
    state, _ = on_mark(state, rules, ct(3, 18), live_equity=D(49000))
    assert state.blocked_until is None and state.session_start_balance == D(49000)


def test_max_loss_breach_in_a_burst_locks_until_reset() -> None:
    rules = AccountRules(preset="topstep_50k_combine", daily_loss_limit=None)
    state = new_state(rules, ct(3, 8))
    state, _ = on_fill(state, rules, fill(ct(3, 9), "buy", 5, "5000.00"))
    rules_hit = []
    for i, px in enumerate(["4995.00", "4992.00", "4990.00", "4988.00"]):
        state, breaches = on_mark(state, rules, ct(3, 9, 1, i), prices={"ESM6": D(px)})
        rules_hit.append([(b.rule, b.action) for b in breaches])
    # 5 ES * 8 points * $50 = -2,000 at 4992: live equity 48,000 touches the floor.
    assert rules_hit == [[], [("max_loss", "flatten_lock")], [], []]
    # Locked: more contracts are refused, flattening is allowed, and only an operator reset unlocks.
    assert check_order(state, rules, D(6), ct(3, 10))[0].rule == "account_locked"
    assert check_order(state, rules, D(0), ct(3, 10)) == []
    state, _ = on_session_close(state, rules, D(48000), ct(3, 16))
    assert state.locked
    assert reset_lock(state, ct(4, 8)).locked is False


def test_max_contracts_and_scaling_plan() -> None:
    # Topstep 50K Express Funded Account scaling plan: 2 contracts, 3 above $1,500 profit, 5 above $2,000,
    # judged on the balance at the previous close (https://h2tfunding.com/topstep-scaling-plan).
    rules = AccountRules(preset="topstep_50k_express")
    state = new_state(rules, ct(2, 8))
    assert state.floor == D(-2000)
    assert contracts_allowed(state, rules) == 2
    assert check_order(state, rules, D(3), ct(2, 9))[0].rule == "max_contracts"
    state, _ = on_mark(state, rules, ct(2, 12), live_equity=D(1600))
    state = state.model_copy(update={"balance": D(1600)})
    assert contracts_allowed(state, rules) == 2  # no intraday scaling
    assert check_order(state, rules, D(3), ct(2, 18)) == []  # the next session starts from $1,600
    state, _ = on_session_close(state, rules, D(1600), ct(2, 16))
    assert contracts_allowed(state, rules) == 3
    state, _ = on_session_close(state, rules, D(2100), ct(3, 16))
    assert contracts_allowed(state, rules) == 5
    assert AccountRules(preset="topstep_50k_combine").max_contracts == 5


def test_flat_by_flattens_and_blocks_until_the_next_session() -> None:
    rules = AccountRules(preset="topstep_50k_combine", flatten_lead_seconds=60)  # flat by 15:10 CT
    state = new_state(rules, ct(3, 8))
    state, _ = on_fill(state, rules, fill(ct(3, 15), "buy", 1, "5000.00"))
    state, breaches = on_mark(state, rules, ct(3, 15, 8), prices={"ESM6": D("5001.00")})
    assert breaches == []
    state, breaches = on_mark(state, rules, ct(3, 15, 9, 5), prices={"ESM6": D("5001.00")})
    assert [(b.rule, b.action) for b in breaches] == [("flat_by", "flatten_block_session")]
    state, breaches = on_mark(state, rules, ct(3, 15, 9, 30), prices={"ESM6": D("5001.00")})
    assert breaches == []  # requested once per session
    assert check_order(state, rules, D(2), ct(3, 15, 20))[0].rule == "flat_by"
    assert check_order(state, rules, D(2), ct(3, 17, 5)) == []


def test_safety_buffer_flattens_before_the_firm_does() -> None:
    rules = AccountRules(preset="topstep_50k_combine", safety_buffer=D(200))
    state = new_state(rules, ct(3, 8))
    state, breaches = on_mark(state, rules, ct(3, 9), live_equity=D(49250))
    assert breaches == []
    state, breaches = on_mark(state, rules, ct(3, 9, 1), live_equity=D(49200))
    assert [(b.rule, b.numbers["floor"]) for b in breaches] == [("safety_buffer", "daily_loss_limit")]
    assert state.blocked_until == ct(3, 17)


def test_progress_and_consistency_are_reported() -> None:
    rules = AccountRules(preset="topstep_50k_combine")
    states = close_days(rules, ["51000", "51500"])
    snap = snapshot(states[-1], rules, ct(4, 9))
    assert snap["profit_target"] == {"target": "3000.00", "profit": "1500.00", "left": "1500.00", "reached": False}
    # Best day $1,000 of $1,500 total = 66.67% > 50%.
    assert snap["consistency"]["best_day_pct"] == "66.67" and snap["consistency"]["ok"] is False
    assert snap["floors"] == {"max_loss": "49500.00", "daily_loss_limit": "50500.00"}
    assert snap["left"] == {"max_loss": "2000.00", "daily_loss_limit": "1000.00"}


def test_state_round_trips_through_json() -> None:
    rules = AccountRules(preset="apex_50k")
    state = new_state(rules, ct(3, 8))
    state, _ = on_fill(state, rules, fill(ct(3, 9), "sell", 2, "18000.25", "MNQM6"))
    state, _ = on_mark(state, rules, ct(3, 9, 1), prices={"MNQM6": D("17990.25")})
    assert state.live_equity == D(50040)  # 2 MNQ * 10 points * $2
    assert FundedState.model_validate_json(state.model_dump_json()) == state


def test_presets_and_overrides() -> None:
    for name in PRESETS:
        rules = AccountRules(preset=name)
        assert rules.max_loss > 0 and rules.sources, name
    custom = AccountRules(preset="topstep_100k_combine", max_loss=D(2500), daily_loss_limit=None)
    assert (custom.max_loss, custom.daily_loss_limit, custom.starting_balance) == (D(2500), None, D(100000))
    with pytest.raises(ValidationError, match="unknown preset"):
        AccountRules(preset="nope")
    with pytest.raises(ValidationError):
        AccountRules(preset="apex_50k", bogus=1)


def test_point_value_knows_continuous_and_dated_tickers() -> None:
    # A funded account trading TradingView's `ES1!` must count $50 a point, not 1: an understated loss would
    # let a daily-loss breach through.
    from daemon.risk.funded import AccountRules

    rules = AccountRules(preset="topstep_50k_combine")
    for symbol in ("ES1!", "CME_MINI:ES1!", "ESZ6", "ESZ26", "ES"):
        assert rules.point_value(symbol) == Decimal(50), symbol
    assert rules.point_value("MNQ1!") == Decimal(2)
    assert rules.point_value("AAPL") == Decimal(1)
