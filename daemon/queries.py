"""Read-side answers shared by the control API, the CLI and chat: accounts, positions, orders, fills, P&L.

One place computes what to say; the API and the chat transports only format it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from brokers.base import Broker, BrokerError
from daemon.domain import ZERO, Position, utcnow
from daemon.engine import Engine
from daemon.store.repository import Store

Period = Literal["today", "week", "month"]
PERIODS: tuple[str, ...] = ("today", "week", "month")


def period_start(period: str, now: datetime, tz: str) -> datetime:
    local = now.astimezone(ZoneInfo(tz)).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        local -= timedelta(days=local.weekday())
    elif period == "month":
        local = local.replace(day=1)
    elif period != "today":
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    return local


def money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value.quantize(Decimal('0.01'))}"


class Reader:
    def __init__(self, *, store: Store, brokers: Mapping[str, Broker], engine: Engine, timezone: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.brokers = brokers
        self.engine = engine
        self.timezone = timezone
        self.clock = clock

    def accounts_named(self, account: str | None) -> list[str]:
        """One account, or all of them for None / "all"; KeyError naming the accounts for an unknown one."""
        return self.engine.targets(account or "all")

    async def accounts(self) -> list[dict[str, Any]]:
        rows = []
        for name, broker in self.brokers.items():
            row: dict[str, Any] = {"account": name, "broker": broker.name, "connected": broker.healthy(),
                                   "paused": name in self.engine.paused, "locked": name in self.engine.locked,
                                   "queue_depth": self.engine.queue_depth(name)}
            try:
                state = await broker.account_state()
                row |= state.model_dump(mode="json", exclude={"account", "broker"})
            except BrokerError as exc:
                snapshot = self.store.latest_snapshot(name)
                row["error"] = exc.reason
                if snapshot is not None:
                    row |= snapshot.model_dump(mode="json", exclude={"account", "broker"}) | {"stale": True}
            rows.append(row)
        return rows

    async def positions(self, account: str | None = None) -> list[dict[str, Any]]:
        """Live from the broker; from the store (marked stale) when the broker cannot answer."""
        rows: list[dict[str, Any]] = []
        for name in self.accounts_named(account):
            try:
                positions: list[Position] = await self.brokers[name].positions()
                stale = False
            except BrokerError:
                positions, stale = self.store.positions(name), True
            rows += [p.model_dump(mode="json") | {"stale": stale} for p in positions if p.quantity != 0]
        return rows

    async def pnl(self, period: str = "today", account: str | None = None) -> dict[str, Any]:
        """Realized and fees from recorded fills since the period's start; unrealized from live positions."""
        names = self.accounts_named(account)
        since = period_start(period, self.clock(), self.timezone)
        per_account: list[dict[str, Any]] = []
        totals = {"realized": ZERO, "fees": ZERO, "unrealized": ZERO}
        for name in names:
            realized = fees = ZERO
            count = 0
            for fill, pnl in self.store.fills_with_pnl(name, since):
                realized += pnl
                fees += fill.commission
                count += 1
            unrealized = sum((Decimal(p["unrealized_pnl"]) for p in await self.positions(name)), ZERO)
            per_account.append({"account": name, "realized": money(realized), "fees": money(fees),
                                "unrealized": money(unrealized), "net": money(realized - fees + unrealized),
                                "fills": count})
            totals["realized"] += realized
            totals["fees"] += fees
            totals["unrealized"] += unrealized
        total = {k: money(v) for k, v in totals.items()}
        total["net"] = money(totals["realized"] - totals["fees"] + totals["unrealized"])
        days = [d.model_dump(mode="json") for name in names
                for d in self.store.pnl_by_day(name, since, self.timezone)]
        return {"period": period, "since": since.isoformat(), "accounts": per_account, "total": total,
                "by_day": days}
