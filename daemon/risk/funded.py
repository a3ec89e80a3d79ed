"""Prop-firm funded-account rules as a pure state machine: drawdown floors, daily loss, contracts, flat-by.

The rules, the state they remember and a breach are the models of `daemon.risk.funded_models` (re-exported
here). Each transition is a pure function that returns the new state and the `Breach`es it caused:

    state = new_state(rules, at)
    state, breaches = on_fill(state, rules, fill)               # realized P&L from our own position book
    state, breaches = on_mark(state, rules, at, live_equity=...) # or prices={"ESZ5": Decimal(...)}
    state, breaches = on_session_close(state, rules, balance, at)
    rejects = check_order(state, rules, contracts_after, at)

Breach actions: `flatten_block_session` (soft: flatten, cancel, block until the next futures session),
`flatten_lock` (hard: flatten and lock until an operator calls `reset_lock`), `reject` (refuse the order).
Floors are enforced against live equity in every drawdown model; the models differ only in how the floor
moves. Sessions roll at 17:00 America/Chicago (`daemon.calendar.futures_session_date`), or at midnight in
`day_roll_tz` for an account on the 24x7 calendar (crypto; `AccountRules.calendar`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from daemon.calendar import following_session, next_session_open, session_date, session_end
from daemon.domain import ZERO, Fill
from daemon.money import plain_money
from daemon.risk import consistency
from daemon.risk.funded_models import (
    AccountRules,
    Breach,
    BreachAction,
    DrawdownModel,
    FundedState,
    OpenPosition,
    ScalingTier,
    Transition,
)

# The models are part of this module's vocabulary: callers say `funded.AccountRules`, `funded.on_fill`.
__all__ = [
    "AccountRules", "Breach", "BreachAction", "DrawdownModel", "FundedState", "OpenPosition", "ScalingTier",
    "Transition", "check_order", "contracts_after", "contracts_allowed", "flat_by_at", "new_state", "on_fill",
    "on_mark", "on_session_close", "reset_lock", "snapshot",
]

def _breach(rule: str, action: BreachAction, at: datetime, detail: str, **numbers: object) -> Breach:
    return Breach(rule=rule, action=action, at=at, detail=detail, numbers={k: str(v) for k, v in numbers.items()})


def _floor_from_peak(rules: AccountRules, peak: Decimal) -> Decimal:
    floor = peak - rules.max_loss
    lock = rules.lock_level
    return floor if lock is None else min(floor, lock)


def _day(rules: AccountRules, at: datetime) -> date:
    """The account's trading day of `at` on its calendar."""
    return session_date(at, rules.calendar, rules.day_roll_tz)


def new_state(rules: AccountRules, at: datetime, balance: Decimal | None = None) -> FundedState:
    """A fresh account (or one adopted mid-life at `balance`, which then counts as its peak)."""
    bal = rules.starting_balance if balance is None else balance
    floor = _floor_from_peak(rules, max(bal, rules.starting_balance))
    if rules.drawdown_model is DrawdownModel.STATIC:
        floor = rules.starting_balance - rules.max_loss
    return FundedState(
        balance=bal,
        live_equity=bal,
        peak=max(bal, rules.starting_balance),
        floor=floor,
        floor_locked=rules.lock_level is not None and floor >= rules.lock_level,
        session=_day(rules, at),
        session_start_balance=bal,
        updated_at=at,
    )


def _raise_floor(s: FundedState, rules: AccountRules, peak: Decimal) -> None:
    if rules.drawdown_model is DrawdownModel.STATIC:
        return
    s.peak = max(s.peak, peak)
    s.floor = max(s.floor, _floor_from_peak(rules, s.peak))
    lock = rules.lock_level
    s.floor_locked = lock is not None and s.floor >= lock


def _close_session(s: FundedState, rules: AccountRules, balance: Decimal, next_session: date) -> None:
    s.balance = balance
    if s.session is not None:
        s.day_pnl[s.session.isoformat()] = balance - s.session_start_balance
    if rules.drawdown_model is DrawdownModel.EOD:
        _raise_floor(s, rules, balance)
    s.session = next_session
    s.session_start_balance = balance
    s.flat_by_session = None


def _roll(s: FundedState, rules: AccountRules, at: datetime) -> None:
    """Close the recorded session implicitly when an event arrives in a later one."""
    current = _day(rules, at)
    if s.session is None:
        s.session = current
    elif current > s.session:
        _close_session(s, rules, s.balance, current)
    if s.blocked_until is not None and at >= s.blocked_until:
        s.blocked_until = None
        s.block_reason = None


def _is_blocked(s: FundedState, at: datetime) -> bool:
    return s.blocked_until is not None and at < s.blocked_until


def flat_by_at(rules: AccountRules, session: date) -> datetime | None:
    """When positions must be flat in `session` (before the lead time is applied)."""
    if rules.flat_by is None:
        return None
    return datetime.combine(session, rules.flat_by, tzinfo=ZoneInfo(rules.flat_by_tz))


def _past_flat_by(rules: AccountRules, session: date, at: datetime) -> bool:
    deadline = flat_by_at(rules, session)
    if deadline is None:
        return False
    end = session_end(session, rules.calendar, rules.day_roll_tz)
    return deadline - timedelta(seconds=rules.flatten_lead_seconds) <= at < end


def _mark_equity(s: FundedState) -> None:
    s.live_equity = s.balance + sum((p.unrealized for p in s.positions.values()), ZERO)


def _evaluate(s: FundedState, rules: AccountRules, at: datetime) -> list[Breach]:
    """Check the live-equity rules after an update; each breach is reported once."""
    if rules.drawdown_model is DrawdownModel.INTRADAY:
        _raise_floor(s, rules, s.live_equity)
    if s.locked:
        return []
    equity = plain_money(s.live_equity)
    if s.live_equity <= s.floor:
        s.locked = True
        s.lock_reason = f"max loss: live equity {equity} <= floor {plain_money(s.floor)}"
        detail = (
            f"Maximum loss limit hit: live equity {equity} reached the floor {plain_money(s.floor)} "
            f"({rules.drawdown_model} drawdown {plain_money(rules.max_loss)}); "
            "flatten and lock until an operator resets"
        )
        return [
            _breach("max_loss", "flatten_lock", at, detail, live_equity=equity, floor=plain_money(s.floor),
                    max_loss=plain_money(rules.max_loss), peak=plain_money(s.peak))
        ]  # fmt: skip
    if _is_blocked(s, at):
        return []
    session = s.session or _day(rules, at)
    loss = s.session_start_balance - s.live_equity
    if rules.daily_loss_limit is not None and loss >= rules.daily_loss_limit:
        s.blocked_until = next_session_open(at, rules.calendar, rules.day_roll_tz)
        s.block_reason = "daily_loss_limit"
        detail = (
            f"Daily loss limit hit: down {plain_money(loss)} since the session start (limit "
            f"{plain_money(rules.daily_loss_limit)}); flatten and block until {s.blocked_until.isoformat()}"
        )
        return [
            _breach("daily_loss_limit", "flatten_block_session", at, detail, session_loss=plain_money(loss),
                    daily_loss_limit=plain_money(rules.daily_loss_limit),
                    session_start_balance=plain_money(s.session_start_balance), live_equity=equity)
        ]  # fmt: skip
    if rules.safety_buffer > 0:
        rooms = {"max_loss": s.live_equity - s.floor}
        if rules.daily_loss_limit is not None:
            rooms["daily_loss_limit"] = rules.daily_loss_limit - loss
        which, room = min(rooms.items(), key=lambda kv: kv[1])
        if room <= rules.safety_buffer:
            s.blocked_until = next_session_open(at, rules.calendar, rules.day_roll_tz)
            s.block_reason = "safety_buffer"
            detail = (
                f"Safety buffer: only {plain_money(room)} left before the {which} floor "
                f"(buffer {plain_money(rules.safety_buffer)}); flatten and block until the next session"
            )
            return [
                _breach("safety_buffer", "flatten_block_session", at, detail, room=plain_money(room),
                        buffer=plain_money(rules.safety_buffer), floor=which, live_equity=equity)
            ]  # fmt: skip
    deadline = flat_by_at(rules, session)
    if deadline and s.positions and s.flat_by_session != session and _past_flat_by(rules, session, at):
        s.flat_by_session = session
        detail = f"Flat-by time {deadline:%H:%M %Z}: flatten open positions ({s.contracts} contracts)"
        return [
            _breach("flat_by", "flatten_block_session", at, detail, flat_by=deadline.isoformat(), contracts=s.contracts)
        ]
    return []


def on_fill(state: FundedState, rules: AccountRules, fill: Fill, realized_pnl: Decimal | None = None) -> Transition:
    """Apply one fill: update the position book, realized balance (P&L from our book unless
    `realized_pnl` is given, minus commission), live equity, and check the rules."""
    s = state.model_copy(deep=True)
    at = fill.filled_at
    _roll(s, rules, at)
    signed = fill.quantity * fill.side.sign
    pos = s.positions.get(fill.symbol)
    pv = pos.point_value if pos else rules.point_value(fill.symbol)
    pnl = ZERO
    if pos is None or pos.qty == 0:
        pos = OpenPosition(qty=signed, avg_price=fill.price, mark=fill.price, point_value=pv)
    elif (pos.qty > 0) == (signed > 0):
        total = pos.qty + signed
        pos.avg_price = (pos.avg_price * pos.qty + fill.price * signed) / total
        pos.qty = total
    else:
        closing = min(abs(pos.qty), abs(signed))
        direction = 1 if pos.qty > 0 else -1
        pnl = (fill.price - pos.avg_price) * closing * direction * pv
        remaining = pos.qty + signed
        if remaining == 0 or (remaining > 0) == (pos.qty > 0):
            pos.qty = remaining
        else:  # flipped through zero: the rest opens at this price
            pos.qty, pos.avg_price = remaining, fill.price
    pos.mark = fill.price
    if pos.qty == 0:
        s.positions.pop(fill.symbol, None)
    else:
        s.positions[fill.symbol] = pos
    s.balance += (pnl if realized_pnl is None else realized_pnl) - fill.commission
    _mark_equity(s)
    s.updated_at = at
    return s, _evaluate(s, rules, at)


def on_mark(
    state: FundedState,
    rules: AccountRules,
    at: datetime,
    live_equity: Decimal | None = None,
    prices: dict[str, Decimal] | None = None,
) -> Transition:
    """New prices for open positions, or the broker's live equity directly (which then wins)."""
    s = state.model_copy(deep=True)
    _roll(s, rules, at)
    for symbol, price in (prices or {}).items():
        if symbol in s.positions:
            s.positions[symbol].mark = price
    _mark_equity(s)
    if live_equity is not None:
        s.live_equity = live_equity
    s.updated_at = at
    return s, _evaluate(s, rules, at)


def on_session_close(state: FundedState, rules: AccountRules, balance: Decimal, at: datetime) -> Transition:
    """End of the futures session with the settled `balance`: record the day, move an EOD floor, start the
    next session (a soft block ends when that session opens)."""
    s = state.model_copy(deep=True)
    breaches: list[Breach] = []
    s.balance = balance
    _mark_equity(s)
    if not s.locked and s.live_equity <= s.floor:
        breaches = _evaluate(s, rules, at)
    current = s.session or _day(rules, at)
    _close_session(s, rules, balance, max(following_session(current, rules.calendar), _day(rules, at)))
    s.updated_at = at
    return s, breaches


def reset_lock(state: FundedState, at: datetime) -> FundedState:
    """Operator reset after a hard breach (the firm reset or a new account): unlock, keep the numbers."""
    return state.model_copy(update={"locked": False, "lock_reason": None, "updated_at": at})


def contracts_allowed(state: FundedState, rules: AccountRules) -> int | None:
    """Max contracts now: the scaling tier for the profit at the session start, capped by max_contracts."""
    allowed = rules.max_contracts
    if rules.scaling_plan:
        profit = state.session_start_balance - rules.starting_balance
        tiers = [t for t in sorted(rules.scaling_plan, key=lambda t: t.min_profit) if profit >= t.min_profit]
        tier = tiers[-1].max_contracts if tiers else min(t.max_contracts for t in rules.scaling_plan)
        allowed = tier if allowed is None else min(allowed, tier)
    return allowed


def check_order(state: FundedState, rules: AccountRules, contracts_after: Decimal, at: datetime,
                micros_after: Decimal | None = None) -> list[Breach]:
    """Rejects for an order that would leave `contracts_after` open contracts (absolute, all symbols, in the
    firm's counting unit: `AccountRules.weighted_contracts`) and `micros_after` micro contracts. Orders that
    reduce exposure are always allowed."""
    contracts_now = rules.weighted_contracts(state.quantities)
    micros_now = rules.micro_contracts(state.quantities)
    adds_micros = micros_after is not None and micros_after > micros_now
    if contracts_after <= contracts_now and not adds_micros:
        return []
    session = _day(rules, at)
    nums = {"contracts_after": _count(contracts_after), "contracts_now": _count(contracts_now)}
    if state.locked:
        detail = f"Account locked ({state.lock_reason}); an operator must reset it"
        return [_breach("account_locked", "reject", at, detail, **nums)]
    if _is_blocked(state, at):
        until = state.blocked_until.isoformat() if state.blocked_until else ""
        return [_breach("session_blocked", "reject", at, f"Blocked by {state.block_reason} until {until}", **nums)]
    if _past_flat_by(rules, session, at):
        detail = "Past the flat-by time for this session; no new positions until the next one"
        return [_breach("flat_by", "reject", at, detail, **nums)]
    probe = state
    if state.session is not None and session > state.session:
        probe = state.model_copy(update={"session_start_balance": state.balance})
    allowed = contracts_allowed(probe, rules)
    if allowed is not None and contracts_after > contracts_now and contracts_after > allowed:
        unit = " (mini-equivalent; 10 micros = 1)" if rules.micro_weight != 1 else ""
        detail = f"{_count(contracts_after)} contracts{unit} would exceed the limit of {allowed}"
        return [_breach("max_contracts", "reject", at, detail, max_contracts=allowed, **nums)]
    if adds_micros and rules.max_micros is not None and micros_after is not None and micros_after > rules.max_micros:
        detail = f"{_count(micros_after)} micro contracts would exceed the micro limit of {rules.max_micros}"
        return [_breach("max_micros", "reject", at, detail, max_micros=rules.max_micros,
                        micros_after=_count(micros_after), **nums)]
    return []


def _count(x: Decimal) -> str:
    return f"{x.normalize():f}"


def contracts_after(rules: AccountRules, positions: dict[str, Decimal], symbol: str,
                    signed_qty: Decimal) -> tuple[Decimal, Decimal]:
    """(contracts in the firm's unit, micro contracts) left open if `signed_qty` of `symbol` fills."""
    after = dict(positions)
    after[symbol] = after.get(symbol, ZERO) + signed_qty
    return rules.weighted_contracts(after), rules.micro_contracts(after)


def snapshot(state: FundedState, rules: AccountRules, at: datetime | None = None) -> dict[str, Any]:
    """Numbers for `/risk`, alerts and `traderd risk simulate`: floors and what is left before each limit."""
    s = state
    out: dict[str, Any] = {
        "balance": plain_money(s.balance),
        "live_equity": plain_money(s.live_equity),
        "peak": plain_money(s.peak),
        "session": s.session.isoformat() if s.session else None,
        "floors": {"max_loss": plain_money(s.floor)},
        "left": {"max_loss": plain_money(s.live_equity - s.floor)},
        "floor_locked": s.floor_locked,
        "contracts": _count(rules.weighted_contracts(s.quantities)),
        "micros": _count(rules.micro_contracts(s.quantities)),
        "minis": _count(s.contracts - rules.micro_contracts(s.quantities)),
        "contracts_allowed": contracts_allowed(s, rules),
        "blocked_until": s.blocked_until.isoformat() if s.blocked_until else None,
        "block_reason": s.block_reason,
        "locked": s.locked,
        "lock_reason": s.lock_reason,
    }
    if rules.daily_loss_limit is not None:
        daily_floor = s.session_start_balance - rules.daily_loss_limit
        out["floors"]["daily_loss_limit"] = plain_money(daily_floor)
        out["left"]["daily_loss_limit"] = plain_money(s.live_equity - daily_floor)
    if rules.safety_buffer > 0:
        out["left"]["safety_buffer"] = plain_money(min(Decimal(v) for v in out["left"].values()) - rules.safety_buffer)
    profit = s.balance - rules.starting_balance
    if rules.profit_target is not None:
        out["profit_target"] = {
            "target": plain_money(rules.profit_target),
            "profit": plain_money(profit),
            "left": plain_money(max(ZERO, rules.profit_target - profit)),
            "reached": profit >= rules.profit_target,
        }
    if rules.consistency_pct is not None:
        days = dict(s.day_pnl)
        if s.session is not None:
            days[s.session.isoformat()] = s.balance - s.session_start_balance
        out["consistency"] = consistency.report(days.values(), profit, rules.consistency_pct,
                                                rules.consistency_strict)
    if at is not None and s.session is not None:
        deadline = flat_by_at(rules, s.session)
        out["flat_by"] = deadline.isoformat() if deadline else None
    return out
