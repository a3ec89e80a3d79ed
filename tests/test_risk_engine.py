"""RiskEngine with PDT (legacy, intraday margin), cash-account T+1 and funded rules configured, and describe()."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from config.risk import CashSettings, FundedSettings, PdtSettings
from config.settings import RiskLimits
from daemon.calendar import CHICAGO, NEW_YORK
from daemon.domain import AccountState, Fill, OrderRequest, Side
from daemon.risk import funded
from daemon.risk.context import LimitStatus, OrderContext
from daemon.risk.engine import AccountRisk, RiskEngine
from daemon.risk.funded_book import FundedBook, FundedConfigError, rules_from_settings

_ids = itertools.count()
MON = date(2026, 3, 2)  # 2026-03-02 .. 03-06: no NYSE holidays
FRI = date(2026, 3, 6)


def et(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=NEW_YORK)


def fill(ts: datetime, side: str, qty: int, symbol: str = "XYZ", price: str = "10", account: str = "m") -> Fill:
    n = next(_ids)
    return Fill(fill_id=f"f{n}", broker_order_id=f"o{n}", client_order_id=f"c{n}", account=account, symbol=symbol,
                side=Side(side), quantity=Decimal(qty), price=Decimal(price), filled_at=ts)


def round_trip(day: date, hour: int, symbol: str = "XYZ") -> list[Fill]:
    return [fill(et(day, hour), "buy", 10, symbol), fill(et(day, hour, 30), "sell", 10, symbol)]


def state(equity: str, cash: str | None = None, buying_power: str | None = None, account: str = "m") -> AccountState:
    return AccountState(account=account, broker="paper", cash=Decimal(cash or equity), equity=Decimal(equity),
                        buying_power=Decimal(buying_power) if buying_power else None)


def ctx(side: str, qty: str, *, symbol: str = "XYZ", account: str = "m", positions: dict[str, str] | None = None,
        price: str | None = "10", now: datetime, account_state: AccountState | None = None,
        fills: Sequence[Fill] = (), multiplier: str = "1") -> OrderContext:
    request = OrderRequest(client_order_id=f"req{next(_ids)}", account=account, symbol=symbol, side=Side(side),
                           quantity=Decimal(qty), reference_price=Decimal(price) if price else None)
    held = {k: Decimal(v) for k, v in (positions or {}).items()}
    return OrderContext(request=request, signal_id="sig", positions=held,
                        price=Decimal(price) if price else None, multiplier=Decimal(multiplier), now=now,
                        account_state=account_state, recent_fills=fills)


def engine_for(**accounts: AccountRisk) -> RiskEngine:
    return RiskEngine(accounts, clock=lambda: et(FRI, 15))


LEGACY = AccountRisk(pdt=PdtSettings(mode="legacy"))


# ---- PDT legacy: FINRA 4210(f)(8)(B) -------------------------------------------------------------------

def test_fourth_day_trade_is_refused_below_min_equity_with_the_numbers() -> None:
    fills = [*round_trip(MON, 10), *round_trip(date(2026, 3, 3), 10), *round_trip(date(2026, 3, 4), 10),
             fill(et(FRI, 10), "buy", 10, "ABC")]
    check = ctx("sell", "10", symbol="ABC", positions={"ABC": "10"}, now=et(FRI, 11),
                account_state=state("20000"), fills=fills)
    result = engine_for(m=LEGACY).check(check)
    [v] = result.violations
    assert v.rule == "pdt" and "day trade #4" in v.detail and "blocked" in v.detail
    assert v.numbers["day_trades_used"] == "3" and v.numbers["equity"] == "20000"
    assert v.numbers["min_equity"] == "25000"
    # The same order with equity at the minimum goes through.
    assert engine_for(m=LEGACY).check(ctx("sell", "10", symbol="ABC", positions={"ABC": "10"}, now=et(FRI, 11),
                                          account_state=state("25000"), fills=fills)).violations == []


def test_closing_an_overnight_position_is_not_a_day_trade() -> None:
    # ABC was bought before the window (the store has no fill for it): the broker position carries it in.
    fills = [*round_trip(MON, 10), *round_trip(date(2026, 3, 3), 10), *round_trip(date(2026, 3, 4), 10)]
    check = ctx("sell", "10", symbol="ABC", positions={"ABC": "10"}, now=et(FRI, 11),
                account_state=state("20000"), fills=fills)
    assert engine_for(m=LEGACY).check(check).violations == []


def test_warning_when_one_day_trade_is_left() -> None:
    fills = [*round_trip(MON, 10), fill(et(FRI, 10), "buy", 10, "ABC")]
    result = engine_for(m=LEGACY).check(ctx("sell", "10", symbol="ABC", positions={"ABC": "10"}, now=et(FRI, 11),
                                            account_state=state("20000"), fills=fills))
    assert result.violations == []
    [w] = result.warnings
    assert w.rule == "pdt" and w.numbers["severity"] == "warning" and w.numbers["day_trades_left"] == "1"
    # Plenty left: no warning.
    quiet = engine_for(m=LEGACY).check(ctx("buy", "10", now=et(FRI, 11), account_state=state("20000"), fills=[]))
    assert quiet.violations == [] and quiet.warnings == []


def test_pdt_never_applies_to_a_cash_account() -> None:
    cfg = AccountRisk(pdt=PdtSettings(mode="legacy"), cash=CashSettings(cash_account=True))
    assert not cfg.pdt_applies and cfg.needs_fills


def test_pdt_off_reads_nothing() -> None:
    cfg = AccountRisk()
    assert not cfg.needs_account_state and not cfg.needs_fills


# ---- PDT intraday margin (SR-FINRA-2025-017) -----------------------------------------------------------

def test_intraday_margin_refuses_beyond_buying_power_and_lets_exits_through() -> None:
    risk = engine_for(m=AccountRisk(pdt=PdtSettings(mode="intraday_margin")))
    now = et(FRI, 11)
    over = risk.check(ctx("buy", "100", price="60", now=now, account_state=state("10000", buying_power="5000")))
    [v] = over.violations
    assert v.rule == "intraday_margin" and v.numbers == {"order_notional": "6000", "buying_power": "5000"}
    assert risk.check(ctx("buy", "50", price="60", now=now,
                          account_state=state("10000", buying_power="5000"))).violations == []
    exit_ = ctx("sell", "100", price="60", positions={"XYZ": "100"}, now=now,
                account_state=state("10000", buying_power="0"))
    assert risk.check(exit_).violations == []


# ---- cash account, T+1 (SEC 15c6-1, Regulation T 220.8) -------------------------------------------------

def test_good_faith_violation_is_refused_or_warned() -> None:
    # Monday: sell ABC (proceeds settle Tuesday) and buy XYZ with them; selling XYZ on Monday is a GFV.
    fills = [fill(et(MON, 10), "sell", 100, "ABC", "10"), fill(et(MON, 11), "buy", 100, "XYZ", "10")]
    cash = state(equity="1000", cash="0")  # 1000 of proceeds spent; nothing settled
    sell = ctx("sell", "100", positions={"XYZ": "100"}, now=et(MON, 14), account_state=cash, fills=fills)
    strict = engine_for(m=AccountRisk(cash=CashSettings(cash_account=True))).check(sell)
    [v] = strict.violations
    assert v.rule == "good_faith_violation" and "settle 2026-03-03" in v.detail
    lenient = engine_for(m=AccountRisk(cash=CashSettings(cash_account=True, allow_unsettled=True))).check(sell)
    assert lenient.violations == [] and lenient.warnings[0].rule == "good_faith_violation"
    # Tuesday the proceeds have settled: the sale is fine.
    tuesday = ctx("sell", "100", positions={"XYZ": "100"}, now=et(date(2026, 3, 3), 10), account_state=cash,
                  fills=fills)
    assert engine_for(m=AccountRisk(cash=CashSettings(cash_account=True))).check(tuesday).violations == []


def test_purchase_beyond_settled_cash_is_refused() -> None:
    risk = engine_for(m=AccountRisk(cash=CashSettings(cash_account=True)))
    cash = state("1500", cash="1500")
    [v] = risk.check(ctx("buy", "200", price="10", now=et(FRI, 10), account_state=cash)).violations
    assert v.rule == "unsettled_funds_purchase" and v.numbers["settled_cash"] == "1500"
    assert risk.check(ctx("buy", "100", now=et(FRI, 10), account_state=state("1500", cash="1500"))).violations == []


# ---- funded ---------------------------------------------------------------------------------------------

def topstep(**overrides: object) -> FundedBook:
    rules = rules_from_settings("f", FundedSettings(preset="topstep_50k_combine", overrides=dict(overrides)))
    return FundedBook({"f": rules}, None, clock=lambda: datetime(2026, 3, 3, 9, tzinfo=CHICAGO))


def test_bad_preset_is_a_clear_config_error() -> None:
    with pytest.raises(FundedConfigError, match=r"accounts\.x\.funded: .*unknown preset 'nope'"):
        rules_from_settings("x", FundedSettings(preset="nope"))
    with pytest.raises(FundedConfigError, match="max_loss"):
        rules_from_settings("x", FundedSettings(preset="topstep_50k_combine", overrides={"max_loss": "-1"}))


def test_funded_contract_limit_block_and_exits() -> None:
    book = topstep()
    risk = RiskEngine({"f": RiskLimits()}, funded=book)
    at = datetime(2026, 3, 3, 9, tzinfo=CHICAGO)
    [v] = risk.check(ctx("buy", "6", symbol="ES", account="f", now=at)).violations
    assert v.rule == "max_contracts" and v.numbers["max_contracts"] == "5"
    assert risk.check(ctx("buy", "2", symbol="ES", account="f", positions={"ES": "3"}, now=at)).violations == []
    # Soft block: entries refused until the next session, exits pass.
    blocked = book.state("f").model_copy(update={"blocked_until": datetime(2026, 3, 3, 17, tzinfo=CHICAGO),
                                                 "block_reason": "daily_loss_limit"})
    book.save("f", blocked)
    [v] = risk.check(ctx("buy", "1", symbol="ES", account="f", now=at)).violations
    assert v.rule == "session_blocked" and "daily_loss_limit" in v.detail
    assert risk.check(ctx("sell", "1", symbol="ES", account="f", positions={"ES": "1"}, now=at)).violations == []
    assert risk.check(ctx("buy", "1", symbol="ES", account="f", now=at + timedelta(hours=8))).violations == []


def test_funded_flat_by_refuses_new_exposure() -> None:
    risk = RiskEngine({"f": RiskLimits()}, funded=topstep())
    late = datetime(2026, 3, 3, 15, 30, tzinfo=CHICAGO)  # Topstep: flat by 15:10 CT
    [v] = risk.check(ctx("buy", "1", symbol="ES", account="f", now=late)).violations
    assert v.rule == "flat_by"


def test_locked_account_reports_only_the_lock() -> None:
    risk = RiskEngine({"f": RiskLimits(max_order_quantity=Decimal(1))}, funded=topstep())
    check = ctx("buy", "3", symbol="ES", account="f", now=datetime(2026, 3, 3, 9, tzinfo=CHICAGO))
    check = OrderContext(**{**check.__dict__, "locked": True})
    assert [v.rule for v in risk.check(check).violations] == ["locked"]


# ---- describe -------------------------------------------------------------------------------------------

def test_describe_covers_every_configured_limit() -> None:
    book = topstep(safety_buffer="100")
    at = datetime(2026, 3, 3, 9, tzinfo=CHICAGO)
    state_, _ = funded.on_fill(book.state("f"), book.rules["f"], fill(at, "buy", 2, "ES", "5000", "f"))
    state_, _ = funded.on_mark(state_, book.rules["f"], at + timedelta(minutes=1), prices={"ES": Decimal("4996")})
    book.save("f", state_)
    risk = RiskEngine({"f": RiskLimits(max_position=Decimal(4), max_orders_per_minute=10),
                       "m": AccountRisk(pdt=PdtSettings(mode="legacy"))},
                      clock=lambda: at + timedelta(minutes=2), funded=book,
                      fills=lambda account, since: [f for f in round_trip(MON, 10) if f.filled_at >= since])
    rows = {r.name: r for r in risk.describe("f", positions={"ES": Decimal(2)})}
    assert set(rows) >= {"max_position", "max_orders_per_minute", "daily_loss_limit", "max_loss", "safety_buffer",
                         "contracts", "flat_by", "profit_target"}
    assert rows["daily_loss_limit"] == LimitStatus("daily_loss_limit", "400.00", "1,000.00", "600.00", False)
    assert rows["max_loss"].left == "1,600.00" and rows["max_loss"].limit.startswith("floor 48,000.00")
    assert (rows["contracts"].used, rows["contracts"].limit, rows["contracts"].left) == ("2", "5", "3")
    assert rows["max_position"].left == "2"
    assert rows["profit_target"].limit == "3,000.00"
    [dt] = RiskEngine({"m": LEGACY}, clock=lambda: et(MON, 15),
                      fills=lambda account, since: round_trip(MON, 10)).describe("m")
    assert (dt.name, dt.left, dt.breached) == ("day_trades", "2", False) and dt.used.startswith("1 in 5")
    with pytest.raises(KeyError):
        risk.describe("nope")
