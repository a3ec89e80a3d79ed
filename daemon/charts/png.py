"""Equity curves as a PNG for chat: one panel per account, fills marked, dollars and local times on the axes.

Drawn with matplotlib's Agg canvas on a private `Figure` (no pyplot state, safe off the event loop's thread).
The image is exactly `size(len(curves))` pixels, so a chat transport (and a test) knows what it gets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from daemon.charts.series import EquityCurve

WIDTH = 900
HEADER = 70
PANEL = 260
MAX_PANELS = 6
DPI = 100
UP, DOWN, LINE = "#1a7f37", "#cf222e", "#0969da"


def size(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a chart with `panels` accounts (at most `MAX_PANELS` are drawn)."""
    return WIDTH, HEADER + PANEL * max(1, min(panels, MAX_PANELS))


def dollars(value: float, _pos: object = None) -> str:
    """$101,250 style: whole dollars with thousands separators, never an offset or exponent."""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.0f}"


def signed_money(value: Decimal) -> str:
    sign = "+" if value > 0 else "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def plain(text: str) -> str:
    """`text` with its dollar signs escaped, so matplotlib does not read a pair of them as math."""
    return text.replace("$", r"\$")


def render(curves: Sequence[EquityCurve], *, title: str, timezone: str) -> bytes:
    """The PNG bytes of `curves` (one panel each, first `MAX_PANELS`), titled `title`, times in `timezone`."""
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    shown = list(curves)[:MAX_PANELS]
    width, height = size(len(shown))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    fig.suptitle(plain(title), fontsize=14, fontweight="bold", x=0.02, ha="left", y=1 - 18 / height)
    tz = ZoneInfo(timezone)
    top = 1 - HEADER / height
    axes = fig.subplots(max(1, len(shown)), 1, squeeze=False,
                        gridspec_kw={"top": top, "bottom": 40 / height, "left": 0.12, "right": 0.97,
                                     "hspace": 0.45})
    for ax, curve in zip(axes[:, 0], shown or [EquityCurve("no accounts", [])], strict=False):
        _panel(ax, curve, tz, mdates, FuncFormatter(dollars))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _panel(ax: Any, curve: EquityCurve, tz: ZoneInfo, mdates: Any, money_axis: Any) -> None:
    ax.set_facecolor("#fbfbfc")
    ax.grid(True, color="#d8dee4", linewidth=0.6)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    ax.yaxis.set_major_formatter(money_axis)
    if not curve.points:
        ax.set_title(plain(f"{curve.account}: no equity recorded yet"), loc="left", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    times = [t.astimezone(tz) for t, _ in curve.points]
    values = [float(v) for _, v in curve.points]
    colour = UP if curve.change >= 0 else DOWN
    ax.plot(times, values, color=LINE, linewidth=1.8, drawstyle="steps-post" if len(times) > 1 else "default")
    ax.fill_between(times, values, min(values), color=LINE, alpha=0.08, step="post")
    ax.axhline(values[0], color="#8c959f", linewidth=0.8, linestyle="--")
    for side, marker, tint in (("buy", "^", UP), ("sell", "v", DOWN)):
        marks = [m for m in curve.marks if m.side == side]
        if marks:
            ax.scatter([m.at.astimezone(tz) for m in marks], [float(m.equity) for m in marks], marker=marker,
                       s=70, color=tint, edgecolor="white", linewidth=0.8, zorder=3, label=f"{side} fill")
    if curve.marks:
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    title = f"{curve.account}  {dollars(values[-1])}  ({signed_money(curve.change)})"
    ax.set_title(plain(title), loc="left", fontsize=11, color=colour)
    span = times[-1] - times[0]
    if span <= timedelta(days=1):
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    else:
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b", tz=tz))
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, abs(high) * 0.0005, 1.0)
    ax.set_ylim(low - pad, high + pad)
