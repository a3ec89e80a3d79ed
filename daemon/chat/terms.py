"""Chat runs only where the singleton lease is held: up for a term, down when the lease goes (a fresh runtime
for the next term, since a stopped runtime does not restart)."""

from __future__ import annotations

from collections.abc import Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from daemon.chat.runtime import ChatRuntime
from daemon.chat.summary import DAILY_JOB


class ChatTerms:
    def __init__(self, first: ChatRuntime, build: Callable[[], ChatRuntime], scheduler: AsyncIOScheduler,
                 stopping: Callable[[], bool]) -> None:
        self.runtime = first
        self._build, self._scheduler, self._stopping = build, scheduler, stopping
        self.running = False

    async def up(self) -> None:
        if self.running or self._stopping():
            return
        self.running = True
        self.runtime.schedule(self._scheduler)  # the daily summaries
        await self.runtime.start()  # never raises: a chat outage must not keep the daemon down

    async def down(self) -> None:
        """Stop polling and delivering (bounded by alerts.drain_seconds; undelivered alerts stay queued)."""
        if not self.running:
            return
        self.running = False
        for job in self._scheduler.get_jobs():  # the daily summaries (stocks, futures) go with the lease
            if job.id.startswith(DAILY_JOB):
                self._scheduler.remove_job(job.id)
        await self.runtime.stop()
        if not self._stopping():
            self.runtime = self._build()
