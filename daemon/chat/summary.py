"""The daily summary: when it goes out (stocks at a set time, futures after the CME close) and what it says."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import date, datetime, time

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from daemon.calendar import CME_CLOSE, CME_EARLY_HALT, FUTURES_SUMMARY_DELAY, futures_summary_due
from daemon.chat.alerts import daily_summary
from daemon.chat.outbox import Outbox
from daemon.domain import Period
from daemon.queries import Reader
from daemon.scheduler import daily_at

log = logging.getLogger("traderd.chat")
DAILY_JOB = "daily-summary"

Chart = Callable[[str | None, Period], Awaitable[bytes]]


class DailySummary:
    """Each trading day's P&L and positions, with an equity picture when one can be drawn, through the outbox."""

    def __init__(self, *, reader: Reader, chart: Chart, outbox: Outbox, at: time | None, timezone: str,
                 clock: Callable[[], datetime]) -> None:
        self.reader, self.chart, self.outbox = reader, chart, outbox
        self.at, self.timezone, self.clock = at, timezone, clock

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Stock accounts Mon-Fri at `alerts.daily_summary_at` (daemon time zone), futures accounts after their
        CME close (checked 5 min after the 12:00 CT early halt and the 16:00 CT close; nothing on a CME
        holiday)."""
        if self.at is None:
            return
        futures = self.reader.futures & set(self.reader.accounts_named(None))
        if not futures:
            daily_at(scheduler, self.at, self.timezone, self.send, DAILY_JOB)
            return
        stocks = set(self.reader.accounts_named(None)) - futures
        if stocks:
            daily_at(scheduler, self.at, self.timezone, lambda: self.send(accounts=stocks), DAILY_JOB)
        for close, suffix in ((CME_EARLY_HALT, "-futures-early"), (CME_CLOSE, "-futures")):
            check = (datetime.combine(date.min, close) + FUTURES_SUMMARY_DELAY).time()
            daily_at(scheduler, check, "America/Chicago", self.send_futures, DAILY_JOB + suffix)

    async def send_futures(self) -> None:
        """The futures accounts' summary, when their trading day has just closed (else nothing)."""
        session = futures_summary_due(self.clock())
        if session is not None:
            await self.send(accounts=self.reader.futures, label=session.strftime("%a %Y-%m-%d") + " (futures)")

    async def send(self, day: datetime | None = None, *, accounts: Collection[str] | None = None,
                   label: str | None = None) -> None:
        try:
            pnl = await self.reader.pnl("today", only=accounts)
            positions = [view.position for view in await self.reader.positions()
                         if accounts is None or view.position.account in accounts]
        except Exception as exc:
            log.warning("daily summary failed: %s", exc)
            return
        try:  # the picture is a bonus: without it the summary still goes
            picture: bytes | None = await self.chart(None, "today")
        except Exception:
            log.exception("the daily summary's chart could not be drawn; sending the text alone")
            picture = None
        when = label or (day or self.clock()).strftime("%a %Y-%m-%d")
        self.outbox.add(daily_summary(when, pnl, positions, picture))
