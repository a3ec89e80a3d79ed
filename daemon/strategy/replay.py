"""Replay (backtest) of a strategy over historical bars through the real engine, paper broker and risk rules.

Fill convention (that of backtesting.py and most Python backtesters): signals a strategy returns on a bar
are executed at the NEXT bar's open: the replay clock moves to that bar's start, the open is the intent's
price, and the intent goes through `Engine.execute` exactly as a live signal would (target position,
exits, brackets, the account's basic limits via `RiskEngine`, and with `rules` the funded-account rules of
`daemon.risk.funded`), so the paper broker's commission and slippage apply. Resting orders (limits, stops,
bracket children) first meet the open (gaps fill at the open), then the bar's path: open -> low -> high ->
close for a rising bar, open -> high -> low -> close for a falling one; every order level on the path is
visited in order, so a stop fills at its stop price (plus slippage), not at the bar's extreme. Signals of
the last bar have no next bar and are not executed.

Funded rules: every fill and every price on the path updates the `FundedState`; a breach is reported as a
violation and its action applied (flatten, block the session, lock the account); an order that adds
contracts while blocked, locked, past flat-by or over the limit is refused like in the daemon.

`costs` (`daemon.strategy.costs`) replaces the paper broker's commission and slippage with its own, ticks
and per-contract fees included; `history` are earlier bars the strategy sees only as history (a
walk-forward test window's warm-up).

The report: closed round-trip trades (net of commission), P&L, win rate, profit factor, maximum drawdown of
the bar-close equity curve, annualised Sharpe ratio of daily equity returns (sqrt(252), risk-free 0), the
summary figures of `daemon.strategy.stats` (returns, average trade, expectancy, bars held, exposure), the
costs the fills paid, and every rule violation. Everything runs in memory (an in-memory SQLite store, a
temporary paper state file).
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, Field

from brokers.base import BrokerReport
from brokers.symbols import symbol_root
from config.brokers import PaperSettings
from config.settings import RiskLimits
from daemon.domain import ZERO, Event, OrderType, Violation
from daemon.engine import Engine
from daemon.events import EventBus
from daemon.metrics import Metrics
from daemon.risk import funded
from daemon.risk.engine import RiskEngine
from daemon.risk.funded_book import FundedBook
from daemon.store.repository import Store
from daemon.strategy.bars import CalendarName, aggregate, calendar_zone, load_csv, session_close_at
from daemon.strategy.costs import CostedPaperBroker, Costs
from daemon.strategy.runner import intent_for
from daemon.strategy.stats import ReplayStats, compute
from daemon.strategy.trades import Trade, round_trips
from strategies.base import Bar, Context, Position, Signal, Strategy

ACCOUNT = "replay"
PROGRESS_EVERY = 250  # bars between two calls of a replay's progress callback


class ReplayError(Exception):
    """The replay could not run (bad data, a strategy that raised); the message says where."""


class SignalLog(BaseModel):
    at: datetime
    signal: str
    status: str
    reason: str | None = None


class ReplayReport(BaseModel):
    strategy: str
    symbol: str
    timeframe: str
    params: dict[str, object]
    bars: int
    start: datetime | None
    end: datetime | None
    starting_equity: Decimal
    final_equity: Decimal
    net_pnl: Decimal
    commission: Decimal
    trades: list[Trade]
    open_position: Decimal
    win_rate: float | None
    profit_factor: float | None  # None: no trades; inf: no losing trade
    max_drawdown: Decimal
    max_drawdown_pct: float
    sharpe: float | None
    violations: list[Violation]
    warnings: list[Violation] = Field(default_factory=list)  # rules that warn but let the order go
    signals: list[SignalLog]
    equity_curve: list[tuple[datetime, Decimal]] = Field(default_factory=list)
    stats: ReplayStats | None = None
    costs: Costs | None = None  # the commission, slippage and fees the fills paid


class ReplayClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def load_bars(path: str | Path, symbol: str, timeframe: str, calendar: CalendarName) -> list[Bar]:
    return aggregate(load_csv(path, symbol, calendar), timeframe, calendar)


def _describe(signal: Signal) -> str:
    what = f"target {signal.target_position}" if signal.action == "target" else signal.action
    if signal.quantity is not None:
        what += f" {signal.quantity}"
    return what + (f" ({signal.comment})" if signal.comment else "")


class _Replay:
    def __init__(self, strategy: Strategy, bars: Sequence[Bar], paper: PaperSettings, limits: RiskLimits,
                 rules: funded.AccountRules | None, workdir: Path, history: Sequence[Bar] = (),
                 tick_slippage: Decimal = ZERO, progress: Callable[[int], None] | None = None) -> None:
        self.strategy, self.bars, self.rules, self.progress = strategy, bars, rules, progress
        self.seen = [*history, *bars]  # what on_bar may look back on: the history first, then the traded bars
        self.offset = len(history)
        self.symbol = strategy.context.symbol
        self.clock = ReplayClock(bars[0].start)
        if rules is not None:
            multipliers = {**paper.multipliers, symbol_root(self.symbol): rules.point_value(self.symbol)}
            paper = paper.model_copy(update={"multipliers": multipliers})
        self.broker = CostedPaperBroker(ACCOUNT, paper, workdir / "paper.json", tick_slippage=tick_slippage,
                                        clock=self.clock)
        self.funded_state = funded.new_state(rules, bars[0].start) if rules is not None else None
        book = FundedBook({ACCOUNT: rules} if rules is not None else {}, None, self.clock)
        if rules is not None and self.funded_state is not None:
            book.save(ACCOUNT, self.funded_state)
        self.risk = RiskEngine({ACCOUNT: limits}, self.clock, funded=book)
        self.store = Store("sqlite://")
        self.events = EventBus(keep=0)
        self.engine = Engine(store=self.store, brokers={ACCOUNT: self.broker}, risk=self.risk, events=self.events,
                             metrics=Metrics(), clock=self.clock)
        self.violations: list[Violation] = []
        self.warnings: list[Violation] = []
        self.signals: list[SignalLog] = []
        self.flatten_due = False
        self.index = 0  # the bar being replayed
        self.fill_bar: dict[str, int] = {}  # fill id -> the bar it filled in
        self.exposed = 0  # bars on which a position was held at some moment
        self.events.subscribe(self._on_event)
        self.broker.set_report_handler(self._on_report)

    def _on_event(self, event: Event) -> None:
        if event.kind == "violation":
            found = Violation.model_validate({k: v for k, v in event.data.items() if k in Violation.model_fields})
            (self.warnings if event.data.get("warning") else self.violations).append(found)

    async def _on_report(self, report: BrokerReport) -> None:
        if report.fill is not None:
            self.fill_bar[report.fill.fill_id] = self.index
        if report.fill is not None and self.rules is not None:
            self._apply(*funded.on_fill(self._funded, self.rules, report.fill))

    @property
    def _funded(self) -> funded.FundedState:
        assert self.funded_state is not None
        return self.funded_state

    def _apply(self, state: funded.FundedState, breaches: list[funded.Breach]) -> None:
        self.funded_state = state
        self.risk.funded.save(ACCOUNT, state)
        for breach in breaches:
            self.violations.append(breach.to_violation(ACCOUNT, symbol=self.symbol))
            if breach.action != "reject":
                self.flatten_due = True
            if breach.action == "flatten_lock":
                self.engine.lock(ACCOUNT, "risk", state.lock_reason or breach.detail)

    async def observe(self, price: Decimal, at: datetime) -> None:
        self.clock.now = at
        await self.broker.observe_price(self.symbol, price, at)
        if self.rules is not None:
            self._apply(*funded.on_mark(self._funded, self.rules, at, prices={self.symbol: price}))
        if self.flatten_due:
            self.flatten_due = False
            await self.broker.flatten()

    async def _resting_levels(self) -> list[Decimal]:
        levels: list[Decimal] = []
        for order in await self.broker.open_orders():
            if order.symbol != self.symbol:
                continue
            if order.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and order.stop_price is not None:
                levels.append(order.stop_price)
            if order.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and order.limit_price is not None:
                levels.append(order.limit_price)
        return levels

    async def walk(self, start: Decimal, end: Decimal, at: datetime) -> None:
        """Visit every resting order level strictly between `start` and `end` in path order, then `end`."""
        current, up = start, end > start
        while True:
            ahead = [lv for lv in await self._resting_levels()
                     if (current < lv < end if up else end < lv < current)]
            if not ahead:
                break
            current = min(ahead) if up else max(ahead)
            await self.observe(current, at)
        await self.observe(end, at)

    async def run(self) -> tuple[list[tuple[datetime, Decimal]], int]:
        self.store.open()
        await self.broker.connect()
        curve: list[tuple[datetime, Decimal]] = []
        pending: list[Signal] = []
        window = max(self.strategy.warmup, 1)
        try:
            for i, bar in enumerate(self.bars):
                self.index, fills_before = i, len(self.fill_bar)
                await self.observe(bar.open, bar.start)
                for k, signal in enumerate(pending):
                    intent = intent_for(signal, strategy=self.strategy.context.name, account=ACCOUNT,
                                        symbol=self.symbol, bar_end=self.bars[i - 1].end, index=k,
                                        price=bar.open, received_at=bar.start)
                    self.store.record_signal(intent)
                    outcome = await self.engine.execute(intent)
                    self.signals.append(SignalLog(at=bar.start, signal=_describe(signal),
                                                  status=outcome.status.value, reason=outcome.reason))
                pending = []
                first, second = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
                await self.walk(bar.open, first, bar.end)
                await self.walk(first, second, bar.end)
                await self.walk(second, bar.close, bar.end)
                curve.append((bar.end, (await self.broker.account_state()).equity))
                held = next((p for p in await self.broker.positions() if p.symbol == self.symbol), None)
                position = Position(held.quantity, held.average_price) if held else Position()
                # a fill in the bar means a position at that moment, even if the bar ends flat
                if (held is not None and held.quantity != 0) or len(self.fill_bar) > fills_before:
                    self.exposed += 1
                if self.progress is not None and (i + 1) % PROGRESS_EVERY == 0:
                    self.progress(PROGRESS_EVERY)
                try:
                    end = self.offset + i + 1
                    pending = list(self.strategy.on_bar(bar, self.seen[max(0, end - window): end], position))
                except Exception as exc:
                    raise ReplayError(f"{self.strategy.context.name}.on_bar raised on the bar of "
                                      f"{bar.start.isoformat()}: {type(exc).__name__}: {exc}") from exc
        finally:
            await self.broker.close()
            self.store.close()
        if self.progress is not None and len(self.bars) % PROGRESS_EVERY:
            self.progress(len(self.bars) % PROGRESS_EVERY)
        return curve, len(pending)


def performance(trades: Sequence[Trade], curve: Sequence[tuple[datetime, Decimal]],
           calendar: CalendarName) -> tuple[float | None, float | None, Decimal, float, float | None]:
    win_rate = sum(1 for t in trades if t.net_pnl > 0) / len(trades) if trades else None
    gains = sum((t.net_pnl for t in trades if t.net_pnl > 0), ZERO)
    losses = -sum((t.net_pnl for t in trades if t.net_pnl < 0), ZERO)
    profit_factor = None if not trades else (math.inf if losses == 0 else float(gains / losses))
    peak, max_dd, max_dd_pct = None, ZERO, 0.0
    for _, equity in curve:
        peak = equity if peak is None or equity > peak else peak
        if peak - equity > max_dd:
            max_dd = peak - equity
        if peak > 0:
            max_dd_pct = max(max_dd_pct, float((peak - equity) / peak * 100))
    zone = calendar_zone(calendar)
    daily: dict[object, Decimal] = {}
    for at, equity in curve:
        daily[at.astimezone(zone).date()] = equity
    values = list(daily.values())
    returns = [float(b / a - 1) for a, b in itertools.pairwise(values) if a > 0]
    sharpe = None
    if len(returns) >= 2 and statistics.stdev(returns) > 0:
        sharpe = statistics.fmean(returns) / statistics.stdev(returns) * math.sqrt(252)
    return win_rate, profit_factor, max_dd, max_dd_pct, sharpe


async def replay(strategy_cls: type[Strategy], params: BaseModel, bars: Sequence[Bar], *, name: str = "",
                 timeframe: str = "1d", calendar: CalendarName = "nyse", paper: PaperSettings | None = None,
                 limits: RiskLimits | None = None, rules: funded.AccountRules | None = None,
                 costs: Costs | None = None, history: Sequence[Bar] = (),
                 progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Run `strategy_cls` with `params` over `bars` (already of its timeframe) and report the results.

    `costs` replaces the commission and slippage of `paper`; `history` are bars before the first traded one
    that the strategy sees as history (a walk-forward test window's warm-up) but never trades on;
    `progress(n)` is called as each `PROGRESS_EVERY` bars (and the rest at the end) are done.
    """
    if not bars:
        raise ReplayError("no bars to replay (is the data inside the calendar's sessions?)")
    paper = paper or PaperSettings()
    if rules is not None and rules.starting_balance > 0:
        paper = paper.model_copy(update={"starting_cash": rules.starting_balance})
    symbol = bars[0].symbol
    if costs is not None:
        paper = costs.paper_settings(paper, symbol)
    paid = costs or Costs.of_paper(paper)
    context = Context(name=name or strategy_cls.__name__, symbol=symbol, timeframe=timeframe, calendar=calendar,
                      account=ACCOUNT, session_close=lambda ts: session_close_at(calendar, ts))
    strategy = strategy_cls(params, context)
    with tempfile.TemporaryDirectory(prefix="traderd-replay-") as tmp:
        run = _Replay(strategy, bars, paper, limits or RiskLimits(), rules, Path(tmp), history,
                      costs.tick_slippage(symbol) if costs is not None else ZERO, progress)
        curve, _unexecuted = await run.run()
        fills = await run.broker.fills()
        multiplier = run.broker.multiplier(symbol)
    trades, open_qty = round_trips(fills, multiplier, run.fill_bar)
    win_rate, pf, max_dd, max_dd_pct, sharpe = performance(trades, curve, calendar)
    final = curve[-1][1] if curve else paper.starting_cash
    return ReplayReport(
        strategy=context.name, symbol=symbol, timeframe=timeframe, params=params.model_dump(mode="json"),
        bars=len(bars), start=bars[0].start, end=bars[-1].end, starting_equity=paper.starting_cash,
        final_equity=final, net_pnl=final - paper.starting_cash, commission=sum((f.commission for f in fills), ZERO),
        trades=trades, open_position=open_qty, win_rate=win_rate, profit_factor=pf, max_drawdown=max_dd,
        max_drawdown_pct=max_dd_pct, sharpe=sharpe, violations=run.violations, warnings=run.warnings,
        signals=run.signals, equity_curve=curve,
        stats=compute(trades, bars, paper.starting_cash, final, run.exposed), costs=paid,
    )
