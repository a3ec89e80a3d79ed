"""Per-account settings of the regulatory and prop-firm rules: PDT, cash settlement, funded-account presets.

The rule logic lives in `daemon/risk/`; this module only describes what an account configures, so that the
configuration tree stays importable without the daemon (config is the ground floor).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from config.section import Section


class PdtSettings(Section):
    mode: Literal["legacy", "intraday_margin", "off"] = "off"
    method: Literal["traditional", "direction"] = "traditional"
    min_equity: Decimal = Field(Decimal("25000"), ge=0)
    day_trading_call: bool = Field(False, description="A day-trading margin call is open: DTBP is 2x, not 4x")


class CashSettings(Section):
    cash_account: bool = Field(False, description="T+1 settlement rules apply (no margin)")
    allow_unsettled: bool = Field(False, description="Only warn on good-faith / unsettled-funds violations")


class FundedSettings(Section):
    preset: str = Field(description="e.g. topstep_50k_combine; see docs/risk-rules.md")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Any preset number, by name")
    mark_interval_seconds: float = Field(
        5.0, ge=1, le=300, description="How often live equity is read from the broker and checked"
    )
