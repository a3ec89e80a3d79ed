"""What the executor asks of an entry's extra shapes: ATR exits measured from bars, time exits armed.

A protocol only, so the executor needs neither bars nor calendars: `daemon.strategy.exit_shapes` implements
it with the account's bar source and the exchange's sessions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from daemon.domain import Intent, OrderRequest
from daemon.planner import Instrument
from daemon.shapes import AtrOffset


class EntryShapes(Protocol):
    async def measure(self, intent: Intent, instrument: Instrument, now: datetime) -> Intent:
        """`intent` with its ATR exits as distances in points; `daemon.planner.PlanError` (with the reason)
        when there are no bars to measure them from."""
        ...

    def arm(self, intent: Intent, entry: OrderRequest, now: datetime) -> None:
        """Durably arm the intent's time exit for the position `entry` opens (before it is sent)."""
        ...


def needs_shapes(intent: Intent) -> bool:
    return intent.time_exit is not None or any(isinstance(x, AtrOffset) for x in (intent.take_profit,
                                                                                  intent.stop_loss))
