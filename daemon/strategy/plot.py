"""Replay charts: price with entries and exits, equity against buy-and-hold, and drawdown, as PNG or SVG.

The x axis is the bar number, labelled with the bars' exchange-local times, so nights, weekends and holidays
take no room (an intraday replay reads as one continuous session). Money axes print dollars with thousands
separators, never an offset or an exponent. The format follows the file's extension (.png or .svg).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from daemon.domain import Bar
from daemon.money import money
from daemon.strategy.replay import ReplayReport

FORMATS = (".png", ".svg")
WIDTH, HEIGHT, DPI = 1200, 900, 100
CALENDAR_TZ = {"nyse": "America/New_York", "cme": "America/Chicago", "24x7": "UTC"}


class PlotError(ValueError):
    """The chart cannot be written (unknown extension)."""


def dollars(value: float, _pos: object = None) -> str:
    """Matplotlib's tick formatter for a money axis: whole dollars."""
    return money(Decimal(str(float(value))), places=0, symbol="$")


def bar_index(bars: Sequence[Bar], at: datetime) -> int:
    """The bar that `at` falls in (the last bar starting at or before it)."""
    return max(0, bisect_right([b.start for b in bars], at) - 1)


def tick_positions(bars: Sequence[Bar], tz: ZoneInfo, most: int = 10) -> tuple[list[int], list[str]]:
    """Where to label the compressed axis: at day (or, for many days, month) changes, at most `most` labels."""
    local = [b.start.astimezone(tz) for b in bars]
    intraday = len(bars) > 1 and local[-1].date() != local[0].date() and \
        len({d.date() for d in local}) * 3 < len(bars)
    key = (lambda d: d.date()) if len({d.date() for d in local}) <= most * 4 else (lambda d: (d.year, d.month))
    starts = [i for i in range(len(local)) if i == 0 or key(local[i]) != key(local[i - 1])]
    gap = len(bars) / (most * 1.5)  # labels closer than this would overlap (a short session, a half day)
    chosen: list[int] = []
    for i in starts:
        if not chosen or i - chosen[-1] >= gap:
            chosen.append(i)
    fmt = "%a %d %b" if intraday else "%Y-%m-%d" if key(local[0]) == local[0].date() else "%b %Y"
    return chosen, [local[i].strftime(fmt) for i in chosen]


def held_quantity(report: ReplayReport) -> tuple[float, float]:
    """(quantity, point value) buy-and-hold holds: the strategy's first trade size, and the symbol's multiplier
    as that trade's P&L shows it (1 without trades)."""
    if not report.trades:
        return 1.0, 1.0
    first = report.trades[0]
    move = float((first.exit_price - first.entry_price) * first.quantity) * (1 if first.side.value == "buy" else -1)
    multiplier = abs(float(first.gross_pnl) / move) if move else 1.0
    return float(first.quantity), multiplier or 1.0


def drawdown(values: Sequence[float]) -> list[float]:
    peak, out = float("-inf"), []
    for value in values:
        peak = max(peak, value)
        out.append(value - peak)
    return out


def plot(report: ReplayReport, bars: Sequence[Bar], path: Path, calendar: str = "nyse") -> None:
    """Write the three-panel chart of `report` over `bars` to `path` (.png or .svg)."""
    if path.suffix.lower() not in FORMATS:
        raise PlotError(f"--plot {path}: use a .png or .svg file name")
    if not bars:
        raise PlotError("--plot: no bars to draw")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    tz = ZoneInfo(CALENDAR_TZ.get(calendar, "UTC"))
    fig = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    price_ax, equity_ax, dd_ax = fig.subplots(3, 1, sharex=True, gridspec_kw={
        "height_ratios": [3, 2, 1], "hspace": 0.08, "left": 0.09, "right": 0.98, "top": 0.93, "bottom": 0.07})
    xs = list(range(len(bars)))
    closes = [float(b.close) for b in bars]
    _price(price_ax, report, bars, xs, closes)
    start = float(report.starting_equity)
    curve = [(bar_index(bars, at), float(value)) for at, value in report.equity_curve] or [(0, start)]
    equity_x, equity = [x for x, _ in curve], [v for _, v in curve]
    quantity, multiplier = held_quantity(report)
    hold = [start + quantity * multiplier * (c - closes[0]) for c in closes]
    equity_ax.plot(equity_x, equity, color="#0969da", linewidth=1.4, label="strategy")
    equity_ax.plot(xs, hold, color="#8c959f", linewidth=1.0, linestyle="--", label=f"buy and hold {quantity:g}")
    equity_ax.axhline(start, color="#d0d7de", linewidth=0.8)
    equity_ax.set_ylabel("equity")
    equity_ax.legend(loc="upper left", fontsize=9, frameon=False)
    dd = drawdown(equity)
    dd_ax.fill_between(equity_x, dd, 0, color="#cf222e", alpha=0.35, step="post")
    dd_ax.plot(equity_x, dd, color="#cf222e", linewidth=0.8, drawstyle="steps-post")
    dd_ax.set_ylabel("drawdown")
    money = FuncFormatter(dollars)
    for ax in (price_ax, equity_ax, dd_ax):
        ax.grid(True, color="#eaeef2", linewidth=0.6)
        ax.yaxis.set_major_formatter(money)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    positions, labels = tick_positions(bars, tz)
    dd_ax.set_xticks(positions, labels, fontsize=9)
    dd_ax.set_xlim(-0.5, len(bars) - 0.5)
    # the summary's figure (the price's return over the bars), so the chart and the text agree
    hold_return = report.stats.buy_and_hold_return_pct if report.stats else None
    if hold_return is None:
        hold_return = (closes[-1] - closes[0]) / closes[0] * 100 if closes[0] else 0.0
    title = (f"{report.strategy} {report.symbol} {report.timeframe}: net {dollars(float(report.net_pnl))} "
             f"({float(report.net_pnl) / start * 100:+.1f}%), buy and hold {hold_return:+.1f}%, "
             f"max drawdown {dollars(float(report.max_drawdown))}, {len(report.trades)} trades")
    fig.suptitle(title.replace("$", r"\$"), fontsize=12, x=0.09, ha="left")
    fig.savefig(path, format=path.suffix.lower()[1:], dpi=DPI)


def _price(ax: Any, report: ReplayReport, bars: Sequence[Bar], xs: list[int], closes: list[float]) -> None:
    if len(bars) <= 300:  # candles while they are readable, a close line beyond
        for x, bar in zip(xs, bars, strict=True):
            up = bar.close >= bar.open
            colour = "#1a7f37" if up else "#cf222e"
            ax.vlines(x, float(bar.low), float(bar.high), color=colour, linewidth=0.7)
            ax.bar(x, float(abs(bar.close - bar.open)) or 1e-9, bottom=float(min(bar.open, bar.close)), width=0.7,
                   color=colour, edgecolor=colour)
    else:
        ax.plot(xs, closes, color="#24292f", linewidth=0.9)
    entries = {"buy": ([], []), "sell": ([], [])}  # type: dict[str, tuple[list[int], list[float]]]
    exits: tuple[list[int], list[float]] = ([], [])
    for trade in report.trades:
        side = entries[trade.side.value]
        side[0].append(bar_index(bars, trade.entry_time))
        side[1].append(float(trade.entry_price))
        exits[0].append(bar_index(bars, trade.exit_time))
        exits[1].append(float(trade.exit_price))
    ax.scatter(*entries["buy"], marker="^", s=60, color="#1a7f37", edgecolor="white", zorder=3, label="long entry")
    ax.scatter(*entries["sell"], marker="v", s=60, color="#cf222e", edgecolor="white", zorder=3,
               label="short entry")
    ax.scatter(*exits, marker="x", s=45, color="#24292f", zorder=3, label="exit")
    ax.set_ylabel(f"{report.symbol} price")
    ax.legend(loc="upper left", fontsize=9, frameon=False)
