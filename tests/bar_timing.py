"""When a test may build a bar series and start a live strategy on it: both within one 5-minute bar.

The strategy runner acts on the latest closed bar when it starts, so a test that writes a series ending
at the last close must not have another bar close before the daemon runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from daemon.strategy.bars import last_bar_close


def _always(now: datetime) -> bool:
    return True


async def clear_of_a_bar_close(calendar: str, trading: Callable[[datetime], bool] = _always) -> datetime:
    """Now, or (when `trading` now and the next 5-minute close of `calendar` is under 30 s away) just after
    that close."""
    now = datetime.now(UTC)
    if trading(now) and last_bar_close(calendar, "5m", now) + timedelta(minutes=5) - now < timedelta(seconds=30):
        # building the series and running must happen within one 5-minute bar: wait for the next one
        await asyncio.sleep((last_bar_close(calendar, "5m", now) + timedelta(minutes=5, seconds=1) - now)
                            .total_seconds())
        now = datetime.now(UTC)
    return now
