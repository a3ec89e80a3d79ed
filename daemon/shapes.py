"""Value types of order shapes: exit prices relative to the entry, take-profit ladders, what a quantity counts.

Ground floor beside `daemon.domain` (whose `Intent` carries them); imports nothing from the project.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class OffsetUnit(StrEnum):
    """An exit's distance from the entry price; `dollars` of P&L per contract or share, or for the position."""

    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"
    POSITION_DOLLARS = "position_dollars"
    R = "r"  # multiples of the stop-loss's distance from the entry (take-profit levels only)


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


class TakeProfitLevel(BaseModel):
    """One level of a take-profit ladder: its price (or distance), and how much of the entry it closes:
    `quantity` units, or `percent` of the entry; neither means what the other levels leave."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: Decimal | PriceOffset
    quantity: Decimal | None = Field(default=None, gt=0)
    percent: Decimal | None = Field(default=None, gt=0, le=100)


class BreakEven(BaseModel):
    """Move the stop of what is left to the entry's fill price (plus `offset` in the trade's favour) once
    take-profit level `after` (1 = the first) has filled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after: int = Field(default=1, ge=1)
    offset: PriceOffset | None = None


class Ladder(BaseModel):
    """Several take-profit levels sharing one stop-loss, and an optional move of that stop to break-even."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    levels: tuple[TakeProfitLevel, ...] = Field(min_length=1)
    break_even: BreakEven | None = None
