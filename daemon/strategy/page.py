"""A replay as one standalone, interactive HTML page: summary, zoomable price/equity/drawdown chart, trades.

The page is a single file with nothing to fetch: the bars, the equity curve and the trades are embedded as
JSON, and a small script shipped in this package (`static/replay.js`, inlined) draws them as SVG. Its
Content-Security-Policy forbids every network request, so it opens the same on a laptop without a
connection. Like `--plot`, the time axis counts bars (nights, weekends and holidays take no room) and the
labels are the exchange's local times; hovering reads out a bar, dragging or the wheel zooms, a double
click or "all bars" resets, and a trade's row zooms to it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jinja2
from markupsafe import Markup

from daemon.strategy.bars import CalendarName, calendar_zone
from daemon.strategy.plot import bar_index, drawdown, held_quantity
from daemon.strategy.replay import ReplayReport
from strategies.base import Bar


class PageError(ValueError):
    """The page cannot be written (not an .html file name, no bars)."""


def page_data(report: ReplayReport, bars: Sequence[Bar], calendar: CalendarName) -> dict[str, object]:
    """What the page's script draws: per bar its label, OHLC, equity, buy-and-hold and drawdown; the trades."""
    zone = calendar_zone(calendar)
    daily = report.timeframe == "1d"

    def label(i: int) -> str:
        bar = bars[i]
        return f"{bar.end.astimezone(zone):%Y-%m-%d}" if daily else f"{bar.start.astimezone(zone):%Y-%m-%d %H:%M}"

    start = float(report.starting_equity)
    equity = [float(v) for _, v in report.equity_curve[:len(bars)]]  # one point per bar, at its close
    equity += [equity[-1] if equity else start] * (len(bars) - len(equity))
    quantity, multiplier = held_quantity(report)
    first = float(bars[0].close)
    trades = []
    for t in report.trades:
        entry = t.entry_bar if t.entry_bar is not None else bar_index(bars, t.entry_time)
        exit_ = t.exit_bar if t.exit_bar is not None else bar_index(bars, t.exit_time)
        trades.append({"side": t.side.value, "qty": f"{t.quantity.normalize():f}", "entry": entry, "exit": exit_,
                       "entry_price": float(t.entry_price), "exit_price": float(t.exit_price),
                       "net": float(t.net_pnl), "ret": t.return_pct})
    return {
        "symbol": report.symbol, "zone": zone.key, "daily": daily,
        "labels": [label(i) for i in range(len(bars))],
        "ohlc": [[float(b.open), float(b.high), float(b.low), float(b.close)] for b in bars],
        "equity": equity, "drawdown": drawdown(equity), "hold_quantity": quantity,
        "hold": [start + quantity * multiplier * (float(b.close) - first) for b in bars],
        "start": start, "trades": trades,
    }


def render_page(report: ReplayReport, bars: Sequence[Bar], calendar: CalendarName, summary: str) -> str:
    """The page's HTML; `summary` is the text report shown above the chart."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("daemon.strategy", "templates"), autoescape=True)
    script = jinja2.PackageLoader("daemon.strategy", "static").get_source(env, "replay.js")[0]
    data = json.dumps(page_data(report, bars, calendar), separators=(",", ":"), allow_nan=False)
    # JSON inside <script>: "</" would end the element early, so it is escaped the way JSON allows
    return env.get_template("replay.html").render(
        title=f"{report.strategy} on {report.symbol} {report.timeframe}", summary=summary,
        data=Markup(data.replace("</", "<\\/")), script=Markup(script))


def write_page(report: ReplayReport, bars: Sequence[Bar], path: Path, calendar: CalendarName, summary: str) -> None:
    if path.suffix.lower() not in (".html", ".htm"):
        raise PageError(f"--html {path}: use a .html file name")
    if not bars:
        raise PageError("--html: no bars to draw")
    path.write_text(render_page(report, bars, calendar, summary), encoding="utf-8")
