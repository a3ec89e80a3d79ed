"""An equity curve as a small inline SVG for the status page: a path, its baseline, fill marks and labels.

No JavaScript and no chart library: the server writes the SVG, so the page works offline and paints at
once. Colours come from CSS classes, so the page's dark and light themes apply to the chart too.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from daemon.charts.series import EquityCurve
from daemon.money import money

W, H, PAD_L, PAD_R, PAD_Y = 600, 160, 64, 8, 14


def _money(value: float) -> str:
    return money(Decimal(str(float(value))), places=0, symbol="$")


def render(curve: EquityCurve, timezone: str) -> str:
    """The `<svg>` element (a string) of `curve`; a short note instead when nothing was recorded yet."""
    if len(curve.points) < 2:
        return (f'<svg class="chart" viewBox="0 0 {W} {H // 3}" role="img" aria-label="no equity history">'
                f'<text x="{W // 2}" y="{H // 6}" class="axis" text-anchor="middle">'
                'no equity history yet today</text></svg>')
    tz = ZoneInfo(timezone)
    t0, t1 = curve.points[0][0], curve.points[-1][0]
    values = [float(v) for _, v in curve.points]
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    span = max((t1 - t0).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * (at - t0).total_seconds() / span

    def y(value: float) -> float:
        return PAD_Y + (H - 2 * PAD_Y) * (high - value) / (high - low)

    steps = [f"M{x(t0):.1f},{y(values[0]):.1f}"]
    for (at, _), value, previous in zip(curve.points[1:], values[1:], values, strict=False):
        steps.append(f"H{x(at):.1f}V{y(value):.1f}" if value != previous else f"H{x(at):.1f}")
    trend = "up" if curve.change >= 0 else "down"
    parts = [
        f'<svg class="chart {trend}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="equity of {escape(curve.account)} today">',
        f'<line class="base" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(values[0]):.1f}" y2="{y(values[0]):.1f}"/>',
        f'<path class="line" d="{"".join(steps)}"/>',
        f'<text class="axis" x="{PAD_L - 6}" y="{PAD_Y + 4}" text-anchor="end">{_money(high)}</text>',
        f'<text class="axis" x="{PAD_L - 6}" y="{H - PAD_Y + 4}" text-anchor="end">{_money(low)}</text>',
        f'<text class="axis" x="{PAD_L}" y="{H - 1}">{t0.astimezone(tz):%H:%M}</text>',
        f'<text class="axis" x="{W - PAD_R}" y="{H - 1}" text-anchor="end">{t1.astimezone(tz):%H:%M}</text>',
    ]
    for mark in curve.marks:
        cx, cy = x(mark.at), y(float(mark.equity))
        tip = escape(mark.label or mark.side)
        parts.append(f'<circle class="mark {escape(mark.side)}" cx="{cx:.1f}" cy="{cy:.1f}" r="4">'
                     f"<title>{tip}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)
