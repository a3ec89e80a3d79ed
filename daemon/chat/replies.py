"""What chat-ops asks the daemon and what it gets back: the `ChatBackend` protocol and its reply models.

The command core (`daemon.chat.commands`) calls a `ChatBackend`; the renderer (`daemon.chat.render`) turns
these models into text; the daemon's implementation is `daemon.chat.backend.DaemonChatBackend`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from daemon.domain import AccountState, Fill, FlattenReport, Order, Period, Position
from daemon.queries import TimeExitCountdown
from daemon.shapes import AtrOffset, TimeExit

__all__ = [
    "ALL", "AccountInfo", "ChatBackend", "CloseResult", "ControlResult", "DayLine", "FrozenModel", "HealthCheck",
    "PnlLine", "RiskLine", "StatusInfo", "StrategyAction", "StrategyInfo",
]

StrategyAction = Literal["pause", "resume"]
ALL = "all"  # the account target meaning every configured account


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccountInfo(FrozenModel):
    name: str
    broker: str
    paused: bool = False
    connected: bool = True
    locked: str | None = None  # why risk locked the account (e.g. "daily loss limit"), None when not locked
    state: AccountState | None = None


class StatusInfo(FrozenModel):
    version: str
    started_at: AwareDatetime
    accounts: list[AccountInfo] = Field(default_factory=list)
    pending_signals: int = 0
    outbox_pending: int = 0


class PnlLine(FrozenModel):
    account: str
    realized: Decimal
    unrealized: Decimal
    fees: Decimal = Decimal(0)
    currency: str = "USD"

    @property
    def net(self) -> Decimal:
        return self.realized + self.unrealized - self.fees


class DayLine(FrozenModel):
    """Realized P&L of one account on one trading day (a futures account's day rolls at 17:00 CT)."""

    day: date
    account: str
    realized: Decimal
    fees: Decimal
    fills: int
    currency: str = "USD"

    @property
    def net(self) -> Decimal:
        return self.realized - self.fees


class CloseResult(FrozenModel):
    """What closing one position did: the closing order as the broker has it, or why nothing was closed."""

    account: str
    symbol: str
    ok: bool
    detail: str = ""
    order: Order | None = None


class RiskLine(FrozenModel):
    """One limit: e.g. name="daily loss", used=Decimal("420"), limit=Decimal("1000"), left=Decimal("580")."""

    account: str
    name: str
    used: Decimal | str
    limit: Decimal | str
    left: Decimal | str
    breached: bool = False


class HealthCheck(FrozenModel):
    name: str
    ok: bool
    detail: str = ""


class ControlResult(FrozenModel):
    """The outcome of pause/resume on one account."""

    account: str
    changed: bool  # False: it already was paused (or running)
    detail: str = ""


class StrategyInfo(FrozenModel):
    """One scheduled strategy instance; `error` says why a disabled one was disabled."""

    name: str
    strategy: str
    account: str
    symbol: str
    timeframe: str
    state: Literal["running", "paused", "disabled"]
    error: str | None = None
    last_bar_end: AwareDatetime | None = None
    last_signal: str | None = None
    last_signal_at: AwareDatetime | None = None
    next_run: datetime | None = None


class ExitCommands(Protocol):
    """What `/stop` and `/exit-after` act through (`daemon.strategy.exit_controls.ExitControls`)."""

    async def set_stop(self, account: str, symbol: str, offset: AtrOffset, actor: str) -> str: ...
    async def exit_after(self, account: str, symbol: str, spec: TimeExit, actor: str) -> str: ...


class ChatBackend(Protocol):
    """What chat-ops needs from the running daemon. `target` is an account name or "all"; `actor` is
    who did it ("Alice (telegram:111)", or "telegram:111" without a configured name) and is recorded with the
    action; `request_id` (cancel, close, flatten) comes from the
    confirmation token, so the same confirmation can never act twice."""

    async def status(self) -> StatusInfo: ...
    async def accounts(self) -> list[AccountInfo]: ...
    async def groups(self) -> dict[str, list[str]]: ...  # group name -> its accounts (multiplier > 0)
    async def positions(self, account: str | None) -> list[Position]: ...
    def time_exits(self, position: Position) -> list[TimeExitCountdown]: ...  # armed, soonest first
    # Exits set by hand on a held position; ValueError (shown as it is) when they cannot be set.
    async def set_stop(self, account: str, symbol: str, offset: AtrOffset, actor: str) -> str: ...
    async def exit_after(self, account: str, symbol: str, spec: TimeExit, actor: str) -> str: ...
    async def open_orders(self, account: str | None) -> list[Order]: ...
    async def recent_fills(self, n: int) -> list[Fill]: ...
    async def pnl(self, period: Period, account: str | None) -> list[PnlLine]: ...
    async def risk(self, account: str | None) -> list[RiskLine]: ...
    async def health(self) -> list[HealthCheck]: ...
    async def pause(self, target: str, actor: str) -> list[ControlResult]: ...
    async def resume(self, target: str, actor: str) -> list[ControlResult]: ...
    async def cancel(self, target: str, actor: str, request_id: str) -> list[FlattenReport]: ...
    async def flatten(self, target: str, actor: str, request_id: str) -> list[FlattenReport]: ...
    async def close(self, account: str, symbol: str, actor: str, request_id: str) -> CloseResult: ...
    async def daily(self, days: int) -> list[DayLine]: ...  # every account, the last `days` days, oldest first
    async def strategies(self) -> list[StrategyInfo]: ...
    async def chart(self, account: str | None, period: Period) -> bytes: ...
    async def strategy_control(self, name: str, action: StrategyAction, actor: str) -> StrategyInfo: ...
    async def audit(self, actor: str, action: str, target: str, ok: bool, detail: str) -> None: ...
