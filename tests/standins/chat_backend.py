"""In-memory stand-in of the daemon seam of chat-ops (`ChatBackend`), for tests of the core and the transports.

Its flatten/cancel/pause really change its state, so tests assert outcomes. The daemon's real backend is
`daemon.chat.backend.DaemonChatBackend` (exercised by tests/test_chat_e2e.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from daemon.chat.replies import (
    AccountInfo,
    CloseResult,
    ControlResult,
    DayLine,
    HealthCheck,
    PnlLine,
    RiskLine,
    StatusInfo,
    StrategyAction,
    StrategyInfo,
)
from daemon.domain import (
    AccountState,
    Fill,
    FlattenReport,
    Order,
    OrderStatus,
    OrderType,
    Period,
    Position,
    Side,
)
from daemon.queries import TimeExitCountdown
from daemon.shapes import AtrOffset, TimeExit

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)


def _order(oid: str, account: str, symbol: str, side: Side, qty: str, limit: str | None = None) -> Order:
    return Order(
        broker_order_id=oid,
        client_order_id="td" + oid,
        account=account,
        symbol=symbol,
        side=side,
        quantity=Decimal(qty),
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        limit_price=Decimal(limit) if limit else None,
        status=OrderStatus.NEW,
        created_at=T0,
        updated_at=T0,
    )


class FakeBackend:
    def __init__(self) -> None:
        self.started_at = T0
        self.broker = {"topstep1": "projectx", "paper": "paper"}
        self.paused: set[str] = set()
        self.groups_: dict[str, list[str]] = {}
        self.positions_: dict[str, list[Position]] = {
            "topstep1": [
                Position(
                    account="topstep1",
                    symbol="ESH5",
                    quantity=Decimal(2),
                    average_price=Decimal("5010.25"),
                    market_price=Decimal("5012.50"),
                    unrealized_pnl=Decimal("225.00"),
                ),
            ],
            "paper": [
                Position(
                    account="paper",
                    symbol="AAPL",
                    quantity=Decimal(-10),
                    average_price=Decimal("187.5"),
                    market_price=Decimal("188"),
                    unrealized_pnl=Decimal("-5"),
                ),
            ],
        }
        self.orders_: dict[str, list[Order]] = {
            "topstep1": [_order("o1", "topstep1", "ESH5", Side.SELL, "2", "5030.00")],
            "paper": [],
        }
        self.fills: list[Fill] = [
            Fill(
                fill_id=f"f{i}",
                broker_order_id=f"b{i}",
                client_order_id=f"c{i}",
                account="paper",
                symbol="AAPL",
                side=Side.SELL,
                quantity=Decimal(1),
                price=Decimal("187.5") + i,
                filled_at=T0,
            )
            for i in range(30)
        ]
        self.audits: list[tuple[str, str, str, bool, str]] = []
        self.flatten_calls = 0
        self.closes: list[tuple[str, str, str, str]] = []  # (account, symbol, actor, request id)
        self.actors: list[str] = []  # who each control action was attributed to
        self.request_ids: list[str] = []
        self.fail_health = False
        self.strategies_: dict[str, StrategyInfo] = {
            "es_sma": StrategyInfo(name="es_sma", strategy="sma_cross", account="topstep1", symbol="ESH5",
                                   timeframe="5m", state="running", last_bar_end=T0, last_signal="target 1",
                                   last_signal_at=T0, next_run=T0.replace(minute=35, second=2)),
            "rsi": StrategyInfo(name="rsi", strategy="rsi_reversion", account="paper", symbol="AAPL",
                                timeframe="1h", state="disabled", error="on_bar raised ZeroDivisionError: boom"),
        }
        self.fixed: set[str] = set()  # disabled strategies whose code now loads: resume re-enables them

    def _names(self, target: str | None) -> list[str]:
        return list(self.broker) if target in (None, "all") else [target]  # type: ignore[list-item]

    async def status(self) -> StatusInfo:
        return StatusInfo(
            version="0.1.0",
            started_at=self.started_at,
            accounts=await self.accounts(),
            pending_signals=0,
            outbox_pending=3,
        )

    async def groups(self) -> dict[str, list[str]]:
        return dict(self.groups_)

    async def accounts(self) -> list[AccountInfo]:
        return [
            AccountInfo(
                name=name,
                broker=broker,
                paused=name in self.paused,
                state=AccountState(
                    account=name,
                    broker=broker,
                    cash=Decimal("50000"),
                    equity=Decimal("50225.5"),
                    buying_power=Decimal("100000"),
                ),
            )
            for name, broker in self.broker.items()
        ]

    async def positions(self, account: str | None) -> list[Position]:
        return [p for name in self._names(account) for p in self.positions_[name]]

    def time_exits(self, position: Position) -> list[TimeExitCountdown]:
        return []

    async def set_stop(self, account: str, symbol: str, offset: AtrOffset, actor: str) -> str:
        raise ValueError("the stand-in backend has no bars")

    async def exit_after(self, account: str, symbol: str, spec: TimeExit, actor: str) -> str:
        raise ValueError("the stand-in backend arms no time exits")

    async def open_orders(self, account: str | None) -> list[Order]:
        return [o for name in self._names(account) for o in self.orders_[name]]

    async def recent_fills(self, n: int) -> list[Fill]:
        return self.fills[-n:]

    async def pnl(self, period: Period, account: str | None) -> list[PnlLine]:
        return [
            PnlLine(account=name, realized=Decimal("1250.5"), unrealized=Decimal("-20"), fees=Decimal("12.4"))
            for name in self._names(account)
        ]

    async def risk(self, account: str | None) -> list[RiskLine]:
        lines = []
        for name in self._names(account):
            lines.append(
                RiskLine(
                    account=name,
                    name="daily loss",
                    used=Decimal("420"),
                    limit=Decimal("1000"),
                    left=Decimal("580"),
                )
            )
            lines.append(RiskLine(account=name, name="day trades", used="2", limit="3", left="1"))
        return lines

    async def health(self) -> list[HealthCheck]:
        return [
            HealthCheck(name="store", ok=True),
            HealthCheck(
                name="broker topstep1",
                ok=not self.fail_health,
                detail="" if not self.fail_health else "timeout",
            ),
        ]

    async def daily(self, days: int) -> list[DayLine]:
        first = T0.date() - timedelta(days=days - 1)
        lines = [DayLine(day=date(2025, 2, 27), account="paper", realized=Decimal("-50"), fees=Decimal("2"), fills=2),
                 DayLine(day=date(2025, 3, 3), account="paper", realized=Decimal("120.5"), fees=Decimal("4.5"),
                         fills=4),
                 DayLine(day=date(2025, 3, 3), account="topstep1", realized=Decimal("300"), fees=Decimal("10"),
                         fills=6)]
        return [line for line in lines if line.day >= first]

    async def close(self, account: str, symbol: str, actor: str, request_id: str) -> CloseResult:
        self.closes.append((account, symbol, actor, request_id))
        held = next((p for p in self.positions_[account] if p.symbol == symbol), None)
        if held is None:
            return CloseResult(account=account, symbol=symbol, ok=True, detail=f"no {symbol} position to close")
        self.positions_[account] = [p for p in self.positions_[account] if p.symbol != symbol]
        order = Order(broker_order_id="c" + symbol, client_order_id="tdc" + symbol, account=account, symbol=symbol,
                      side=Side.SELL if held.quantity > 0 else Side.BUY, quantity=abs(held.quantity),
                      order_type=OrderType.MARKET, status=OrderStatus.FILLED, filled_quantity=abs(held.quantity),
                      average_fill_price=held.market_price)
        return CloseResult(account=account, symbol=symbol, ok=True, order=order)

    async def pause(self, target: str, actor: str) -> list[ControlResult]:
        self.actors.append(actor)
        out = []
        for name in self._names(target):
            out.append(ControlResult(account=name, changed=name not in self.paused))
            self.paused.add(name)
        return out

    async def resume(self, target: str, actor: str) -> list[ControlResult]:
        out = []
        for name in self._names(target):
            out.append(ControlResult(account=name, changed=name in self.paused))
            self.paused.discard(name)
        return out

    async def cancel(self, target: str, actor: str, request_id: str = "") -> list[FlattenReport]:
        reports = []
        for name in self._names(target):
            cancelled = [o.model_copy(update={"status": OrderStatus.CANCELLED}) for o in self.orders_[name]]
            self.orders_[name] = []
            reports.append(FlattenReport(account=name, cancelled=cancelled))
        return reports

    async def flatten(self, target: str, actor: str, request_id: str = "") -> list[FlattenReport]:
        self.flatten_calls += 1
        self.request_ids.append(request_id)
        reports = []
        for name in self._names(target):
            cancelled = [o.model_copy(update={"status": OrderStatus.CANCELLED}) for o in self.orders_[name]]
            closing = []
            for p in self.positions_[name]:
                closing.append(
                    Order(
                        broker_order_id="x" + p.symbol,
                        client_order_id="tdx" + p.symbol,
                        account=name,
                        symbol=p.symbol,
                        side=Side.SELL if p.quantity > 0 else Side.BUY,
                        quantity=abs(p.quantity),
                        order_type=OrderType.MARKET,
                        status=OrderStatus.FILLED,
                        filled_quantity=abs(p.quantity),
                        average_fill_price=p.market_price,
                    )
                )
            self.orders_[name] = []
            self.positions_[name] = []
            reports.append(FlattenReport(account=name, cancelled=cancelled, closing=closing))
        return reports

    async def strategies(self) -> list[StrategyInfo]:
        return list(self.strategies_.values())

    async def strategy_control(self, name: str, action: StrategyAction, actor: str) -> StrategyInfo:
        s = self.strategies_[name]
        if action == "pause":
            state = "disabled" if s.state == "disabled" else "paused"
            self.strategies_[name] = s.model_copy(update={"state": state})
        elif s.state != "disabled" or name in self.fixed:
            self.strategies_[name] = s.model_copy(update={"state": "running", "error": None})
        return self.strategies_[name]

    async def audit(self, actor: str, action: str, target: str, ok: bool, detail: str) -> None:
        self.audits.append((actor, action, target, ok, detail))
