"""The daemon side of chat-ops: `DaemonChatBackend` answers `ChatBackend` calls from the Reader, Engine and Store.

Read commands use the same `daemon.queries.Reader` as the control API. Control commands take the engine's
paths: pause/resume are persisted controls (`Engine.pause`); cancel and flatten are queued as intents on
each account's own worker (so they are ordered with every other signal of the account) and waited for,
bounded, so the reply can say exactly what was done. Their request id comes from the confirmation token,
which makes a repeated confirmation of the same question a no-op at the engine too. `/strategies` and
`/strategy pause|resume` go to the daemon's `StrategyRunner` (the same calls as the control API's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from daemon.calendar import futures_session_date, futures_session_start
from daemon.chat.replies import (
    AccountInfo,
    CloseResult,
    ControlResult,
    DayLine,
    ExitCommands,
    HealthCheck,
    PnlLine,
    RiskLine,
    StatusInfo,
    StrategyAction,
    StrategyInfo,
)
from daemon.domain import (
    Action,
    Fill,
    FlattenReport,
    Intent,
    Order,
    Period,
    Position,
    StrategyControls,
    StrategyStatus,
)
from daemon.engine import Engine, Outcome
from daemon.history import chart_png, period_curves
from daemon.queries import Reader, TimeExitCountdown
from daemon.shapes import AtrOffset, TimeExit
from daemon.store.repository import Store

WAIT_SECONDS = 20.0  # under the transports' 30 s handler bound


class LimitLine(Protocol):
    """One described limit, as display strings."""

    @property
    def name(self) -> str: ...
    @property
    def used(self) -> str: ...
    @property
    def limit(self) -> str: ...
    @property
    def left(self) -> str: ...
    @property
    def breached(self) -> bool: ...


class RiskDescriber(Protocol):
    """The risk engine as `/risk` needs it; `positions` is symbol -> signed quantity held."""

    def describe(self, account: str, positions: Mapping[str, Decimal] | None = None) -> Sequence[LimitLine]: ...


class DaemonChatBackend:
    def __init__(
        self,
        *,
        reader: Reader,
        engine: Engine,
        risk: RiskDescriber,
        store: Store,
        readiness: Callable[[], Mapping[str, Any]],
        version: str,
        started_at: Callable[[], datetime | None],
        outbox_pending: Callable[[], int] = lambda: 0,
        extra_health: Callable[[], list[HealthCheck]] = list,
        clock: Callable[[], datetime],
        wait_seconds: float = WAIT_SECONDS,
        strategies: StrategyControls | None = None,
        exits: ExitCommands | None = None,
    ) -> None:
        self.exits = exits
        self.runner = strategies
        self.reader = reader
        self.engine = engine
        self.risk_engine = risk
        self.store = store
        self.readiness = readiness
        self.version = version
        self.started_at = started_at
        self.outbox_pending = outbox_pending
        self.extra_health = extra_health
        self.clock = clock
        self.wait_seconds = wait_seconds

    # ---- reads -----------------------------------------------------------------------------------

    async def status(self) -> StatusInfo:
        return StatusInfo(
            version=self.version,
            started_at=self.started_at() or self.clock(),
            accounts=await self.accounts(),
            pending_signals=self.reader.pending_signals(),
            outbox_pending=self.outbox_pending(),
        )

    async def accounts(self) -> list[AccountInfo]:
        return [
            AccountInfo(name=view.account, broker=view.broker, paused=view.controls.paused,
                        connected=view.connected and view.error is None,
                        locked="locked by risk" if view.controls.locked else None, state=view.state)
            for view in await self.reader.accounts()
        ]

    async def groups(self) -> dict[str, list[str]]:
        return {name: self.engine.targets(name) for name in self.engine.groups}

    async def positions(self, account: str | None) -> list[Position]:
        return [view.position for view in await self.reader.positions(account)]

    def time_exits(self, position: Position) -> list[TimeExitCountdown]:
        return self.reader.countdowns(position)

    async def set_stop(self, account: str, symbol: str, offset: AtrOffset, actor: str) -> str:
        if self.exits is None:
            raise ValueError("exits cannot be set from chat on this daemon")
        return await self.exits.set_stop(account, symbol, offset, actor)

    async def exit_after(self, account: str, symbol: str, spec: TimeExit, actor: str) -> str:
        if self.exits is None:
            raise ValueError("exits cannot be set from chat on this daemon")
        return await self.exits.exit_after(account, symbol, spec, actor)

    async def open_orders(self, account: str | None) -> list[Order]:
        return await self.reader.open_orders(account)

    async def chart(self, account: str | None, period: Period) -> bytes:
        """The equity picture of `account` (None: every account) since the period's start, as a PNG."""
        curves = await period_curves(self.reader, self.store, account, period)
        return await asyncio.to_thread(chart_png, curves, period, self.reader.timezone, self.clock())

    async def recent_fills(self, n: int) -> list[Fill]:
        return list(reversed(self.store.fills(limit=n)))  # oldest of the n first, like a chat log

    async def pnl(self, period: Period, account: str | None) -> list[PnlLine]:
        report = await self.reader.pnl(period, account)
        currency = {view.account: view.state.currency for view in await self.reader.accounts() if view.state}
        return [
            PnlLine(account=line.account, realized=line.realized, unrealized=line.unrealized, fees=line.fees,
                    currency=currency.get(line.account) or "USD")
            for line in report.accounts
        ]

    async def daily(self, days: int) -> list[DayLine]:
        """Each account's realized P&L per trading day over the last `days` days (today included): calendar days
        in the daemon's time zone, CME trading days (17:00 CT roll) for futures accounts."""
        zone, now = ZoneInfo(self.reader.timezone), self.clock()
        currency = {view.account: view.state.currency for view in await self.reader.accounts() if view.state}
        lines: list[DayLine] = []
        for name in self.reader.accounts_named(None):
            day_of: Callable[[datetime], date]
            if name in self.reader.futures:
                first = futures_session_date(now) - timedelta(days=days - 1)
                since, day_of = futures_session_start(first), futures_session_date
            else:
                first = now.astimezone(zone).date() - timedelta(days=days - 1)
                since = datetime.combine(first, datetime.min.time(), zone)
                day_of = _local_day(zone)
            lines += [DayLine(day=d.day, account=name, realized=d.realized, fees=d.fees, fills=d.fills,
                              currency=currency.get(name) or "USD")
                      for d in self.store.pnl_by_day(name, since, day_of=day_of)]
        return sorted(lines, key=lambda line: (line.day, line.account))

    async def risk(self, account: str | None) -> list[RiskLine]:
        lines: list[RiskLine] = []
        for name in self.reader.accounts_named(account):
            held = {view.position.symbol: view.position.quantity for view in await self.reader.positions(name)}
            lines += [RiskLine(account=name, name=status.name, used=status.used, limit=status.limit,
                               left=status.left, breached=status.breached)
                      for status in self.risk_engine.describe(name, held)]
        return lines

    async def health(self) -> list[HealthCheck]:
        checks = []
        for name, value in self.readiness().items():
            ok = bool(value)
            checks.append(HealthCheck(name=name, ok=ok, detail="" if ok else "not ready"))
        depth = self.reader.pending_signals()
        checks.append(HealthCheck(name="signal queue", ok=True, detail=f"{depth} waiting"))
        return checks + self.extra_health()

    async def strategies(self) -> list[StrategyInfo]:
        return [_strategy_info(s) for s in self.runner.status()] if self.runner is not None else []

    # ---- controls --------------------------------------------------------------------------------

    def _targets(self, target: str) -> list[str]:
        return self.engine.targets(target)  # "all" or one configured account (chat-ops resolved the name)

    def _paused(self, target: str) -> set[str]:
        return {a for a in self._targets(target) if self.reader.controls(a).paused}

    async def pause(self, target: str, actor: str) -> list[ControlResult]:
        before = self._paused(target)
        accounts = self.engine.pause(target, actor, True)
        return [ControlResult(account=a, changed=a not in before) for a in accounts]

    async def resume(self, target: str, actor: str) -> list[ControlResult]:
        before = self._paused(target)
        accounts = self.engine.pause(target, actor, False)
        detail = {a: "still LOCKED by risk" for a in accounts if self.reader.controls(a).locked}
        return [ControlResult(account=a, changed=a in before, detail=detail.get(a, "")) for a in accounts]

    async def cancel(self, target: str, actor: str, request_id: str) -> list[FlattenReport]:
        """Cancel every open order, through each account's worker; one report per account."""
        ids = list(zip(self._targets(target), self.engine.request_cancel(target, actor, request_id, "chat"),
                       strict=True))
        reports = []
        for account, signal_id in ids:
            outcome = await self._wait(signal_id)
            if isinstance(outcome, str):
                reports.append(FlattenReport(account=account, errors=[outcome]))
                continue
            cancelled = outcome.result if isinstance(outcome.result, list) else []
            errors = [] if outcome.status.value == "executed" else [outcome.reason or outcome.status.value]
            reports.append(FlattenReport(account=account, cancelled=cancelled, errors=errors))
        return reports

    async def flatten(self, target: str, actor: str, request_id: str) -> list[FlattenReport]:
        """Cancel orders and close positions, through each account's worker (`Engine.request_flatten`)."""
        signal_ids = self.engine.request_flatten(target, actor, request_id, source="chat")
        reports = []
        for account, signal_id in zip(self._targets(target), signal_ids, strict=True):
            outcome = await self._wait(signal_id)
            if isinstance(outcome, str):
                reports.append(FlattenReport(account=account, errors=[outcome]))
            elif isinstance(outcome.result, FlattenReport):
                reports.append(outcome.result)
            elif outcome.status.value == "executed":
                reports.append(FlattenReport(account=account))  # done earlier under the same request
            else:
                reports.append(FlattenReport(account=account, errors=[outcome.reason or outcome.status.value]))
        return reports

    async def close(self, account: str, symbol: str, actor: str, request_id: str) -> CloseResult:
        """Close one position at market: an exit signal on the account's own worker (its working orders on the
        symbol are cancelled first), keyed by the confirmation, so the same confirmation never closes twice."""
        intent = Intent(signal_id=f"close_{request_id}_{account}", dedup_key=f"close:{request_id}", account=account,
                        source="chat", action=Action.EXIT, symbol=symbol, received_at=self.clock(),
                        comment=f"close by {actor}")
        outcome = await self._wait(self.engine.accept(intent).signal_id)
        if isinstance(outcome, str):
            return CloseResult(account=account, symbol=symbol, ok=False, detail=outcome)
        ok = outcome.status.value == "executed"
        return CloseResult(account=account, symbol=symbol, ok=ok, detail=outcome.reason or "", order=outcome.order)

    async def _wait(self, signal_id: str) -> Outcome | str:
        try:
            return await self.engine.wait_for(signal_id, self.wait_seconds)
        except TimeoutError:
            return f"still queued after {self.wait_seconds:.0f} s (signal {signal_id}); it will run in turn"

    async def strategy_control(self, name: str, action: StrategyAction, actor: str) -> StrategyInfo:
        """Pause or resume (re-enable) one strategy; KeyError for a name that is not configured."""
        if self.runner is None:
            raise KeyError(f"unknown strategy {name!r}; no strategies are configured")
        (self.runner.pause if action == "pause" else self.runner.resume)(name, actor)
        return next(s for s in await self.strategies() if s.name == name)

    async def audit(self, actor: str, action: str, target: str, ok: bool, detail: str) -> None:
        self.store.audit(actor, action, target or None, detail, ok)


def _strategy_info(status: StrategyStatus) -> StrategyInfo:
    return StrategyInfo(state=status.status, **status.model_dump(exclude={"status"}))


def _local_day(zone: ZoneInfo) -> Callable[[datetime], date]:
    return lambda at: at.astimezone(zone).date()
