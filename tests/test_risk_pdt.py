"""Day-trade counting, the pattern-day-trader test, intraday buying power and cash-account settlement."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time
from decimal import Decimal

import pytest

from daemon.calendar import NEW_YORK
from daemon.domain import Fill, OrderRequest, Side
from daemon.risk.cash import check_cash_order, settlement_date
from daemon.risk.pdt import (
    CountMethod,
    check_buying_power,
    count_day,
    window_report,
    would_block,
)

_ids = itertools.count()
MON = date(2026, 3, 2)  # a week without holidays: 2026-03-02 .. 03-06


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=NEW_YORK)


def fill(ts: datetime, side: str, qty: int, symbol: str = "XYZ", price: str = "10", order: str | None = None) -> Fill:
    n = next(_ids)
    oid = order or f"o{n}"
    return Fill(
        fill_id=f"f{n}",
        broker_order_id=oid,
        client_order_id=oid,
        account="a",
        symbol=symbol,
        side=Side(side),
        quantity=Decimal(qty),
        price=Decimal(price),
        filled_at=ts,
    )


def seq(day: date, *legs: tuple[str, int], start_hour: int = 10) -> list[Fill]:
    return [fill(at(day, start_hour, i), side, qty) for i, (side, qty) in enumerate(legs)]


# Day-trade counting. Traditional method (FINRA day-trading FAQ: "any opening transaction closed out in
# part or in full the same day is a day trade"; worked examples as published by brokers, e.g.
# https://www.scottrade.com/knowledge-center/investment-education/trading-topics/day-trading/counting-day-trades.html).
# Direction method: FINRA Regulatory Notice 21-13, Interpretation /02 of Rule 4210(f)(8)(B)(ii): count the
# changes of trading direction, so a run of purchases followed by a run of sales is one day trade.
COUNTING = [
    # (legs, traditional, direction, why)
    ([("buy", 100), ("sell", 100)], 1, 1, "one round trip"),
    ([("buy", 100), ("sell", 50), ("sell", 50)], 1, 1, "one opening closed in two sales (example 1)"),
    ([("buy", 50), ("buy", 50), ("sell", 100)], 2, 1, "two openings closed by one sale (example 2)"),
    ([("buy", 50), ("buy", 50), ("sell", 51)], 2, 1, "the second opening partly closed (example 3)"),
    ([("buy", 100), ("buy", 100), ("buy", 800), ("sell", 400)], 3, 1, "three openings touched by one sale"),
    ([("buy", 100), ("buy", 100), ("sell", 200)], 2, 1, "buy 100, buy 100, sell 200"),
    ([("buy", 100), ("sell", 100), ("buy", 100), ("sell", 100)], 2, 2, "two round trips"),
    ([("sell", 100), ("buy", 100)], 1, 1, "short then cover"),
    ([("buy", 100), ("sell", 200), ("buy", 100)], 2, 2, "long, flip short, cover"),
    ([("buy", 100)], 0, 0, "opened, held overnight"),
]


@pytest.mark.parametrize(("legs", "traditional", "direction", "why"), COUNTING)
def test_day_trade_counting(legs: list[tuple[str, int]], traditional: int, direction: int, why: str) -> None:
    fills = seq(MON, *legs)
    assert count_day(fills, MON, CountMethod.TRADITIONAL).day_trades == traditional, why
    assert count_day(fills, MON, CountMethod.DIRECTION).day_trades == direction, why


def test_overnight_position_closed_before_any_new_opening_is_not_a_day_trade() -> None:
    # Rule 4210(f)(8)(B)(i): a long position held overnight and sold the next day prior to any new
    # purchase of the same security is not a day trade.
    held = [fill(at(MON, 15), "buy", 100)]
    tue = date(2026, 3, 3)
    next_day = seq(tue, ("sell", 100), ("buy", 100), ("sell", 100))
    assert count_day(held + next_day, tue).day_trades == 1  # only the later buy/sell
    # Selling the overnight shares after a new purchase the same day: the sale closes today's lot first.
    after_buy = seq(tue, ("buy", 100), ("sell", 100))
    assert count_day(held + after_buy, tue).day_trades == 1
    # Short held overnight, covered before any new short sale: not a day trade.
    short = [fill(at(MON, 15), "sell", 100)]
    assert count_day(short + seq(tue, ("buy", 100)), tue).day_trades == 0


def test_partial_fills_of_one_order_are_one_transaction() -> None:
    fills = [
        fill(at(MON, 10, 0), "buy", 60, order="A"),
        fill(at(MON, 10, 1), "buy", 40, order="A"),
        fill(at(MON, 11, 0), "sell", 100, order="B"),
    ]
    day = count_day(fills, MON)
    assert (day.day_trades, day.trades) == (1, 2)


def test_symbols_are_counted_separately() -> None:
    fills = [
        fill(at(MON, 10), "buy", 10, "AAA"),
        fill(at(MON, 10, 1), "buy", 10, "BBB"),
        fill(at(MON, 11), "sell", 10, "AAA"),
    ]
    assert count_day(fills, MON).by_symbol == {"AAA": 1}


def _round_trips(days: list[date]) -> list[Fill]:
    out: list[Fill] = []
    for d in days:
        out += seq(d, ("buy", 10), ("sell", 10))
    return out


def test_pattern_is_four_day_trades_in_five_business_days() -> None:
    week = [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)]
    report = window_report(_round_trips(week), date(2026, 3, 6))
    assert (report.day_trades, report.trades, report.is_pattern) == (4, 8, True)
    # A week later the oldest day has rolled out of the window.
    later = window_report(_round_trips(week), date(2026, 3, 9))
    assert (later.day_trades, later.is_pattern) == (3, False)


def test_window_skips_exchange_holidays() -> None:
    # Good Friday 2026-04-03 is not a business day: Mon 03-30 is still inside the window ending Mon 04-06.
    days = [date(2026, 3, 30), date(2026, 3, 31), date(2026, 4, 1), date(2026, 4, 6)]
    report = window_report(_round_trips(days), date(2026, 4, 6))
    assert report.days[0].day == date(2026, 3, 30)
    assert report.is_pattern


@pytest.mark.parametrize(
    ("extra_trades", "pattern"),
    [
        (58, True),  # 4 day trades out of 66 trades = 6.06% > 6%: pattern day trader
        (59, False),  # 4 out of 67 = 5.97% <= 6%: not a pattern day trader (Rule 4210(f)(8)(B)(ii))
    ],
)
def test_six_percent_exemption(extra_trades: int, pattern: bool) -> None:
    fills = _round_trips([date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 5)])
    # Buys held overnight (never closed the same day) add trades but not day trades.
    for i in range(extra_trades):
        fills.append(fill(at(date(2026, 3, 2), 12, 0), "buy", 1, symbol=f"S{i}"))
    report = window_report(fills, date(2026, 3, 6))
    assert report.day_trades == 4
    assert report.is_pattern is pattern


def _order(side: str, qty: int, symbol: str = "XYZ") -> OrderRequest:
    return OrderRequest(
        client_order_id="c", account="a", symbol=symbol, side=Side(side), quantity=Decimal(qty),
        reference_price=Decimal(10),
    )  # fmt: skip


def test_would_block_the_fourth_day_trade_below_minimum_equity() -> None:
    fills = _round_trips([date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)])
    fills.append(fill(at(date(2026, 3, 5), 10), "buy", 10))
    now = at(date(2026, 3, 5), 11)
    blocked = would_block(_order("sell", 10), fills, equity=Decimal(20000), asof=now)
    assert not blocked.allowed
    assert (blocked.day_trades_used, blocked.day_trades_left, blocked.order_is_day_trade) == (3, 0, True)
    assert "blocked" in blocked.message
    rich = would_block(_order("sell", 10), fills, equity=Decimal(25000), asof=now)
    assert rich.allowed and not rich.warning
    # An opening order is not a day trade: allowed, with a warning that none are left.
    opening = would_block(_order("buy", 10, "NEW"), fills, equity=Decimal(20000), asof=now)
    assert opening.allowed and opening.warning and not opening.order_is_day_trade


def test_would_block_warns_when_one_day_trade_is_left() -> None:
    fills = _round_trips([date(2026, 3, 2)])
    fills.append(fill(at(date(2026, 3, 3), 10), "buy", 10))
    decision = would_block(_order("sell", 10), fills, Decimal(1000), asof=at(date(2026, 3, 3), 11))
    assert decision.allowed and decision.warning
    assert (decision.day_trades_used, decision.day_trades_left) == (1, 1)
    assert decision.numbers()["day_trades_left"] == "1"


def test_intraday_margin_buying_power() -> None:
    ok = check_buying_power(Decimal(4000), exposure=Decimal(5000), buying_power=Decimal(10000))
    assert ok.allowed and ok.left == Decimal(5000)
    refused = check_buying_power(Decimal(-6000), exposure=Decimal(5000), buying_power=Decimal(10000))
    assert not refused.allowed and "buying power" in refused.message


def test_settlement_is_t_plus_one_business_day() -> None:
    assert settlement_date(date(2026, 3, 6)) == date(2026, 3, 9)  # Friday -> Monday
    assert settlement_date(date(2026, 4, 2)) == date(2026, 4, 6)  # skips Good Friday


def test_good_faith_violation() -> None:
    # Adapted from DriveWealth's example 1 (https://support.drivewealth.com/hc/en-us/articles/4408034993431)
    # for T+1: cash $0; Monday morning sell Y for $5,000; Monday afternoon buy X for $5,000 with those
    # unsettled proceeds; selling X before Tuesday (settlement of the Y sale) is a good-faith violation.
    y_bought = fill(at(date(2026, 2, 27), 10), "buy", 100, "Y", "40")
    fills = [
        y_bought,
        fill(at(MON, 10), "sell", 100, "Y", "50"),
        fill(at(MON, 13), "buy", 100, "X", "50"),
    ]
    start_cash = Decimal(4000)  # paid for Y with settled cash, leaving $0
    sell_x = OrderRequest(
        client_order_id="c", account="a", symbol="X", side=Side.SELL, quantity=Decimal(100),
        reference_price=Decimal(51),
    )  # fmt: skip
    monday = check_cash_order(sell_x, fills, start_cash, at(MON, 15))
    assert not monday.allowed and monday.rule == "good_faith_violation"
    warned = check_cash_order(sell_x, fills, start_cash, at(MON, 15), allow_unsettled=True)
    assert warned.allowed and warned.warning
    tuesday = check_cash_order(sell_x, fills, start_cash, at(date(2026, 3, 3), 10))
    assert tuesday.allowed and tuesday.rule is None


def test_purchase_beyond_settled_cash() -> None:
    fills = [fill(at(MON, 10), "sell", 100, "Y", "50")]
    start = Decimal(1000)
    buy = OrderRequest(
        client_order_id="c", account="a", symbol="X", side=Side.BUY, quantity=Decimal(100),
        reference_price=Decimal(20),
    )  # fmt: skip
    # Sold Y short of holdings is outside a cash account's model; treat proceeds as unsettled until Tuesday.
    decision = check_cash_order(buy, fills, start, at(MON, 11))
    assert not decision.allowed and decision.rule == "unsettled_funds_purchase"
    assert (decision.settled_cash, decision.unsettled_cash) == (Decimal(1000), Decimal(5000))
    next_day = check_cash_order(buy, fills, start, at(date(2026, 3, 3), 10))
    assert next_day.allowed and next_day.settled_cash == Decimal(6000)
