"""The daemon side of chat-ops: `DaemonChatBackend` answers `ChatBackend` calls from the Reader, Engine and Store.

Read commands use the same `daemon.queries.Reader` as the control API. Control commands take the engine's
paths: pause/resume are persisted controls (`Engine.pause`); cancel and flatten are queued as intents on
each account's own worker (so they are ordered with every other signal of the account) and waited for,
bounded, so the reply can say exactly what was done. Their request id comes from the confirmation token,
which makes a repeated confirmation of the same question a no-op at the engine too. `/strategies` and
`/strategy pause|resume` go to the daemon's `StrategyRunner` (the same calls as the control API's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from brokers.base import BrokerError
from config.settings import RiskLimits
from daemon.chat.commands import (
    AccountInfo,
    ControlResult,
    HealthCheck,
    Period,
    PnlLine,
    RiskLine,
    StatusInfo,
    StrategyAction,
    StrategyInfo,
)
from daemon.domain import ZERO, AccountState, Fill, FlattenReport, Order, Position
from daemon.engine import Engine
from daemon.queries import Reader
from daemon.store.repository import Store
from daemon.strategy.runner import StrategyRunner, StrategyStatus

WAIT_SECONDS = 20.0  # under the transports' 30 s handler bound


def _fmt(value: Decimal | int | None) -> str:
    if value is None:
        return "-"
    return format(Decimal(value).normalize(), "f")


class DaemonChatBackend:
    def __init__(
        self,
        *,
        reader: Reader,
        engine: Engine,
        store: Store,
        limits: Mapping[str, RiskLimits],
        readiness: Callable[[], Mapping[str, Any]],
        version: str,
        started_at: Callable[[], datetime | None],
        outbox_pending: Callable[[], int] = lambda: 0,
        extra_health: Callable[[], list[HealthCheck]] = list,
        clock: Callable[[], datetime],
        wait_seconds: float = WAIT_SECONDS,
        strategies: StrategyRunner | None = None,
    ) -> None:
        self.runner = strategies
        self.reader = reader
        self.engine = engine
        self.store = store
        self.limits = limits
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
            pending_signals=sum(self.engine.queue_depth(name) for name in self.engine.brokers),
            outbox_pending=self.outbox_pending(),
        )

    async def accounts(self) -> list[AccountInfo]:
        out = []
        for row in await self.reader.accounts():
            name = row["account"]
            state = None
            if "equity" in row and "cash" in row:
                fields = {k: row[k] for k in AccountState.model_fields if k in row}
                state = AccountState.model_validate(fields | {"account": name, "broker": row["broker"]})
            out.append(AccountInfo(name=name, broker=row["broker"], paused=bool(row["paused"]),
                                   connected=bool(row["connected"]) and "error" not in row,
                                   locked="locked by risk" if row.get("locked") else None, state=state))
        return out

    async def positions(self, account: str | None) -> list[Position]:
        rows = await self.reader.positions(account)
        return [Position.model_validate({k: v for k, v in row.items() if k != "stale"}) for row in rows]

    async def open_orders(self, account: str | None) -> list[Order]:
        orders: list[Order] = []
        for name in self.reader.accounts_named(account):
            try:
                orders += await self.reader.brokers[name].open_orders()
            except BrokerError:
                orders += self.store.orders(name, open_only=True)
        return [o for o in orders if o.status.is_open]

    async def recent_fills(self, n: int) -> list[Fill]:
        return list(reversed(self.store.fills(limit=n)))  # oldest of the n first, like a chat log

    async def pnl(self, period: Period, account: str | None) -> list[PnlLine]:
        answer = await self.reader.pnl(period, account)
        currency = {row["account"]: row.get("currency", "USD") for row in await self.reader.accounts()}
        return [
            PnlLine(account=a["account"], realized=Decimal(a["realized"]), unrealized=Decimal(a["unrealized"]),
                    fees=Decimal(a["fees"]), currency=currency.get(a["account"]) or "USD")
            for a in answer["accounts"]
        ]

    async def risk(self, account: str | None) -> list[RiskLine]:
        lines: list[RiskLine] = []
        describe = getattr(self.engine.risk, "describe", None)
        for name in self.reader.accounts_named(account):
            if callable(describe):
                held = await self._held(name)
                try:
                    statuses = describe(name, held)
                except TypeError:  # an older describe(account) without positions
                    statuses = describe(name)
                for status in statuses:
                    lines.append(RiskLine(account=name, name=str(status.name), used=str(status.used),
                                          limit=str(status.limit), left=str(status.left),
                                          breached=bool(status.breached)))
                continue
            lines += await self._basic_limits(name)
        return lines

    async def _held(self, name: str) -> dict[str, Decimal]:
        """Signed position per symbol: live from the broker, else the store's ledger."""
        try:
            return {p.symbol: p.quantity for p in await self.reader.brokers[name].positions() if p.quantity != 0}
        except BrokerError:
            return {p.symbol: p.quantity for p in self.store.positions(name)}

    async def _basic_limits(self, name: str) -> list[RiskLine]:
        """Until the risk engine can describe itself: the configured basic limits, with what is in use."""
        limits = self.limits.get(name)
        if limits is None:
            return []
        held = await self._held(name)
        lines = []

        def line(label: str, used: Decimal | int | None, limit: Decimal | int, left: bool = True) -> None:
            remaining = Decimal(limit) - Decimal(used) if left and used is not None else None
            lines.append(RiskLine(account=name, name=label, used=_fmt(used), limit=_fmt(limit),
                                  left=_fmt(remaining), breached=remaining is not None and remaining < 0))

        if limits.max_order_quantity is not None:
            line("order qty", None, limits.max_order_quantity, left=False)
        if limits.max_position is not None:
            largest = max((abs(q) for q in held.values()), default=ZERO)
            line("position/sym", largest, limits.max_position)
        if limits.max_open_positions is not None:
            line("open positions", len(held), limits.max_open_positions)
        if limits.max_notional is not None:
            line("order notional", None, limits.max_notional, left=False)
        if limits.max_orders_per_minute is not None:
            line("orders/minute", None, limits.max_orders_per_minute, left=False)
        if limits.allowed_symbols:
            lines.append(RiskLine(account=name, name="symbols", used="-", limit=",".join(limits.allowed_symbols)[:24],
                                  left="-"))
        if limits.trading_hours is not None:
            hours = limits.trading_hours
            lines.append(RiskLine(account=name, name="hours", used="-",
                                  limit=f"{hours.start:%H:%M}-{hours.end:%H:%M}", left="-"))
        if name in self.engine.locked:
            lines.append(RiskLine(account=name, name="LOCKED", used="-", limit="-", left="0", breached=True))
        return lines

    async def health(self) -> list[HealthCheck]:
        checks = []
        for name, value in self.readiness().items():
            ok = bool(value)
            checks.append(HealthCheck(name=name, ok=ok, detail="" if ok else "not ready"))
        depth = sum(self.engine.queue_depth(n) for n in self.engine.brokers)
        checks.append(HealthCheck(name="signal queue", ok=True, detail=f"{depth} waiting"))
        return checks + self.extra_health()

    async def strategies(self) -> list[StrategyInfo]:
        return [_strategy_info(s) for s in self.runner.status()] if self.runner is not None else []

    # ---- controls --------------------------------------------------------------------------------

    def _targets(self, target: str) -> list[str]:
        return self.engine.targets(target)  # "all" or one configured account (chat-ops resolved the name)

    async def pause(self, target: str, actor: str) -> list[ControlResult]:
        before = set(self.engine.paused)
        accounts = self.engine.pause(target, actor, True)
        return [ControlResult(account=a, changed=a not in before) for a in accounts]

    async def resume(self, target: str, actor: str) -> list[ControlResult]:
        before = set(self.engine.paused)
        accounts = self.engine.pause(target, actor, False)
        detail = {a: "still LOCKED by risk" for a in accounts if a in self.engine.locked}
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

    async def _wait(self, signal_id: str) -> Any:
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
