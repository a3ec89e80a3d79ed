"""Strategies planted by the research tests: hold a long position, and a memorizer that can only overfit."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from datetime import datetime
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


class Memorizer(Strategy):
    """Long or short on each bar by a coin flip keyed by `key` and the bar's date: no edge at all, so the
    only way to look good is to have the key chosen on the very bars it is judged on. Every bar it is shown
    is written down (instance, first bar of its history, the bar) in `seen`."""

    seen: ClassVar[list[tuple[int, datetime, datetime]]] = []
    _serial: ClassVar[itertools.count[int]] = itertools.count()

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        key: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.serial = next(Memorizer._serial)

    def on_bar(self, bar: Bar, history: Sequence[Bar], position: Position) -> list[Signal]:
        Memorizer.seen.append((self.serial, history[0].start, bar.start))
        digest = hashlib.sha256(f"{self.params.key}:{bar.start.date()}".encode()).digest()
        return [target(1 if digest[0] % 2 else -1)]
