"""TradingView ticker normalisation: exchange prefixes, and continuous futures (`ES1!`) to the front contract.

`normalize("NASDAQ:AAPL")` gives `AAPL`. `normalize("CME_MINI:ES1!", on=date(2026, 12, 1))` gives `ESZ6`:
the N-th continuous contract of a root whose contract months and expiry rule are known (quarterly H/M/U/Z
index futures expiring the third Friday), rolled `RollRule.business_days_before_expiry` business days
before expiry. Unknown futures roots raise `UnknownSymbol` before anything is sent to a broker.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from brokers.base import UnknownSymbol

MONTH_CODES = {1: "F", 2: "G", 3: "H", 4: "J", 5: "K", 6: "M", 7: "N", 8: "Q", 9: "U", 10: "V", 11: "X", 12: "Z"}
QUARTERLY = (3, 6, 9, 12)
# Roots whose contracts expire on the third Friday of the contract month (CME equity index futures).
INDEX_FUTURES = frozenset({"ES", "MES", "NQ", "MNQ", "RTY", "M2K", "YM", "MYM", "EMD"})

# Dollars per point by futures root (CME contract specifications). The one table every adapter, the paper
# broker and the prop-firm rules use; accounts override it (paper.multipliers, funded point_values).
POINT_VALUES: dict[str, Decimal] = {
    **{k: Decimal(v) for k, v in {"ES": 50, "MES": 5, "NQ": 20, "MNQ": 2, "YM": 5, "RTY": 50, "M2K": 5}.items()},
    **{k: Decimal(v) for k, v in {"EMD": 100, "CL": 1000, "MCL": 100, "GC": 100, "MGC": 10, "SI": 5000}.items()},
    **{k: Decimal(v) for k, v in {"NG": 10000, "ZB": 1000, "ZN": 1000, "6E": 125000}.items()},
    "MYM": Decimal("0.5"),
}
# Minimum price increment by futures root (CME contract specifications); stocks and anything else trade in
# cents (`STOCK_TICK`). Relative exits in ticks and the rounding of exit prices use this table.
TICK_SIZES: dict[str, Decimal] = {
    **{k: Decimal("0.25") for k in ("ES", "MES", "NQ", "MNQ")},
    **{k: Decimal(1) for k in ("YM", "MYM")},
    **{k: Decimal("0.1") for k in ("RTY", "M2K", "EMD", "GC", "MGC")},
    **{k: Decimal("0.01") for k in ("CL", "MCL")},
    "SI": Decimal("0.005"), "NG": Decimal("0.001"), "ZB": Decimal("0.03125"), "ZN": Decimal("0.015625"),
    "6E": Decimal("0.00005"),
}
STOCK_TICK = Decimal("0.01")
_ROOT_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)\d!$")  # ES1!, M2K2!
_ROOT_DATED = re.compile(r"^(?P<root>[A-Z0-9]*[A-Z])[FGHJKMNQUVXZ]\d{1,2}$")  # ESZ6, NQH26, M2KZ6


def futures_root(symbol: str) -> str | None:
    """`CME_MINI:ES1!` -> `ES`, `ESZ6` / `ESZ26` -> `ES`; None for a symbol that is neither form (`AAPL`)."""
    bare = symbol.rsplit(":", 1)[-1].strip().upper()
    match = _ROOT_CONTINUOUS.match(bare) or _ROOT_DATED.match(bare)
    return match["root"] if match else None


def contract_root(code: str) -> str | None:
    """The root of a dated contract code (`ESZ6`, `NQH26`, `M2KZ6` -> `ES`, `NQ`, `M2K`); None otherwise."""
    match = _ROOT_DATED.match(code.strip().upper())
    return match["root"] if match else None


def symbol_root(symbol: str) -> str:
    """The futures root, or the bare symbol itself for anything else (`NASDAQ:AAPL` -> `AAPL`)."""
    return futures_root(symbol) or symbol.rsplit(":", 1)[-1].strip().upper()

def tick_size(symbol: str) -> Decimal:
    """The minimum price increment of `symbol`: its futures root's, else a cent."""
    root = futures_root(symbol)
    return TICK_SIZES.get(root, STOCK_TICK) if root else STOCK_TICK


_CONTINUOUS = re.compile(r"^(?P<root>[A-Z][A-Z0-9]*?)(?P<n>[1-9])!$")
_PLAIN = re.compile(r"^[A-Z0-9][A-Z0-9./_-]*$")


@dataclass(frozen=True)
class RollRule:
    """Switch to the next contract this many business days (Mon-Fri) before the front one expires."""

    business_days_before_expiry: int = 8  # CME index futures: volume moves ~8 days before expiry
    year_digits: int = 1  # ESZ6 (Tradovate, ProjectX names); 2 gives ESZ26


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def business_days_before(day: date, count: int) -> date:
    while count > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def _contracts_from(year: int, month: int) -> list[tuple[int, int]]:
    """Quarterly contract months from the first one in or after (year, month), three years ahead."""
    return [(y, m) for y in range(year, year + 3) for m in QUARTERLY if (y, m) >= (year, month)]


def continuous_contract(root: str, nth: int, on: date, rule: RollRule = RollRule()) -> str:
    """The contract code (`ESZ6`) the `nth` continuous contract of `root` (`ES1!` -> nth=1) means on `on`."""
    if root not in INDEX_FUTURES:
        raise UnknownSymbol(f"{root}{nth}!: no contract calendar for futures root {root!r}")
    contracts = _contracts_from(on.year, on.month)
    active = [
        (y, m) for y, m in contracts if on < business_days_before(third_friday(y, m), rule.business_days_before_expiry)
    ]
    year, month = active[nth - 1]
    suffix = str(year % 10**rule.year_digits).zfill(rule.year_digits)
    return f"{root}{MONTH_CODES[month]}{suffix}"


def split_exchange(ticker: str) -> tuple[str | None, str]:
    """`NASDAQ:AAPL` -> (`NASDAQ`, `AAPL`); the symbol upper-cased and stripped."""
    ticker = ticker.strip()
    exchange, _, symbol = ticker.rpartition(":")
    return (exchange.upper() or None), symbol.strip().upper()


def normalize(ticker: str, on: date | None = None, rule: RollRule = RollRule()) -> str:
    """A TradingView ticker as the broker-neutral symbol: no exchange prefix, continuous futures resolved."""
    _, symbol = split_exchange(ticker)
    if not symbol:
        raise UnknownSymbol(f"empty symbol in {ticker!r}")
    match = _CONTINUOUS.match(symbol)
    if match:
        return continuous_contract(match["root"], int(match["n"]), on or date.today(), rule)
    if symbol.endswith("!") or not _PLAIN.match(symbol):
        raise UnknownSymbol(f"cannot read ticker {ticker!r}")
    return symbol


def is_continuous(ticker: str) -> bool:
    return _CONTINUOUS.match(split_exchange(ticker)[1]) is not None


def front_alias(code: str, on: date, rule: RollRule = RollRule()) -> str | None:
    """`ES1!` when the contract `code` (`ESZ6`) is the front contract of its root on `on`, else None."""
    root = contract_root(code)
    if root is None or root not in INDEX_FUTURES:
        return None
    front = f"{root}1!"
    return front if normalize(front, on=on, rule=rule) == code.strip().upper() else None


def engine_symbol(code: str, alias: str | None, on: date, rule: RollRule = RollRule()) -> str:
    """How a dated contract (`ESZ6`) is reported to the engine: under the ticker it was last traded by while
    that ticker still means it (`ES1!`), else as `ES1!` while it is the front contract, else as itself."""
    if alias is not None and alias != code:
        with contextlib.suppress(UnknownSymbol):
            if normalize(alias, on=on, rule=rule) == code:
                return alias
    return front_alias(code, on, rule) or code
