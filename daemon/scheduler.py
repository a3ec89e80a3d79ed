"""APScheduler jobs of the running daemon: periodic reconciliation and reconnecting lost brokers.

Strategies, session roll, flat-by and summaries join this scheduler as they are built. Jobs never overlap
themselves (`max_instances=1`) and missed runs are coalesced, so a VPS waking from a pause does not replay
a burst.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("traderd.scheduler")


def build_scheduler() -> AsyncIOScheduler:
    return AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
                            timezone="UTC")


def every(scheduler: AsyncIOScheduler, seconds: float, job: Callable[[], Awaitable[None]], name: str) -> None:
    async def guarded() -> None:
        try:
            await job()
        except Exception:
            log.exception("scheduled job %s failed", name)

    scheduler.add_job(guarded, "interval", seconds=seconds, id=name, name=name)
