"""Value types of order shapes: exit prices relative to the entry, trails, and what an entry's quantity counts.

Ground floor beside `daemon.domain` (whose `Intent` carries them); imports nothing from the project.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OffsetUnit(StrEnum):
    """An exit's distance from the entry price; `dollars` of P&L per contract or share, or for the position."""

    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"
    POSITION_DOLLARS = "position_dollars"


class QuantityType(StrEnum):
    """What an entry's `quantity` counts (TradersPost's `quantityType` names)."""

    FIXED_QUANTITY = "fixed_quantity"  # shares or contracts
    DOLLAR_AMOUNT = "dollar_amount"  # notional in the account's currency
    PERCENT_OF_EQUITY = "percent_of_equity"  # notional as a percent of equity
    RISK_DOLLAR_AMOUNT = "risk_dollar_amount"  # what is lost if the stop-loss fills
    RISK_PERCENT = "risk_percent"  # that loss as a percent of equity


class PriceOffset(BaseModel):
    """An exit price relative to the entry price: `{"unit": "ticks", "value": 8}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: OffsetUnit
    value: Decimal = Field(gt=0)


class Trail(BaseModel):
    """How far a trailing stop follows the best price since it was placed: a price `distance`, or a `percent`
    of that best price (exactly one). The stop only ever moves in the position's favour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    distance: Decimal | None = Field(None, gt=0)
    percent: Decimal | None = Field(None, gt=0, lt=100)

    @model_validator(mode="after")
    def _one(self) -> Trail:
        if (self.distance is None) == (self.percent is None):
            raise ValueError("a trail is a distance or a percent (exactly one)")
        return self
