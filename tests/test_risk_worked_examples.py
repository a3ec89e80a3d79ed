"""Rule fidelity from the published worked examples: DTBP, partial fills and broker exports in `risk pdt`,
consistency boundaries, micro/mini weighting, and readable `risk simulate` output."""

from __future__ import annotations

import argparse
import itertools
import json
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import pytest

from config.risk import PdtSettings
from daemon.calendar import CHICAGO, NEW_YORK
from daemon.chat.render import risk_text
from daemon.chat.replies import RiskLine
from daemon.cli import risk as tools
from daemon.domain import AccountState, Fill, OrderRequest, Side
from daemon.risk import consistency, funded
from daemon.risk.context import OrderContext
from daemon.risk.engine import AccountRisk, RiskEngine
from daemon.risk.funded_book import FundedBook
from daemon.risk.pdt import day_trading_buying_power, open_day_exposure

DATA = Path(__file__).parent / "data" / "risk"
D = Decimal
_ids = itertools.count()
MON = date(2026, 3, 2)  # 2026-03-02 .. 03-06: no NYSE holidays


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="traderd")
    tools.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def et(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=NEW_YORK)


def ct(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(date(2026, 3, day), time(hh, mm), tzinfo=CHICAGO)


def fill(ts: datetime, side: str, qty: str, symbol: str, price: str, order: str | None = None) -> Fill:
    n = next(_ids)
    oid = order or f"o{n}"
    return Fill(fill_id=f"f{n}", broker_order_id=oid, client_order_id=oid, account="m", symbol=symbol,
                side=Side(side), quantity=D(qty), price=D(price), filled_at=ts)


# ---- 1. Day-trading buying power: FINRA 4210(f)(8)(B)(iv) ------------------------------------------------

def test_dtbp_is_four_times_maintenance_excess_and_halves_with_a_call() -> None:
    """FINRA 4210(f)(8)(B)(iv)c. and FINRA's "Day-Trading Margin Requirements: Know the Rules": DTBP is four
    times the maintenance margin excess at the previous close, two times while a day-trading call is unmet.
    Worked example: equity 40,000, maintenance requirement 6,000 -> excess 34,000 -> 136,000; 68,000 with a
    call."""
    assert day_trading_buying_power(D(40000), D(6000)) == D(136000)
    assert day_trading_buying_power(D(40000), D(6000), call_open=True) == D(68000)
    assert day_trading_buying_power(D(5000), D(6000)) == 0  # no excess, no buying power


def test_risk_pdt_reports_dtbp(capsys: pytest.CaptureFixture[str]) -> None:
    """`traderd risk pdt --equity 40000 --maintenance 6000` -> 136,000 (FINRA 4210(f)(8)(B)(iv)); `--dt-call`
    -> 68,000."""
    fills = str(DATA / "pdt_fills.csv")
    code, out, _ = run(["risk", "pdt", "--fills", fills, "--equity", "40000", "--maintenance", "6000"], capsys)
    dtbp = json.loads(out)["day_trading_buying_power"]
    assert code == 0 and dtbp["buying_power"] == "136000.00" and dtbp["maintenance_excess"] == "34000"
    _, out, _ = run(["risk", "pdt", "--fills", fills, "--equity", "40000", "--maintenance", "6000", "--dt-call"],
                    capsys)
    assert json.loads(out)["day_trading_buying_power"]["buying_power"] == "68000.00"
    code, _, err = run(["risk", "pdt", "--fills", fills, "--maintenance", "6000"], capsys)
    assert code == 2 and "--maintenance needs --equity" in err


def _pattern_fills() -> list[Fill]:
    """Four day trades in the week (a pattern day trader) and 100 XYZ opened today at $100."""
    trips = [f for d in range(2, 6) for f in (fill(et(date(2026, 3, d), 10), "buy", "10", "ABC", "10"),
                                              fill(et(date(2026, 3, d), 11), "sell", "10", "ABC", "10"))]
    return [*trips, fill(et(date(2026, 3, 6), 10), "buy", "1000", "XYZ", "100")]


def _dtbp_check(account_state: AccountState, qty: str, call: bool = False) -> list[str]:
    request = OrderRequest(client_order_id=f"r{next(_ids)}", account="m", symbol="XYZ", side=Side.BUY,
                           quantity=D(qty), reference_price=D(100))
    ctx = OrderContext(request=request, signal_id="s", positions={"XYZ": D(1000)}, price=D(100),
                       now=et(date(2026, 3, 6), 11), account_state=account_state, recent_fills=_pattern_fills())
    risk = RiskEngine({"m": AccountRisk(pdt=PdtSettings(mode="legacy", day_trading_call=call))})
    return [v.detail for v in risk.check(ctx).violations]


def test_legacy_pre_trade_check_keeps_exposure_within_computed_dtbp() -> None:
    """FINRA 4210(f)(8)(B)(iv) with the worked example's numbers: previous close equity 40,000 and maintenance
    6,000 -> DTBP 136,000. 1,000 XYZ opened today at $100 = 100,000 of exposure: 360 more ($36,000) reach
    136,000 exactly and pass; 361 exceed it and are refused. With a day-trading call (68,000) even 1 more is
    refused."""
    broker = AccountState(account="m", broker="x", cash=D(0), equity=D(41000), prior_close_equity=D(40000),
                          maintenance_margin=D(6000))
    assert open_day_exposure(_pattern_fills(), date(2026, 3, 6)) == D(100000)
    assert _dtbp_check(broker, "360") == []
    [refused] = _dtbp_check(broker, "361")
    assert "36,100.00" in refused and "100,000.00" in refused and "136,000.00" in refused
    assert _dtbp_check(broker, "1", call=True) != []


def test_legacy_pre_trade_check_uses_the_brokers_dtbp_when_reported() -> None:
    """The broker's day-trading buying power (e.g. Alpaca's `daytrading_buying_power`) is what is left now:
    an order of $36,000 passes with 36,000 left and is refused with 35,999.99 left, whatever the formula says."""
    left = AccountState(account="m", broker="alpaca", cash=D(0), equity=D(41000), day_trading_buying_power=D(36000),
                        prior_close_equity=D(40000), maintenance_margin=D(6000))
    assert _dtbp_check(left, "360") == []
    [refused] = _dtbp_check(left.model_copy(update={"day_trading_buying_power": D("35999.99")}), "360")
    assert "reported by the broker" in refused


# ---- 2. Partial fills and broker exports in `risk pdt` ---------------------------------------------------

def test_partial_fills_of_one_order_are_one_transaction(capsys: pytest.CaptureFixture[str]) -> None:
    """FINRA day-trading FAQ: partial executions of one order are one transaction. A buy of 100 AAPL filled
    as 60 + 40 (order A1) and a sell of 100 (A2) is 1 day trade out of 2 trades, not 2 of 3. Side codes as
    brokers export them (BOT/SLD)."""
    code, out, _ = run(["risk", "pdt", "--fills", str(DATA / "pdt_partial_fills.csv"), "--asof", "2026-03-30"],
                       capsys)
    report = json.loads(out)
    assert code == 0 and (report["rolling_day_trades"], report["rolling_trades"]) == (1, 2)


def test_unknown_columns_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt `orderid` column must not be ignored silently (it would undo the partial-fill grouping)."""
    code, out, err = run(["risk", "pdt", "--fills", str(DATA / "pdt_unknown_column.csv")], capsys)
    assert code == 2 and out == "" and "unknown column(s) orderid" in err and err.count("\n") == 1


def test_broker_side_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """Buy to Open / Sell to Close, Sell Short / Buy to Cover and B / S: three round trips, three day trades
    (FINRA 4210(f)(8)(B)(i): short then cover the same day is a day trade)."""
    code, out, _ = run(["risk", "pdt", "--fills", str(DATA / "pdt_side_codes.csv"), "--asof", "2026-04-01"], capsys)
    report = json.loads(out)
    assert code == 0 and [d["day_trades"] for d in report["days"]][-3:] == [1, 1, 1]


def test_alpaca_account_activities(capsys: pytest.CaptureFixture[str]) -> None:
    """Alpaca's GET /v2/account/activities/FILL: a partial_fill of 60 and a fill of 40 of one order_id, then a
    sale of 100 -> 1 day trade of 2 trades; the dividend activity is not a trade."""
    path = str(DATA / "alpaca_fill_activities.json")
    code, out, _ = run(["risk", "pdt", "--fills", path, "--asof", "2026-03-30"], capsys)
    report = json.loads(out)
    assert code == 0 and (report["rolling_day_trades"], report["rolling_trades"]) == (1, 2)
    _, out, _ = run(["risk", "pdt", "--fills", path, "--format", "alpaca", "--asof", "2026-03-30"], capsys)
    assert json.loads(out)["rolling_day_trades"] == 1


def test_thinkorswim_account_statement(capsys: pytest.CaptureFixture[str]) -> None:
    """thinkorswim's Account Statement CSV, "Account Trade History" section (newest first, M/D/YY times, signed
    Qty): AAPL buy 100, buy 100, sell 200 = 2 day trades (traditional count, two openings); TSLA short then
    cover = 1."""
    code, out, _ = run(["risk", "pdt", "--fills", str(DATA / "thinkorswim_statement.csv"), "--asof", "2026-03-31"],
                       capsys)
    report = json.loads(out)
    assert code == 0 and [d["day_trades"] for d in report["days"]][-2:] == [2, 1]
    assert report["rolling_trades"] == 5
    code, _, err = run(["risk", "pdt", "--fills", str(DATA / "pdt_fills.csv"), "--format", "thinkorswim"], capsys)
    assert code == 2 and "Account Trade History" in err


# ---- 3. Consistency boundaries -----------------------------------------------------------------------------

def test_take_profit_trader_best_day_must_be_less_than_half() -> None:
    """Take Profit Trader, Rule 6 "Be Consistent" (takeprofittrader.crunch.help/en/test-rules/
    rule-6-be-consistent): 50K with a 3K target, best day $2,000 and $1,100 on the others: $2,000/$3,100 = 65%;
    the share "needs to be less than 50%": another $901 in whole dollars, $2,000/$4,001. So $2,000 of $4,000
    fails and $2,000 of $4,001 passes; to the cent, $4,000.01 is the first total that passes ($900.01 more)."""
    rules = funded.AccountRules(preset="takeprofit_50k_test")
    assert rules.consistency_strict and rules.consistency_pct == 50
    assert not consistency.is_met(D(2000), D(4000), D(50), strict=True)
    assert consistency.is_met(D(2000), D(4001), D(50), strict=True)
    report = consistency.report([D(2000), D(600), D(500)], D(3100), D(50), strict=True)
    assert (report["best_day_pct"], report["ok"], report["boundary"]) == ("64.52", False, "less than")
    assert (report["profit_needed"], report["more_needed"]) == ("4000.01", "900.01")


def test_myfundedfutures_best_day_may_be_exactly_half() -> None:
    """MyFundedFutures evaluation consistency (help.myfundedfutures.com/en/articles/11994562): "no single day's
    profit should exceed 50%"; 50K target $3,000 -> max day $1,500. $1,500 of $3,000 passes, $1,500.01 fails."""
    rules = funded.AccountRules(preset="mff_50k_core")
    assert not rules.consistency_strict
    assert consistency.is_met(D(1500), D(3000), D(50), strict=False)
    assert not consistency.is_met(D("1500.01"), D(3000), D(50), strict=False)
    assert consistency.report([D(1500)], D(3000), D(50), strict=False)["more_needed"] == "0.00"


def test_snapshot_and_risk_rows_say_how_much_more_profit_consistency_needs() -> None:
    """Take Profit Trader's example through the rule state: days of +2,000, +600 and +500 on a 50K test (total
    3,100) -> the snapshot and the `/risk` row say 900.01 more profit is needed."""
    rules = funded.AccountRules(preset="takeprofit_50k_test")
    state = funded.new_state(rules, ct(2, 9))
    balance = D(50000)
    for day, pnl in ((2, 2000), (3, 600), (4, 500)):
        balance += pnl
        state, _ = funded.on_session_close(state, rules, balance, ct(day, 16))
    snap = funded.snapshot(state, rules, ct(5, 9))
    assert snap["consistency"]["more_needed"] == "900.01" and snap["consistency"]["ok"] is False
    book = FundedBook({"t": rules})
    book.save("t", state)
    rows = {r.name: r for r in RiskEngine({}, clock=lambda: ct(5, 9), funded=book).describe("t")}
    assert rows["consistency"].left == "not met: 900.01 more profit needed"
    assert rows["consistency"].limit == "less than 50% of profit"


# ---- 4. Micros and minis -------------------------------------------------------------------------------------

def probe(rules: funded.AccountRules, state: funded.FundedState, held: dict[str, Decimal], symbol: str,
          qty: str) -> list[funded.Breach]:
    after, micros = funded.contracts_after(rules, held, symbol, D(qty))
    return funded.check_order(state, rules, after, ct(3, 9), micros)


def test_topstep_counts_ten_micros_as_one_mini() -> None:
    """TopstepX Micros and Minis (intercom.help/topstep-llc/en/articles/9221977): 10:1 in the Combine; "In a
    50K account, you can trade up to 50 micros (For example, 4 ES and 10 MES)". 4 ES + 10 MES = 5 fits the
    50K limit of 5; one more MES is refused; 50 MES alone fit, 51 do not."""
    rules = funded.AccountRules(preset="topstep_50k_combine")
    state = funded.new_state(rules, ct(3, 8))
    after, micros = funded.contracts_after(rules, {"ESM6": D(4)}, "MESM6", D(10))
    assert (after, micros) == (D(5), D(10)) and funded.check_order(state, rules, after, ct(3, 9), micros) == []
    after, micros = funded.contracts_after(rules, {"ESM6": D(4), "MESM6": D(10)}, "MESM6", D(1))
    [refused] = funded.check_order(state, rules, after, ct(3, 9), micros)
    assert refused.rule == "max_contracts" and "5.1 contracts" in refused.detail
    assert probe(rules, state, {}, "MES1!", "50") == []
    assert [b.rule for b in probe(rules, state, {}, "MES1!", "51")] == ["max_contracts"]


def test_tradeday_caps_micros_at_fifty() -> None:
    """TradeDay position limits (tradeday.freshdesk.com ... 103000008891): "if your maximum position limit is
    5 lots contracts, you will be able to trade up to 50 lots Micro", combinable, and "we limit the maximum
    Micro position to 50 lots"."""
    rules = funded.AccountRules(preset="tradeday_50k_eod")
    state = funded.new_state(rules, ct(3, 8))
    assert probe(rules, state, {}, "MNQM6", "50") == []
    assert [b.rule for b in probe(rules, state, {"ESM6": D(2)}, "MNQM6", "31")] == ["max_contracts"]  # 5.1 > 5
    with_cap = rules.model_copy(update={"max_contracts": 10})  # the micro cap holds even under a larger limit
    assert [b.rule for b in probe(with_cap, state, {}, "MNQM6", "51")] == ["max_micros"]


def test_pre_trade_check_and_risk_rows_weigh_micros() -> None:
    """The order path counts the broker's positions the firm's way (TopstepX: 4 ES + 10 MES = 5 of 5) and
    `/risk` shows both counts."""
    rules = funded.AccountRules(preset="topstep_50k_combine")
    book = FundedBook({"f": rules}, clock=lambda: ct(3, 9))
    risk = RiskEngine({}, clock=lambda: ct(3, 9), funded=book)

    def check(qty: str, symbol: str) -> list[str]:
        request = OrderRequest(client_order_id=f"r{next(_ids)}", account="f", symbol=symbol, side=Side.BUY,
                               quantity=D(qty))
        ctx = OrderContext(request=request, signal_id="s", positions={"ESM6": D(4)}, price=D(5000), now=ct(3, 9))
        return [v.rule for v in risk.check(ctx).violations]

    assert check("10", "MESM6") == [] and check("11", "MESM6") == ["max_contracts"]
    assert check("2", "ESM6") == ["max_contracts"]
    row = {r.name: r for r in risk.describe("f", positions={"ESM6": D(4), "MESM6": D(10)})}["contracts"]
    assert (row.used, row.limit, row.left) == ("5 (4 minis + 10 micros at 0.1 each)", "5", "0")
    text = risk_text("f", [RiskLine(account="f", name=row.name, used=row.used, limit=row.limit, left=row.left,
                                    breached=row.breached)])
    assert "4 minis + 10 micros" in text


# ---- 6. `risk simulate` for people -------------------------------------------------------------------------

def test_simulate_prints_a_line_per_event_and_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """Topstep 50K daily loss limit $1,000 (the burst in tests/data/risk/topstep_50k_daily_loss.csv): the third
    event breaches it at equity 49,000, and the blocked buy is refused."""
    code, out, _ = run(["risk", "simulate", "--rules", "topstep_50k_combine", "--events",
                        str(DATA / "topstep_50k_daily_loss.csv")], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 10
    assert lines[2].startswith("2026-03-03 08:31:01 CST  fill sell 1 ESM6 @ 4996.00")
    assert "equity 49,000.00  floor 48,000.00  daily left 0.00" in lines[2]
    assert "BREACH daily_loss_limit: flatten + block until 2026-03-03 17:00:00 CST" in lines[2]
    assert "REFUSED session_blocked" in lines[5]
    assert lines[-1].startswith("Verdict: survived, with 1 soft breach(es) (daily_loss_limit)")
    code, out, _ = run(["risk", "simulate", "--rules", "topstep_50k_combine", "--events",
                        str(DATA / "topstep_50k_mll_example.csv")], capsys)
    assert out.splitlines()[-1].startswith("Verdict: FAILED - max_loss")
