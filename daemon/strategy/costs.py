"""Trading costs of a replay: commission, slippage in basis points or ticks, and per-contract fee tables.

A `Costs` is folded into the paper broker a replay trades on:

- `commission_per_unit` / `commission_minimum`: the broker's commission per share or contract and per fill
  (`max(per_unit * qty, minimum)`, the paper broker's own formula).
- `fees`: a per-contract fee table, dollars per contract per side by futures root (exchange, clearing,
  NFA and platform fees), added to the per-unit commission of the replayed symbol. `FEE_TABLES` holds
  named tables (a firm or a broker); `load_fee_table` reads one from a TOML or JSON file `{ES = 1.40, ...}`.
- `slippage_bps`: every market-style fill moves against the trader by this many basis points.
- `slippage_ticks`: and by this many ticks (`tick_size`, default from `TICK_SIZES` by root, 0.01 for
  anything else), which is how futures traders state slippage.

The shipped fee tables are examples of published all-in fees per side; firms change them, so check yours
and pass your own table when they differ (`FEE_SOURCES` says where each came from and whether its numbers
were confirmed against that page; `traderd replay` says so when it uses an unconfirmed one).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from brokers.paper.broker import PaperBroker
from brokers.symbols import symbol_root
from config.brokers import PaperSettings
from daemon.domain import ZERO, Side, utcnow

# Minimum price increment by futures root (CME contract specifications).
TICK_SIZES: dict[str, Decimal] = {
    **{root: Decimal("0.25") for root in ("ES", "MES", "NQ", "MNQ")},
    **{root: Decimal(1) for root in ("YM", "MYM")},
    **{root: Decimal("0.1") for root in ("RTY", "M2K", "EMD", "GC", "MGC")},
    "CL": Decimal("0.01"), "MCL": Decimal("0.01"), "SI": Decimal("0.005"), "NG": Decimal("0.001"),
    "ZB": Decimal("0.03125"), "ZN": Decimal("0.015625"), "6E": Decimal("0.00005"),
}
STOCK_TICK = Decimal("0.01")

# Dollars per contract per side (half the published round-turn), by futures root.
FEE_TABLES: dict[str, dict[str, Decimal]] = {
    "topstep": {**{root: Decimal("1.40") for root in ("ES", "NQ", "YM", "RTY")},
                **{root: Decimal("0.37") for root in ("MES", "MNQ", "MYM", "M2K")},
                "CL": Decimal("1.52"), "GC": Decimal("1.62"), "MCL": Decimal("0.52"), "MGC": Decimal("0.52")},
    "cme_exchange": {**{root: Decimal("1.38") for root in ("ES", "NQ", "YM", "RTY")},
                     **{root: Decimal("0.37") for root in ("MES", "MNQ", "MYM", "M2K")}},
}


@dataclass(frozen=True)
class FeeSource:
    """Where a shipped fee table's numbers come from, and whether they were checked against that page."""

    basis: str
    pages: tuple[str, ...]  # the pages the check read (the firm's own, when one was found)
    verified: bool
    checked: str  # what the check found (or did not find), and when


FEE_SOURCES: dict[str, FeeSource] = {
    "topstep": FeeSource(
        "Topstep's published round-turn fees (platform + exchange + clearing + NFA), halved",
        (), verified=False,
        checked="2026-12: no fee page of Topstep's own was found to compare with; unconfirmed examples"),
    "cme_exchange": FeeSource(
        "CME Globex exchange + clearing fees for customers of member firms (non-members), plus the NFA fee",
        ("https://www.nfa.futures.org/faqs/members/nfa-assessment-fees.html",
         "https://expydoc.com/doc/5046796/cme-group-fee-schedule (a copy of CME's schedule of 2015-01-01)"),
        verified=False,
        checked="2026-12: the NFA assessment fee of $0.02 per side (since 2018-01-01) is confirmed; only "
                "CME fee schedules of 2009-2015 were found, so the CME part is unconfirmed for today"),
}


class CostError(ValueError):
    """A fee table or cost setting that cannot be used; the message says which."""


class Costs(BaseModel):
    """What a fill costs beyond its price; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    commission_per_unit: Decimal = Field(ZERO, ge=0)
    commission_minimum: Decimal = Field(ZERO, ge=0)
    slippage_bps: Decimal = Field(ZERO, ge=0, le=1000)
    slippage_ticks: Decimal = Field(ZERO, ge=0)
    tick_size: Decimal | None = Field(None, gt=0)
    fees: dict[str, Decimal] = Field(default_factory=dict)  # per contract per side, by futures root

    @classmethod
    def of_paper(cls, paper: PaperSettings) -> Costs:
        return cls(commission_per_unit=paper.commission_per_unit, commission_minimum=paper.commission_minimum,
                   slippage_bps=paper.slippage_bps)

    def fee(self, symbol: str) -> Decimal:
        return self.fees.get(symbol_root(symbol), ZERO)

    def tick(self, symbol: str) -> Decimal:
        return self.tick_size or TICK_SIZES.get(symbol_root(symbol), STOCK_TICK)

    def tick_slippage(self, symbol: str) -> Decimal:
        """Price units a market-style fill of `symbol` moves against the trader on top of the bps slippage."""
        return self.slippage_ticks * self.tick(symbol)

    def describe(self, symbol: str) -> str:
        """One line a trader reads: what each fill of `symbol` paid beyond its price."""
        def num(x: Decimal) -> str:
            return f"{x.normalize():f}"

        parts = []
        if self.commission_per_unit or self.commission_minimum:
            parts.append(f"commission {num(self.commission_per_unit)} per share/contract"
                         + (f", minimum {num(self.commission_minimum)} per fill" if self.commission_minimum else ""))
        else:
            parts.append("no commission")
        if self.fee(symbol):
            parts.append(f"fees {num(self.fee(symbol))} per contract per side ({symbol_root(symbol)})")
        slips = [f"{num(self.slippage_bps)} bps"] if self.slippage_bps else []
        if self.slippage_ticks:
            slips.append(f"{num(self.slippage_ticks)} tick{'' if self.slippage_ticks == 1 else 's'} of "
                         f"{num(self.tick(symbol))}")
        parts.append("slippage " + " + ".join(slips) + " per fill" if slips else "no slippage")
        return ", ".join(parts)

    def paper_settings(self, paper: PaperSettings, symbol: str) -> PaperSettings:
        """`paper` (cash, multipliers) with this commission (plus the symbol's fee) and bps slippage."""
        return paper.model_copy(update={
            "commission_per_unit": self.commission_per_unit + self.fee(symbol),
            "commission_minimum": self.commission_minimum, "slippage_bps": self.slippage_bps,
        })


def fee_table_for(preset: str | None) -> str | None:
    """The shipped fee table of a funded preset's firm (`topstep_50k_combine` -> `topstep`), if there is one."""
    if not preset:
        return None
    firm = preset.split("_", 1)[0]
    return firm if firm in FEE_TABLES else None


def unverified_note(spec: str | None) -> str | None:
    """What to tell the trader when `spec` names a shipped table whose numbers are not confirmed."""
    source = FEE_SOURCES.get(spec or "")
    if source is None or source.verified:
        return None
    return (f"fee table {spec}: example numbers, not confirmed against the published fees ({source.checked}); "
            "pass your own with --fees FILE")


def load_fee_table(spec: str) -> dict[str, Decimal]:
    """A shipped table by name, or a TOML/JSON file mapping futures roots to a fee per contract per side."""
    if spec in FEE_TABLES:
        return dict(FEE_TABLES[spec])
    path = Path(spec)
    if not path.is_file():
        raise CostError(f"fee table {spec!r}: not a shipped table ({', '.join(sorted(FEE_TABLES))}) nor a file")
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CostError(f"fee table {path}: {exc}") from exc
    return parse_fee_table(raw, str(path))


def parse_fee_table(raw: object, where: str) -> dict[str, Decimal]:
    if not isinstance(raw, Mapping):
        raise CostError(f"fee table {where}: expected a table of ROOT = fee")
    table: dict[str, Decimal] = {}
    for root, value in raw.items():
        try:
            fee = Decimal(str(value))
        except InvalidOperation:
            fee = Decimal("NaN")
        if isinstance(value, bool) or not fee.is_finite() or fee < 0:
            raise CostError(f"fee table {where}: {root} = {value!r} is not a non-negative number")
        table[str(root).strip().upper()] = fee
    return table


class CostedPaperBroker(PaperBroker):
    """The paper broker with slippage in ticks on top of its bps slippage (replays only)."""

    def __init__(self, account: str, settings: PaperSettings, state_file: Path, *, tick_slippage: Decimal,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(account, settings, state_file, clock)
        self.tick_slippage = tick_slippage

    def _slipped(self, side: Side, price: Decimal) -> Decimal:
        return super()._slipped(side, price) + side.sign * self.tick_slippage
