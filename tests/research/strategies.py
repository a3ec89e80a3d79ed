"""Strategies planted by the research tests: hold a long position, and one that can only be fitted in hindsight."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from strategies.base import Bar, Position, Signal, Strategy, target


class HoldLong(Strategy):
    """Long `quantity` from the first bar on: P&L grows with the size, and so does the worst day."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        quantity: Decimal = Field(Decimal(1), gt=0)

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        return [] if position.quantity == self.params.quantity else [target(self.params.quantity)]


class Hindsight(Strategy):
    """Long 100 in one calendar week (`week`, counted from Monday 2023-01-02), flat otherwise: a parameter
    that can only be chosen well by knowing the bars it is judged on. Every bar it is shown is written down
    (instance, first bar of its history, the bar) in `seen`."""

    seen: ClassVar[list[tuple[int, datetime, datetime]]] = []
    _serial: ClassVar[itertools.count[int]] = itertools.count()

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        week: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serial = next(Hindsight._serial)

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        Hindsight.seen.append((self.serial, history[0].start, bar.start))
        wanted = Decimal(100) if week_of(bar) == self.params.week else Decimal(0)
        return [] if position.quantity == wanted else [target(wanted)]


def week_of(bar: Bar) -> int:
    return (bar.start.date() - date(2023, 1, 2)).days // 7
