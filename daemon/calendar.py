"""Trading calendars: NYSE business days, regular and early-close sessions, and CME futures session dates.

Stocks follow the NYSE calendar: full-day closures come from `holidays.financial_holidays("NYSE")` (which
also knows observed dates such as Friday 2026-07-03 for Independence Day, Good Friday and one-off closures
such as the 2025-01-09 national day of mourning), and early closes from the same package's `half_day`
category: 1:00 pm ET on the day before Independence Day when that is a Monday-Thursday, the day after
Thanksgiving, and Christmas Eve when that is a Monday-Thursday (NYSE Rule 7.2 and the exchange's yearly
holiday announcements, e.g. https://www.nyse.com/markets/hours-calendars).

Futures follow the CME Globex week: a trading day opens at 5:00 pm America/Chicago on the previous
calendar day and the week runs from Sunday 5:00 pm CT to Friday 4:00 pm CT. A timestamp at 17:00 CT or later
belongs to the next trading day; Friday evening and Saturday belong to Monday's session. CME holidays (no
session close) and early halts (12:00 CT, "markets pause at 12:00pm CT") come from
`holidays.financial_holidays("CME")` and its `half_day` category.

Crypto markets trade around the clock every day (`24x7`): no holidays, no sessions, and a trading day is
the calendar day in a chosen zone (UTC unless configured), rolling at its midnight. `session_date`,
`session_end` and `next_session_open` answer for either calendar, so the daily rules (funded accounts'
daily loss, the session roll) run on the account's own one.

Everything here is pure: no I/O, no clock reads. Datetimes in and out are timezone-aware.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")

NYSE_OPEN = time(9, 30)
NYSE_CLOSE = time(16, 0)
NYSE_EARLY_CLOSE = time(13, 0)

SessionCalendar = Literal["cme", "24x7"]  # the trading days of futures (CME Globex) or crypto (every day)
DAY_ROLL = time(0, 0)  # a 24x7 trading day starts at midnight in its zone

CME_ROLL = time(17, 0)  # a new futures trading day starts at 5:00 pm CT
CME_FRIDAY_CLOSE = time(16, 0)  # the week ends Friday 4:00 pm CT
CME_CLOSE = time(16, 0)  # the trading day's close, before the 16:00-17:00 CT break
CME_EARLY_HALT = time(12, 0)  # early halt on the days around US holidays
FUTURES_SUMMARY_DELAY = timedelta(minutes=5)  # the daily summary goes out this long after the close

_CLOSE_AT = re.compile(r"close at (\d{1,2}):(\d{2})\s*pm", re.IGNORECASE)


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware: {ts!r}")


@lru_cache(maxsize=64)
def _closed_days(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("NYSE", years=year).keys())


@lru_cache(maxsize=64)
def _early_closes(year: int) -> dict[date, time]:
    half = holidays.financial_holidays("NYSE", years=year, categories=("half_day",))
    out: dict[date, time] = {}
    for day, name in half.items():
        match = _CLOSE_AT.search(name)
        out[day] = time(int(match.group(1)) + 12, int(match.group(2))) if match else NYSE_EARLY_CLOSE
    return out


def is_holiday(d: date) -> bool:
    """True when the NYSE is closed all day on a weekday (holiday or special closure)."""
    return d in _closed_days(d.year)


def holiday_name(d: date) -> str | None:
    """The NYSE's name for the closure on `d`, if any."""
    name = holidays.financial_holidays("NYSE", years=d.year).get(d)
    return str(name) if name else None


def is_business_day(d: date) -> bool:
    """A weekday on which the NYSE is open (regular or early close)."""
    return d.weekday() < 5 and not is_holiday(d)


def next_business_day(d: date) -> date:
    """The first business day strictly after `d`."""
    d += timedelta(days=1)
    while not is_business_day(d):
        d += timedelta(days=1)
    return d


def previous_business_day(d: date) -> date:
    """The last business day strictly before `d`."""
    d -= timedelta(days=1)
    while not is_business_day(d):
        d -= timedelta(days=1)
    return d


def previous_business_days(d: date, n: int) -> list[date]:
    """The `n` business days ending at `d` (included when `d` is a business day), oldest first.

    This is the rolling window of the PDT rule: `previous_business_days(today, 5)`.
    """
    if n <= 0:
        return []
    days: list[date] = []
    cursor = d if is_business_day(d) else previous_business_day(d)
    while len(days) < n:
        days.append(cursor)
        cursor = previous_business_day(cursor)
    days.reverse()
    return days


def add_business_days(d: date, n: int) -> date:
    """`d` plus `n` business days (T+n settlement: `add_business_days(trade_date, 1)`)."""
    for _ in range(n):
        d = next_business_day(d)
    return d


def business_days_between(start: date, end: date) -> int:
    """Number of business days in (start, end]; negative when end < start."""
    if end < start:
        return -business_days_between(end, start)
    count = 0
    cursor = start
    while cursor < end:
        cursor += timedelta(days=1)
        if is_business_day(cursor):
            count += 1
    return count


def early_close(d: date) -> time | None:
    """The early closing time (ET) on `d`, or None on a regular day."""
    return _early_closes(d.year).get(d)


def session_open(d: date) -> datetime:
    """Regular-session open (9:30 am ET) of business day `d`."""
    if not is_business_day(d):
        raise ValueError(f"{d.isoformat()} is not an NYSE business day")
    return datetime.combine(d, NYSE_OPEN, tzinfo=NEW_YORK)


def session_close(d: date) -> datetime:
    """Regular-session close of business day `d`: 4:00 pm ET, or 1:00 pm ET on an early-close day."""
    if not is_business_day(d):
        raise ValueError(f"{d.isoformat()} is not an NYSE business day")
    return datetime.combine(d, early_close(d) or NYSE_CLOSE, tzinfo=NEW_YORK)


def is_market_open(ts: datetime) -> bool:
    """True during the NYSE regular session (open inclusive, close exclusive)."""
    _require_aware(ts)
    d = ts.astimezone(NEW_YORK).date()
    return is_business_day(d) and session_open(d) <= ts < session_close(d)


def trade_date(ts: datetime) -> date:
    """The NYSE calendar date (ET) of a stock execution, extended hours included."""
    _require_aware(ts)
    return ts.astimezone(NEW_YORK).date()


# --- CME futures ------------------------------------------------------------------------------------


def futures_session_date(ts: datetime) -> date:
    """The futures trading day `ts` belongs to.

    At or after 17:00 CT a timestamp belongs to the next day's session; Friday evening, Saturday and
    Sunday before the 17:00 CT open belong to Monday's session. Exchange holidays are not skipped (CME
    holiday schedules differ per product); a holiday session simply has no activity.
    """
    _require_aware(ts)
    local = ts.astimezone(CHICAGO)
    d = local.date()
    if local.time() >= CME_ROLL:
        d += timedelta(days=1)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d


def futures_session_start(session: date) -> datetime:
    """When the futures trading day `session` opens: 17:00 CT on the previous weekday evening (Sunday for Monday)."""
    prev = session - timedelta(days=1)
    while prev.weekday() in (4, 5):  # Friday and Saturday evenings have no open
        prev -= timedelta(days=1)
    return datetime.combine(prev, CME_ROLL, tzinfo=CHICAGO)


def futures_session_end(session: date) -> datetime:
    """When the futures trading day `session` rolls over: 17:00 CT that day (16:00 CT on Friday)."""
    end = CME_FRIDAY_CLOSE if session.weekday() == 4 else CME_ROLL
    return datetime.combine(session, end, tzinfo=CHICAGO)


def next_session_start(ts: datetime) -> datetime:
    """The first futures session open (17:00 CT, Sunday-Thursday) strictly after `ts`."""
    _require_aware(ts)
    local = ts.astimezone(CHICAGO)
    candidate = datetime.combine(local.date(), CME_ROLL, tzinfo=CHICAGO)
    if candidate <= local:
        candidate += timedelta(days=1)
    while candidate.weekday() in (4, 5):
        candidate += timedelta(days=1)
    return candidate


def is_futures_open(ts: datetime) -> bool:
    """True inside the Globex week (Sun 17:00 CT to Fri 16:00 CT), outside the daily 16:00-17:00 CT break."""
    _require_aware(ts)
    local = ts.astimezone(CHICAGO)
    wd, t = local.weekday(), local.time()
    if wd == 5 or (wd == 6 and t < CME_ROLL) or (wd == 4 and t >= CME_FRIDAY_CLOSE):
        return False
    return not (CME_FRIDAY_CLOSE <= t < CME_ROLL)


@lru_cache(maxsize=64)
def _cme_closed(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("CME", years=year).keys())


@lru_cache(maxsize=64)
def _cme_early(year: int) -> frozenset[date]:
    return frozenset(holidays.financial_holidays("CME", years=year, categories=("half_day",)).keys())


def is_cme_holiday(d: date) -> bool:
    """True when CME Globex has no trading day `d` (New Year, Good Friday, Independence Day, Thanksgiving, ...)."""
    return d in _cme_closed(d.year)


def futures_session_close(session: date) -> datetime | None:
    """When the futures trading day `session` closes: 16:00 CT, 12:00 CT on an early-halt day; None when
    there is no such trading day (a weekend or a CME holiday)."""
    if session.weekday() >= 5 or is_cme_holiday(session):
        return None
    at = CME_EARLY_HALT if session in _cme_early(session.year) else CME_CLOSE
    return datetime.combine(session, at, tzinfo=CHICAGO)


def futures_summary_due(now: datetime, window: timedelta = timedelta(hours=1)) -> date | None:
    """The futures trading day whose daily summary is due at `now` (within `window` after its close plus
    `FUTURES_SUMMARY_DELAY`), or None."""
    _require_aware(now)
    session = futures_session_date(now)
    close = futures_session_close(session)
    if close is None:
        return None
    due = close + FUTURES_SUMMARY_DELAY
    return session if due <= now < due + window else None


# --- 24x7 markets and the calendar-neutral session helpers ------------------------------------------


def day_24x7(ts: datetime, zone: str = "UTC") -> date:
    """The 24x7 trading day of `ts`: its calendar date in `zone`."""
    _require_aware(ts)
    return ts.astimezone(ZoneInfo(zone)).date()


def session_date(ts: datetime, calendar: SessionCalendar = "cme", zone: str = "UTC") -> date:
    """The trading day `ts` belongs to on `calendar` (`zone` is the 24x7 day's zone)."""
    return day_24x7(ts, zone) if calendar == "24x7" else futures_session_date(ts)


def session_end(session: date, calendar: SessionCalendar = "cme", zone: str = "UTC") -> datetime:
    """When trading day `session` rolls over: 24x7 at the next midnight in `zone`; CME as `futures_session_end`."""
    if calendar == "24x7":
        return datetime.combine(session + timedelta(days=1), DAY_ROLL, tzinfo=ZoneInfo(zone))
    return futures_session_end(session)


def next_session_open(ts: datetime, calendar: SessionCalendar = "cme", zone: str = "UTC") -> datetime:
    """The first trading-day start strictly after `ts` (24x7: the next midnight in `zone`)."""
    if calendar == "24x7":
        return session_end(day_24x7(ts, zone), "24x7", zone)
    return next_session_start(ts)


def following_session(session: date, calendar: SessionCalendar = "cme") -> date:
    """The trading day after `session`: the next day (24x7), or the next weekday (CME)."""
    following = session + timedelta(days=1)
    while calendar == "cme" and following.weekday() >= 5:
        following += timedelta(days=1)
    return following
