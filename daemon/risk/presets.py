"""Published prop-firm program rules as presets for `AccountRules`; every number can be overridden in config.

Each preset is plain data (field name -> value) so this module imports nothing of the project. Keys are the
fields of `daemon.risk.funded.AccountRules`. `sources` lists where the numbers come from and `unverified`
names the fields that could not be confirmed on the firm's own pages (the stored copies hold only some of
them, and firms change programs often): check those against your dashboard and override where they differ.
docs/risk-rules.md lists, per firm, what was confirmed where and what was not.

Drawdown vocabulary (see docs/risk-rules.md):
- `max_loss`: distance of the floor below the peak (the firm's "maximum loss limit", "trailing threshold",
  "max drawdown").
- `drawdown_model`: `eod` (the floor is recomputed from the end-of-day balance), `intraday` (it trails the
  peak of live equity, unrealized P&L included) or `static`.
- `floor_lock_offset`: the floor stops trailing once it reaches starting balance + this offset (Topstep:
  0, Apex: 100); None = it never stops trailing.
"""

from __future__ import annotations

from typing import Any

from brokers.symbols import POINT_VALUES

# Dollars per point for common CME contracts: the shared table; AccountRules.point_values overrides.
DEFAULT_POINT_VALUES = POINT_VALUES

# Firms' own help-centre pages (the numbers quoted beside each preset were read there).
TOPSTEP_MLL = "https://help.topstep.com/en/articles/8284204-what-is-the-maximum-loss-limit"
TOPSTEP_MICROS = (
    "https://intercom.help/topstep-llc/en/articles/9221977-topstepx-micros-and-minis"
    " (10 micros = 1 mini in the Combine and XFA; 50K: 50 micros, e.g. 4 ES + 10 MES; 100K: 100; 150K: 150;"
    " Micro Silver, Micro Bitcoin and Micro Ether weighted differently)"
)
TOPSTEP_CONSISTENCY = (
    "https://help.futures.topstep.com/hc/en-us/articles/4405772379155-What-is-the-Consistency-Target-"
    " (best day 'needs to be below' the limit; 'equal to or more than' it must keep trading)"
)
APEX_RULES = "https://support.atf.com/hc/en-us/articles/10403533495835 (flat by 4:59 pm ET)"
TRADEDAY_HELP = "https://tradeday.freshdesk.com/en/support/solutions/articles/103000008847 (one rule: max drawdown)"
TRADEDAY_MICROS = (
    "https://tradeday.freshdesk.com/en/support/solutions/articles/103000008891"
    " (micro equivalency: 5 contracts = 50 micros, combinable; micro position capped at 50 lots)"
)
TRADEDAY_CONSISTENCY = "https://tradeday.com/how-it-works/ ('No single trading day can account for 30% of total P+L')"
TPT_CONSISTENCY = (
    "https://takeprofittrader.crunch.help/en/test-rules/rule-6-be-consistent"
    " (best day / total profit 'needs to be less than 50%'; $2,000/$3,100 = 65% needs $901 more: $2,000/$4,001)"
)
TPT_SIZE = (
    "https://takeprofittrader.crunch.help/en/test-rules/rule-2-do-not-exceed-maximum-position-size"
    " (50K: 6 contracts; 10x on micros, 60 micros)"
)
MFF_CONSISTENCY = (
    "https://help.myfundedfutures.com/en/articles/11994562 (evaluation: no single day's profit should exceed 50%;"
    " 50K target $3,000, max day $1,500)"
)
MFF_MICROS = "https://help.myfundedfutures.com/en/articles/10244682-cross-instrument-policy (2 minis OR 20 micros)"
# Third-party summaries, for the numbers no stored page of the firm confirms (listed in `unverified`).
TOPSTEP_TABLE = "https://propfirmapp.com/prop-firms/topstep (third-party table of Topstep's numbers)"
TOPSTEP_SCALING = "https://h2tfunding.com/topstep-scaling-plan (third-party summary of the XFA scaling plan)"
TOPSTEP_FLAT = "https://h2tfunding.com/topstep-trades-closed-by-what-time (3:10 pm CT flat-by)"
APEX_TRAIL = "https://fundedwiki.com/apex-trader-funding (live trailing, stops at start + $100)"
TPT_RULES = "https://fundedprogramfinder.com/take-profit-trader-review (EOD drawdown)"
TPT_DLL = "https://www.proptradingvibes.com/blog/takeprofittrader-test-rules-complete-guide (no DLL since 2025-01)"
TRADEDAY_RULES = "https://bestpropfirms.io/product-review/tradeday (intraday/EOD/static, no DLL, 30% consistency)"
MFF_TABLE = "https://payoutlab.io/prop-firms/myfundedfutures (EOD $2,000, no DLL, locks at $50,100 funded)"

# Futures roots of CME micro contracts: at firms that count 10 micros as 1 mini they weigh `micro_weight`.
MICRO_ROOTS = frozenset({"MES", "MNQ", "MYM", "M2K", "MCL", "MGC", "SIL", "MBT", "MET", "M6E", "M6A", "M6B"})
# Topstep: "Micro Silver, Micro Bitcoin, and Micro Ether are weighted differently"; the weights are not on a
# stored page, so they count as a full contract here (never lets more through than the firm allows).
_TOPSTEP_WEIGHTS = {"SIL": "1", "MBT": "1", "MET": "1"}

_TOPSTEP_SIZES: dict[str, dict[str, Any]] = {
    # size: starting balance, MLL, DLL, profit target, max contracts, XFA scaling plan (profit -> contracts)
    "50k": {
        "start": "50000",
        "mll": "2000",
        "dll": "1000",
        "target": "3000",
        "contracts": 5,
        "scaling": [("0", 2), ("1500", 3), ("2000", 5)],
    },
    "100k": {
        "start": "100000",
        "mll": "3000",
        "dll": "2000",
        "target": "6000",
        "contracts": 10,
        "scaling": [("0", 3), ("1500", 4), ("2000", 5), ("3000", 10)],
    },
    "150k": {
        "start": "150000",
        "mll": "4500",
        "dll": "3000",
        "target": "9000",
        "contracts": 15,
        "scaling": [("0", 3), ("1500", 4), ("2000", 5), ("3000", 10), ("4500", 15)],
    },
}


def _topstep(size: str, program: str) -> dict[str, Any]:
    s = _TOPSTEP_SIZES[size]
    common: dict[str, Any] = {
        "firm": "Topstep",
        "max_loss": s["mll"],
        # Verified (TOPSTEP_MLL): the MLL is set from the end-of-day balance high, is enforced in real time
        # while trading, and stops moving once it reaches the initial starting balance.
        "drawdown_model": "eod",
        "floor_lock_offset": "0",
        "daily_loss_limit": s["dll"],
        "flat_by": "15:10",
        "flat_by_tz": "America/Chicago",
        "micro_weight": "0.1",
        "contract_weights": _TOPSTEP_WEIGHTS,
        "sources": [TOPSTEP_MLL, TOPSTEP_MICROS, TOPSTEP_TABLE, TOPSTEP_FLAT],
    }
    if program == "combine":
        return {
            **common,
            "name": f"Topstep {size.upper()} Trading Combine",
            "starting_balance": s["start"],
            "max_contracts": s["contracts"],
            "profit_target": s["target"],
            # Topstep's own page words the boundary "below" (strictly less); its number there is the earlier
            # 40%, the current Combine's 50% comes from third-party summaries.
            "consistency_pct": "50",
            "consistency_strict": True,
            "sources": [*common["sources"], TOPSTEP_CONSISTENCY],
            # max_contracts 5 / 10 / 15: TOPSTEP_MICROS (50 / 100 / 150 micros at 10:1).
            "unverified": ["daily_loss_limit", "profit_target", "consistency_pct", "flat_by"],
        }
    # Express Funded Account: the balance starts at $0 and the MLL trails up to $0 (assumed from Topstep's
    # description of the XFA; the scaling plan limits contracts by the balance at the previous session close).
    return {
        **common,
        "name": f"Topstep {size.upper()} Express Funded Account",
        "starting_balance": "0",
        "max_contracts": s["contracts"],
        "scaling_plan": [{"min_profit": p, "max_contracts": c} for p, c in s["scaling"]],
        "sources": [*common["sources"], TOPSTEP_SCALING],
        "unverified": ["starting_balance", "daily_loss_limit", "scaling_plan", "flat_by", "contract_weights"],
    }


def _apex(size: str, start: str, trail: str, target: str, contracts: int) -> dict[str, Any]:
    return {
        "firm": "Apex Trader Funding",
        "name": f"Apex {size.upper()} Evaluation (intraday trailing)",
        "starting_balance": start,
        "max_loss": trail,
        "drawdown_model": "intraday",
        "floor_lock_offset": "100",
        "daily_loss_limit": None,
        "max_contracts": contracts,
        "micro_weight": "0.1",  # 10 micros per mini, as commonly reported; not on a stored Apex page
        "profit_target": target,
        "flat_by": "16:59",
        "flat_by_tz": "America/New_York",
        "sources": [APEX_RULES, APEX_TRAIL],
        # Apex revised its programs in 2025 (EOD variants, daily limits on some plans); these are the
        # long-standing intraday-trailing evaluation numbers and were not confirmed on apextraderfunding.com.
        "unverified": ["max_loss", "floor_lock_offset", "max_contracts", "micro_weight", "profit_target"],
    }


def _tradeday(model: str) -> dict[str, Any]:
    return {
        "firm": "TradeDay",
        "name": f"TradeDay 50K Evaluation ({'end-of-day' if model == 'eod' else 'intraday'} trailing)",
        "starting_balance": "50000",
        "max_loss": "2000",
        "drawdown_model": model,
        "floor_lock_offset": "0",
        "daily_loss_limit": None,  # TradeDay: "just one rule - don't break the Maximum Drawdown Limit"
        "max_contracts": 5,
        "micro_weight": "0.1",  # TRADEDAY_MICROS: 5 contracts = 50 micros, combinable
        "max_micros": 50,  # TRADEDAY_MICROS: "we limit the maximum Micro position to 50 lots"
        "profit_target": "2500",
        # TRADEDAY_CONSISTENCY: "can account for 30%" read as strictly less; that page describes an earlier
        # program (other target and drawdown), so the percentage is kept unverified.
        "consistency_pct": "30",
        "consistency_strict": True,
        "flat_by": "15:59",
        "flat_by_tz": "America/Chicago",
        "sources": [TRADEDAY_HELP, TRADEDAY_MICROS, TRADEDAY_CONSISTENCY, TRADEDAY_RULES],
        "unverified": ["max_loss", "floor_lock_offset", "max_contracts", "profit_target", "consistency_pct",
                       "flat_by"],
    }


PRESETS: dict[str, dict[str, Any]] = {
    "topstep_50k_combine": _topstep("50k", "combine"),
    "topstep_100k_combine": _topstep("100k", "combine"),
    "topstep_150k_combine": _topstep("150k", "combine"),
    "topstep_50k_express": _topstep("50k", "express"),
    "topstep_100k_express": _topstep("100k", "express"),
    "topstep_150k_express": _topstep("150k", "express"),
    "apex_25k": _apex("25k", "25000", "1500", "1500", 4),
    "apex_50k": _apex("50k", "50000", "2500", "3000", 10),
    "apex_100k": _apex("100k", "100000", "3000", "6000", 14),
    "apex_150k": _apex("150k", "150000", "5000", "9000", 17),
    "tradeday_50k_intraday": _tradeday("intraday"),
    "tradeday_50k_eod": _tradeday("eod"),
    "takeprofit_50k_test": {
        "firm": "Take Profit Trader",
        "name": "Take Profit Trader 50K Test",
        "starting_balance": "50000",
        "max_loss": "2000",
        "drawdown_model": "eod",
        "floor_lock_offset": None,  # evaluation: not stated that the EOD drawdown stops trailing
        "daily_loss_limit": None,  # was $1,100 (propfirmapp.com); removed January 2025 per TPT_DLL
        "max_contracts": 6,  # TPT_SIZE
        "micro_weight": "0.1",  # TPT_SIZE: "10x position size on the Micro products"
        "profit_target": "3000",  # TPT_CONSISTENCY: "50K account with a 3K profit target"
        "consistency_pct": "50",  # TPT_CONSISTENCY: "needs to be less than 50%"
        "consistency_strict": True,
        "flat_by": "16:59",
        "flat_by_tz": "America/New_York",
        "sources": [TPT_CONSISTENCY, TPT_SIZE, TPT_RULES, TPT_DLL],
        "unverified": ["max_loss", "drawdown_model", "floor_lock_offset", "daily_loss_limit", "flat_by"],
    },
    "mff_50k_core": {
        "firm": "MyFundedFutures",
        "name": "MyFundedFutures 50K Core Evaluation",
        "starting_balance": "50000",
        "max_loss": "2000",
        "drawdown_model": "eod",
        "floor_lock_offset": "100",
        "daily_loss_limit": None,
        "max_contracts": 5,
        "micro_weight": "0.1",  # MFF_MICROS: "2 minis OR 20 micros"
        "profit_target": "3000",  # MFF_CONSISTENCY: "Total Profit Target on a 50k account: $3,000"
        "consistency_pct": "50",  # MFF_CONSISTENCY: "should not exceed 50%" (at most: $1,500 of $3,000 passes)
        "consistency_strict": False,
        "flat_by": "16:59",
        "flat_by_tz": "America/New_York",
        "sources": [MFF_CONSISTENCY, MFF_MICROS, MFF_TABLE],
        "unverified": ["max_loss", "drawdown_model", "floor_lock_offset", "max_contracts", "flat_by"],
    },
}


def preset_names() -> list[str]:
    return sorted(PRESETS)
