"""The text report of one `traderd replay`: summary figures in the exchange's local time, and the trade list.

A daily bar is shown as its session date, an intraday time as the exchange's wall-clock time (the zone is
named once in the first line). The trade list comes only when asked for (`--trades`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from daemon.strategy.bars import CalendarName, calendar_zone
from daemon.strategy.replay import ReplayReport
from daemon.strategy.trades import Trade
from strategies.base import Bar


def _pct(x: float | None, signed: bool = False) -> str:
    return "-" if x is None else f"{x:+.2f}%" if signed else f"{x:.1f}%"


def _num(x: object, places: int = 2) -> str:
    return "-" if x is None else f"{x:,.{places}f}"


class Times:
    """Bar and fill times as the exchange's calendar shows them."""

    def __init__(self, bars: Sequence[Bar], timeframe: str, calendar: CalendarName) -> None:
        self.bars, self.daily, self.zone = bars, timeframe == "1d", calendar_zone(calendar)

    def at(self, when: datetime, bar: int | None = None) -> str:
        if self.daily:  # a session: its date is the day of its close (a CME session opens the evening before)
            end = self.bars[bar].end if bar is not None and 0 <= bar < len(self.bars) else when
            return f"{end.astimezone(self.zone):%Y-%m-%d}"
        return f"{when.astimezone(self.zone):%Y-%m-%d %H:%M}"

    def span(self) -> str:
        if not self.bars:
            return ""
        first, last = self.bars[0], self.bars[-1]
        return f"{self.at(first.start, 0)} .. {self.at(last.end if self.daily else last.start, len(self.bars) - 1)}"


def trade_table(trades: Sequence[Trade], times: Times) -> list[str]:
    width = 10 if times.daily else 16
    lines = [f"{'#':>3} {'side':<4} {'qty':>8} {'entry':<{width}} {'price':>10} {'exit':<{width}} {'price':>10} "
             f"{'bars':>5} {'net P&L':>10} {'return':>8}"]
    for i, t in enumerate(trades, 1):
        held = "-" if t.bars_held is None else str(t.bars_held)
        lines.append(f"{i:>3} {t.side.value:<4} {t.quantity.normalize():>8f} "
                     f"{times.at(t.entry_time, t.entry_bar):<{width}} {t.entry_price:>10.2f} "
                     f"{times.at(t.exit_time, t.exit_bar):<{width}} {t.exit_price:>10.2f} {held:>5} "
                     f"{t.net_pnl:>10.2f} {_pct(t.return_pct, signed=True):>8}")
    return lines


def render(report: ReplayReport, bars: Sequence[Bar], calendar: CalendarName, *, trades: bool = False,
           costs_source: str = "", hint: bool = True) -> str:
    """The report as text; `costs_source` says where the costs came from (configuration, flags); `hint`
    mentions `--trades` when the trades are not listed."""
    times = Times(bars, report.timeframe, calendar)
    s = report.stats
    start = float(report.starting_equity)
    total = s.total_return_pct if s else float(report.net_pnl) / start * 100
    pf = "-" if report.profit_factor is None else f"{report.profit_factor:.2f}"
    costs = report.costs.describe(report.symbol) if report.costs else "not recorded"
    lines = [
        f"{report.strategy} on {report.symbol} {report.timeframe}: {report.bars} bars {times.span()} "
        f"(times {times.zone.key})",
        f"params: {json.dumps(report.params)}",
        f"costs: {costs}" + (f" ({costs_source})" if costs_source else ""),
        f"equity {_num(report.starting_equity)} -> {_num(report.final_equity)}: net P&L {_num(report.net_pnl)} "
        f"(total return {_pct(total, signed=True)}), commission {_num(report.commission)}"
        + (f"; buy and hold {_pct(s.buy_and_hold_return_pct, signed=True)}" if s else ""),
        f"trades {len(report.trades)}, win rate {_pct(None if report.win_rate is None else report.win_rate * 100)}"
        f", profit factor {pf}"
        + (f", average trade {_num(s.avg_trade)} ({_pct(s.avg_trade_pct, signed=True)} geometric), "
           f"expectancy {_pct(s.expectancy_pct, signed=True)} a trade" if s else ""),
    ]
    if s:
        lines.append(f"average win {_num(s.avg_win)}, average loss {_num(s.avg_loss)}, best {_num(s.best_trade)}, "
                     f"worst {_num(s.worst_trade)}, average bars held {_num(s.avg_bars_held, 1)}, "
                     f"exposure {_pct(s.exposure_pct)} of the bars")
    lines.append(f"max drawdown {_num(report.max_drawdown)} ({report.max_drawdown_pct:.2f}%), "
                 f"Sharpe {'-' if report.sharpe is None else f'{report.sharpe:.2f}'}")
    if report.open_position:
        lines.append(f"open position at the end: {report.open_position.normalize():f}")
    if report.trades and trades:
        lines += ["", *trade_table(report.trades, times)]
    elif report.trades and hint:
        lines.append(f"(--trades lists the {len(report.trades)} trades)")
    lines += ["", f"rule violations: {len(report.violations)}"]
    lines += [f"  {v.at.astimezone(times.zone):%Y-%m-%d %H:%M} {v.rule}: {v.detail}" for v in report.violations]
    return "\n".join(lines)
