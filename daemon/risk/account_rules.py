"""Pre-trade checks of the account rules (PDT, cash settlement, funded) and their rows for `/risk`.

Called by `RiskEngine` with an `OrderContext` that carries what each rule needs: broker-reported account
state (equity, cash, buying power) and the account's fills since the start of the five-business-day PDT
window (only for accounts whose PDT or cash rules need them). Refusals and warnings are `Violation`s with
the numbers behind them; a warning's `numbers` hold `severity = "warning"`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from config.risk import CashSettings, PdtSettings
from daemon.calendar import NEW_YORK, previous_business_days, trade_date
from daemon.domain import ZERO, AccountState, Fill, Side, Violation
from daemon.money import money
from daemon.risk import cash, funded, pdt
from daemon.risk.context import LimitStatus, OrderContext


def pdt_window_start(now: datetime) -> datetime:
    """Midnight New York time of the first of the five business days ending today (ET trade date)."""
    first: date = previous_business_days(trade_date(now), pdt.WINDOW_DAYS)[0]
    return datetime.combine(first, time(0), tzinfo=NEW_YORK)


def with_carry(fills: Sequence[Fill], positions: Mapping[str, Decimal], start: datetime,
               account: str) -> list[Fill]:
    """The window's fills plus one synthetic fill per symbol for the position held before the window, so
    that an overnight position closed today is not mistaken for a same-day opening (and the reverse)."""
    net: dict[str, Decimal] = {}
    for f in fills:
        net[f.symbol] = net.get(f.symbol, ZERO) + f.quantity * f.side.sign
    carry = []
    for symbol in sorted(set(positions) | set(net)):
        qty = positions.get(symbol, ZERO) - net.get(symbol, ZERO)
        if qty != 0:
            carry.append(Fill(
                fill_id=f"carry_{symbol}", broker_order_id=f"carry_{symbol}", client_order_id="carry",
                account=account, symbol=symbol, side=Side.BUY if qty > 0 else Side.SELL, quantity=abs(qty),
                price=ZERO, filled_at=start - timedelta(days=1),
            ))
    return [*carry, *fills]


def _violation(ctx: OrderContext, rule: str, detail: str, numbers: Mapping[str, Any],
               warning: bool = False) -> Violation:
    nums = {k: str(v) for k, v in numbers.items()}
    if warning:
        nums["severity"] = "warning"
    req = ctx.request
    return Violation(account=req.account, rule=rule, detail=detail, numbers=nums, signal_id=ctx.signal_id,
                     symbol=req.symbol, at=ctx.now)


Checked = tuple[list[Violation], list[Violation]]  # (refusals, warnings)


def check_pdt(ctx: OrderContext, settings: PdtSettings) -> Checked:
    """`legacy`: refuse the order that would make the 4th day trade in 5 business days below the minimum
    equity, warn when one or none is left. `intraday_margin`: refuse an order adding exposure beyond the
    broker-reported buying power (read as what is available now). `off`: nothing."""
    if settings.mode == "off":
        return [], []
    state = ctx.account_state
    if state is None:
        return [_violation(ctx, "pdt", "PDT: the broker did not report the account's equity", {})], []
    if settings.mode == "intraday_margin":
        if ctx.reduces_only:
            return [], []
        if ctx.price is None:
            return [_violation(ctx, "intraday_margin", "no price known to check buying power; include price "
                               "in the alert", {})], []
        if state.buying_power is None:
            return [_violation(ctx, "intraday_margin", "the broker reports no buying power", {})], []
        notional = _added_notional(ctx, ctx.price)
        if pdt.check_buying_power(notional, ZERO, state.buying_power).allowed:
            return [], []
        detail = (f"intraday margin: order notional {money(notional)} exceeds buying power "
                  f"{money(state.buying_power)}")
        return [_violation(ctx, "intraday_margin", detail,
                           {"order_notional": notional, "buying_power": state.buying_power})], []
    start = pdt_window_start(ctx.now)
    fills = with_carry(ctx.recent_fills, ctx.positions, start, ctx.request.account)
    decision = pdt.would_block(ctx.request, fills, state.equity, settings.min_equity, ctx.now,
                               pdt.CountMethod(settings.method))
    if not decision.allowed:
        return [_violation(ctx, "pdt", decision.message, decision.numbers())], []
    if decision.is_pattern and not ctx.reduces_only:
        refused = _check_dtbp(ctx, settings, fills)
        if refused:
            return refused, []
    if decision.warning and (decision.order_is_day_trade or not ctx.reduces_only):
        detail = (f"PDT warning: {decision.day_trades_left} day trade(s) left in 5 business days with equity "
                  f"{money(decision.equity)} < {money(decision.min_equity)}")
        return [], [_violation(ctx, "pdt", detail, decision.numbers(), warning=True)]
    return [], []


def _added_notional(ctx: OrderContext, price: Decimal) -> Decimal:
    """Notional the order adds to the position (a flip adds its new side; reducing adds nothing)."""
    adds = abs(ctx.after) - abs(ctx.current) if (ctx.after >= 0) == (ctx.current >= 0) else abs(ctx.after)
    return max(adds, ZERO) * price * ctx.multiplier


def day_trading_buying_power(state: AccountState, call_open: bool) -> tuple[Decimal, bool]:
    """(DTBP, reported by the broker?). The broker's figure is what is left now; otherwise it is computed
    from the previous close's equity and maintenance requirement (FINRA 4210(f)(8)(B)(iv))."""
    if state.day_trading_buying_power is not None:
        return state.day_trading_buying_power, True
    equity = state.prior_close_equity if state.prior_close_equity is not None else state.equity
    maintenance = state.maintenance_margin if state.maintenance_margin is not None else ZERO
    return pdt.day_trading_buying_power(equity, maintenance, call_open), False


def _check_dtbp(ctx: OrderContext, settings: PdtSettings, fills: Sequence[Fill]) -> list[Violation]:
    """A pattern day trader's order must keep the day's open exposure within day-trading buying power."""
    assert ctx.account_state is not None
    if ctx.price is None:
        return [_violation(ctx, "day_trading_buying_power", "no price known to check day-trading buying power; "
                           "include price in the alert", {})]
    dtbp, reported = day_trading_buying_power(ctx.account_state, settings.day_trading_call)
    added = _added_notional(ctx, ctx.price)
    exposure = ZERO if reported else pdt.open_day_exposure(
        fills, trade_date(ctx.now), multipliers={ctx.request.symbol: ctx.multiplier})
    if exposure + added <= dtbp:
        return []
    source = "reported by the broker" if reported else (
        f"(prior close equity - maintenance) x {2 if settings.day_trading_call else 4}")
    detail = (f"day-trading buying power: order {money(added)} + today's open exposure {money(exposure)} "
              f"exceeds {money(dtbp)} {source}")
    return [_violation(ctx, "day_trading_buying_power", detail, {
        "order_notional": added, "exposure": exposure, "day_trading_buying_power": dtbp,
        "source": "broker" if reported else "computed"})]


def check_cash(ctx: OrderContext, settings: CashSettings) -> Checked:
    """Cash account (T+1): refuse a good-faith violation and a purchase beyond settled cash, or only warn."""
    if not settings.cash_account:
        return [], []
    state = ctx.account_state
    if state is None:
        return [_violation(ctx, "cash_account", "cash account: the broker did not report cash", {})], []
    request = ctx.request
    if request.side is Side.BUY and ctx.price is None and request.reference_price is None:
        return [_violation(ctx, "unsettled_funds_purchase", "cash account: no price known to check settled "
                           "cash; include price in the alert", {})], []
    if request.reference_price is None and ctx.price is not None:
        request = request.model_copy(update={"reference_price": ctx.price})
    flow = sum(((f.quantity * f.price * (1 if f.side is Side.SELL else -1)) - f.commission
                for f in ctx.recent_fills), ZERO)
    decision = cash.check_cash_order(request, ctx.recent_fills, state.cash - flow, ctx.now,
                                    settings.allow_unsettled)
    if decision.rule is None:
        return [], []
    numbers = {"settled_cash": decision.settled_cash, "unsettled_cash": decision.unsettled_cash}
    found = _violation(ctx, decision.rule, decision.message, numbers, warning=decision.warning)
    return ([], [found]) if decision.allowed else ([found], [])


def check_funded(ctx: OrderContext, rules: funded.AccountRules, state: funded.FundedState) -> list[Violation]:
    """Contracts (weighted as the firm counts them; scaling plan; micro cap), soft block, hard lock and
    flat-by; orders that reduce exposure pass."""
    positions = dict(ctx.positions)  # the broker's positions are the ones that count
    contracts_now = rules.weighted_contracts(positions)
    micros_now = rules.micro_contracts(positions)
    after, micros_after = funded.contracts_after(rules, positions, ctx.request.symbol, ctx.after - ctx.current)
    if after <= contracts_now and micros_after <= micros_now:
        return []
    probe = state.model_copy(update={"positions": {
        s: funded.OpenPosition(qty=q, avg_price=ZERO, mark=ZERO, point_value=ZERO) for s, q in positions.items()
        if q != 0}})
    breaches = funded.check_order(probe, rules, after, ctx.now, micros_after)
    return [b.to_violation(ctx.request.account, ctx.signal_id, ctx.request.symbol) for b in breaches]


# ---- /risk rows ------------------------------------------------------------------------------------


def describe_pdt(settings: PdtSettings, fills: Sequence[Fill], positions: Mapping[str, Decimal],
                 account: str, now: datetime) -> list[LimitStatus]:
    if settings.mode == "intraday_margin":
        return [LimitStatus("intraday_margin", "-", "broker buying power", "checked per order")]
    if settings.mode != "legacy":
        return []
    start = pdt_window_start(now)
    report = pdt.window_report(with_carry(fills, positions, start, account), trade_date(now),
                               pdt.CountMethod(settings.method))
    allowed = pdt.PATTERN_THRESHOLD - 1
    return [LimitStatus(
        "day_trades", f"{report.day_trades} in 5 business days ({report.trades} trades)",
        f"{allowed} below {money(settings.min_equity)} equity ({settings.method})",
        str(max(0, allowed - report.day_trades)), report.is_pattern,
    )]


def describe_cash(settings: CashSettings) -> list[LimitStatus]:
    if not settings.cash_account:
        return []
    action = "warn" if settings.allow_unsettled else "refuse"
    return [LimitStatus("cash_settlement", "-", f"T+1 settled cash ({action} otherwise)", "checked per order")]


def describe_funded(rules: funded.AccountRules, state: funded.FundedState, now: datetime,
                    positions: Mapping[str, Decimal] | None = None) -> list[LimitStatus]:
    """The funded rows; `positions` (the broker's) count the contracts when given, else the rule book's."""
    snap = funded.snapshot(state, rules, now)
    rows: list[LimitStatus] = []
    if rules.daily_loss_limit is not None:
        loss = max(ZERO, state.session_start_balance - state.live_equity)
        rows.append(LimitStatus(
            "daily_loss_limit", money(loss), money(rules.daily_loss_limit), money(snap["left"]["daily_loss_limit"]),
            state.block_reason == "daily_loss_limit",
        ))
    rows.append(LimitStatus(
        "max_loss", f"equity {money(state.live_equity)}",
        f"floor {money(state.floor)} ({rules.drawdown_model}{', locked' if state.floor_locked else ''})",
        money(snap["left"]["max_loss"]), state.locked,
    ))
    if rules.safety_buffer > 0:
        rows.append(LimitStatus("safety_buffer", "-", money(rules.safety_buffer),
                                money(snap["left"]["safety_buffer"]), state.block_reason == "safety_buffer"))
    allowed = snap["contracts_allowed"]
    if allowed is not None:
        held = state.quantities if positions is None else dict(positions)
        weighted, micros = rules.weighted_contracts(held), rules.micro_contracts(held)
        minis = sum((abs(q) for q in held.values()), ZERO) - micros
        used = f"{weighted.normalize():f}"
        if micros:  # both counts, and how the firm weighs micros
            used += f" ({minis.normalize():f} minis + {micros.normalize():f} micros at {rules.micro_weight:f} each)"
        limit = str(allowed) + (f" ({rules.max_micros} micros max)" if rules.max_micros else "")
        rows.append(LimitStatus("contracts", used, limit, f"{(Decimal(allowed) - weighted).normalize():f}",
                                weighted > allowed or (rules.max_micros is not None and micros > rules.max_micros)))
    if rules.flat_by is not None and state.session is not None:
        deadline = funded.flat_by_at(rules, state.session)
        assert deadline is not None
        flatten_at = deadline - timedelta(seconds=rules.flatten_lead_seconds)
        left = flatten_at - now
        rows.append(LimitStatus("flat_by", "-", f"{deadline:%H:%M %Z} (flatten {rules.flatten_lead_seconds}s before)",
                                _duration(left) if left > timedelta(0) else "past", left <= timedelta(0)))
    if "profit_target" in snap:
        target = snap["profit_target"]
        rows.append(LimitStatus("profit_target", money(target["profit"]), money(target["target"]),
                                money(target["left"]), False))
    if "consistency" in snap:
        cons = snap["consistency"]
        pct = f"{cons['best_day_pct']}%" if cons["best_day_pct"] is not None else "-"
        verdict = "ok" if cons["ok"] else f"not met: {money(cons['more_needed'])} more profit needed"
        rows.append(LimitStatus("consistency", f"best day {money(cons['best_day'])} = {pct}",
                                f"{cons['boundary']} {cons['limit_pct']}% of profit", verdict, False))
    if state.locked:
        rows.append(LimitStatus("account_lock", state.lock_reason or "locked", "operator reset", "-", True))
    elif state.blocked_until is not None and now < state.blocked_until:
        rows.append(LimitStatus("session_block", state.block_reason or "blocked", "next session",
                                f"until {state.blocked_until.isoformat()}", True))
    return rows


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
