"""The data of the funded-account rules: a firm's rules (preset + overrides), what they remember, a breach.

`AccountRules` is a preset (see `daemon.risk.presets`) plus overrides; `FundedState` is everything the rules
need to remember between events (JSON-serialisable, so it survives a restart); a `Breach` is a rule hit and
the action it demands. The transitions that move a state live in `daemon.risk.funded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from brokers.symbols import symbol_root
from daemon.calendar import SessionCalendar
from daemon.domain import ZERO, Violation
from daemon.risk.presets import DEFAULT_POINT_VALUES, MICRO_ROOTS, PRESETS

BreachAction = Literal["flatten_block_session", "flatten_lock", "reject"]


class DrawdownModel(StrEnum):
    INTRADAY = "intraday"  # floor trails the peak of live equity (unrealized included)
    EOD = "eod"  # floor recomputed from the end-of-day balance only
    STATIC = "static"  # floor fixed at starting balance - max loss


class ScalingTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    min_profit: Decimal  # profit (balance at session start - starting balance) from which this tier applies
    max_contracts: int


class AccountRules(BaseModel):
    """A funded account's rules: `preset` fills every field, anything else given overrides it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str | None = None
    firm: str = ""
    name: str = ""
    starting_balance: Decimal
    max_loss: Decimal = Field(gt=0)
    drawdown_model: DrawdownModel = DrawdownModel.EOD
    floor_lock_offset: Decimal | None = None  # floor stops trailing at starting_balance + this
    daily_loss_limit: Decimal | None = None
    max_contracts: int | None = None  # in the firm's counting unit (minis where micros weigh micro_weight)
    micro_weight: Decimal = Field(default=Decimal(1), gt=0)  # what one micro counts toward max_contracts
    contract_weights: dict[str, Decimal] = Field(default_factory=dict)  # by root; wins over micro_weight
    max_micros: int | None = None  # a separate cap on open micro contracts (TradeDay: 50)
    scaling_plan: list[ScalingTier] = Field(default_factory=list)
    flat_by: time | None = None
    flat_by_tz: str = "America/Chicago"
    calendar: SessionCalendar = "cme"  # trading days: CME futures sessions (17:00 CT roll) or 24x7 (crypto)
    day_roll_tz: str = "UTC"  # a 24x7 trading day runs midnight to midnight in this zone
    flatten_lead_seconds: int = Field(default=60, ge=0)  # flatten this long before flat_by
    safety_buffer: Decimal = ZERO  # flatten when live equity is within this of a floor
    profit_target: Decimal | None = None
    consistency_pct: Decimal | None = None  # best day's share of total profit (reported only)
    consistency_strict: bool = False  # True: best day must be strictly less than consistency_pct
    point_values: dict[str, Decimal] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list)
    unverified: list[str] = Field(default_factory=list)

    @field_validator("day_roll_tz", "flat_by_tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _merge_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset"):
            name = str(data["preset"])
            if name not in PRESETS:
                raise ValueError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}")
            return {**PRESETS[name], **data}
        return data

    @property
    def lock_level(self) -> Decimal | None:
        return None if self.floor_lock_offset is None else self.starting_balance + self.floor_lock_offset

    def point_value(self, symbol: str) -> Decimal:
        if symbol in self.point_values:
            return self.point_values[symbol]
        root = symbol_root(symbol)  # ES1!, CME_MINI:ES1!, ESZ6 -> ES
        return self.point_values.get(root) or DEFAULT_POINT_VALUES.get(root) or Decimal(1)

    def is_micro(self, symbol: str) -> bool:
        return symbol_root(symbol) in MICRO_ROOTS

    def contract_weight(self, symbol: str) -> Decimal:
        """What one contract of `symbol` counts toward `max_contracts` (10 micros = 1 mini: 0.1)."""
        root = symbol_root(symbol)
        if root in self.contract_weights:
            return self.contract_weights[root]
        return self.micro_weight if root in MICRO_ROOTS else Decimal(1)

    def weighted_contracts(self, positions: Mapping[str, Decimal]) -> Decimal:
        """Open contracts (signed quantities by symbol) in the firm's counting unit."""
        return sum((abs(q) * self.contract_weight(s) for s, q in positions.items()), ZERO)

    def micro_contracts(self, positions: Mapping[str, Decimal]) -> Decimal:
        return sum((abs(q) for s, q in positions.items() if self.is_micro(s)), ZERO)


class OpenPosition(BaseModel):
    qty: Decimal  # signed contracts
    avg_price: Decimal
    mark: Decimal
    point_value: Decimal

    @property
    def unrealized(self) -> Decimal:
        return (self.mark - self.avg_price) * self.qty * self.point_value


class FundedState(BaseModel):
    """What the rules remember between events; store it as JSON (`model_dump_json`)."""

    balance: Decimal  # realized: starting balance + closed P&L - fees
    live_equity: Decimal  # balance + open P&L (or the broker's number from the last mark)
    peak: Decimal  # high-water mark the floor trails (live equity for intraday, EOD balance for eod)
    floor: Decimal  # maximum-loss floor
    floor_locked: bool = False
    session: date | None = None
    session_start_balance: Decimal
    blocked_until: AwareDatetime | None = None  # soft breach: no new exposure before this time
    block_reason: str | None = None
    locked: bool = False  # hard breach: no new exposure until an operator resets
    lock_reason: str | None = None
    flat_by_session: date | None = None  # session whose flat-by flatten was already requested
    positions: dict[str, OpenPosition] = Field(default_factory=dict)
    day_pnl: dict[str, Decimal] = Field(default_factory=dict)  # session ISO date -> P&L of that session
    updated_at: AwareDatetime | None = None

    @property
    def contracts(self) -> Decimal:
        """Open contracts as counted by the broker (each contract is one, micro or mini)."""
        return sum((abs(p.qty) for p in self.positions.values()), ZERO)

    @property
    def quantities(self) -> dict[str, Decimal]:
        return {symbol: p.qty for symbol, p in self.positions.items()}


class Breach(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule: str  # max_loss | daily_loss_limit | safety_buffer | flat_by | max_contracts | account_locked | ...
    action: BreachAction
    detail: str
    numbers: dict[str, str] = Field(default_factory=dict)
    at: AwareDatetime

    def to_violation(self, account: str, signal_id: str | None = None, symbol: str | None = None) -> Violation:
        return Violation(
            account=account,
            rule=self.rule,
            detail=self.detail,
            numbers=self.numbers,
            signal_id=signal_id,
            symbol=symbol,
            at=self.at,
        )


Transition = tuple[FundedState, list[Breach]]
