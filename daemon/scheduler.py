"""APScheduler helpers for the daemon's one scheduler: reconciliation, risk marks, session rolls, flat-by,
strategies at bar close, the daily summary.

`every` adds an interval job, `daily_at` a wall-clock job in an exchange time zone (e.g. the futures
session roll at 17:00 America/Chicago).
Jobs never overlap themselves (`max_instances=1`) and missed runs are coalesced, so a VPS waking from a
pause does not replay a burst.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import time

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("traderd.scheduler")


def build_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
                            timezone="UTC")


def _guarded(job: Callable[[], Awaitable[None]], name: str) -> Callable[[], Awaitable[None]]:
    async def guarded() -> None:
        try:
            await job()
        except Exception:
            log.exception("scheduled job %s failed", name)

    return guarded


def every(scheduler: AsyncIOScheduler, seconds: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    scheduler.add_job(_guarded(job, name), "interval", seconds=seconds, id=name, name=name)


def daily_at(scheduler: AsyncIOScheduler, at: time, timezone: str, job: Callable[[], Awaitable[None]],
             name: str, days: str = "mon-fri") -> None:
    """Run `job` at the wall-clock time `at` in `timezone` on `days` (cron syntax, e.g. "mon-fri")."""
    scheduler.add_job(_guarded(job, name), "cron", day_of_week=days, hour=at.hour, minute=at.minute,
                      second=at.second, timezone=timezone, id=name, name=name)
