"""The data a chart draws: an account's equity over time and the fills to mark on it (plain values, no I/O)."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Mark:
    """A fill drawn on the curve: when, which side, and the equity the curve had then."""

    at: datetime
    side: str  # "buy" | "sell"
    equity: Decimal
    label: str = ""


@dataclass(frozen=True, slots=True)
class EquityCurve:
    account: str
    points: list[tuple[datetime, Decimal]]  # oldest first, timezone-aware
    marks: list[Mark] = field(default_factory=list)

    @property
    def change(self) -> Decimal:
        """Last equity minus first; zero for fewer than two points."""
        return self.points[-1][1] - self.points[0][1] if len(self.points) > 1 else Decimal(0)


def equity_at(points: list[tuple[datetime, Decimal]], at: datetime) -> Decimal:
    """The curve's value at `at`, linearly interpolated between its points (held flat outside them)."""
    if not points:
        return Decimal(0)
    times = [t for t, _ in points]
    i = bisect_right(times, at)
    if i == 0:
        return points[0][1]
    if i == len(points):
        return points[-1][1]
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    span = (t1 - t0).total_seconds()
    if span <= 0:
        return v1
    share = Decimal(str((at - t0).total_seconds() / span))
    return v0 + (v1 - v0) * share
