"""Seeded synthetic bar series for the research tests, written as CSV files the CLI can read."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from daemon import calendar as cal


def daily_walk(path: Path, seed: int, sessions: int, start: date = date(2023, 1, 3), price: float = 100.0,
               drift: float = 0.0, vol: float = 0.015) -> Path:
    """A geometric random walk over NYSE sessions: date,open,high,low,close,volume (cents)."""
    rng = random.Random(seed)
    rows, day = [], start
    while len(rows) < sessions:
        if cal.is_business_day(day):
            o = price * (1 + rng.gauss(0, vol / 3))
            c = o * (1 + rng.gauss(drift, vol))
            h, lo = max(o, c) * (1 + abs(rng.gauss(0, vol / 2))), min(o, c) * (1 - abs(rng.gauss(0, vol / 2)))
            rows.append(f"{day.isoformat()},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{rng.randint(1000, 9000)}")
            price = c
        day += timedelta(days=1)
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def money(x: float | int | str) -> Decimal:
    return Decimal(str(x))
