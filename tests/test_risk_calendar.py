"""NYSE business days, early closes and CME futures session dates, checked against published calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from daemon.calendar import (
    CHICAGO,
    NEW_YORK,
    add_business_days,
    early_close,
    futures_session_date,
    futures_session_end,
    futures_session_start,
    is_business_day,
    is_futures_open,
    is_market_open,
    next_session_start,
    previous_business_days,
    session_close,
    session_open,
)

# NYSE holiday calendars: https://www.nyse.com/markets/hours-calendars (2026: Independence Day observed
# Friday July 3; Good Friday April 3; Thanksgiving November 26 with a 1:00 pm close on November 27;
# Christmas Eve Thursday December 24 closes at 1:00 pm). 2025-01-09: closed for the national day of
# mourning for President Carter.
BUSINESS_DAYS = [
    (date(2026, 1, 1), False),  # New Year's Day
    (date(2026, 1, 2), True),
    (date(2026, 1, 19), False),  # Martin Luther King Jr. Day
    (date(2026, 2, 16), False),  # Washington's Birthday
    (date(2026, 4, 3), False),  # Good Friday
    (date(2026, 4, 6), True),  # Easter Monday is a trading day
    (date(2026, 5, 25), False),  # Memorial Day
    (date(2026, 6, 19), False),  # Juneteenth
    (date(2026, 7, 2), True),
    (date(2026, 7, 3), False),  # Independence Day observed (July 4 is a Saturday)
    (date(2026, 7, 4), False),  # Saturday
    (date(2026, 9, 7), False),  # Labor Day
    (date(2026, 11, 26), False),  # Thanksgiving
    (date(2026, 11, 27), True),  # day after Thanksgiving: open, early close
    (date(2026, 12, 24), True),  # Christmas Eve: open, early close
    (date(2026, 12, 25), False),
    (date(2025, 1, 9), False),  # national day of mourning
    (date(2027, 12, 24), False),  # Christmas observed on Friday (Dec 25 2027 is a Saturday)
    (date(2026, 3, 7), False),  # Saturday
]


@pytest.mark.parametrize(("day", "expected"), BUSINESS_DAYS)
def test_business_days(day: date, expected: bool) -> None:
    assert is_business_day(day) is expected


EARLY_CLOSES = [
    (date(2026, 11, 27), time(13, 0)),  # day after Thanksgiving
    (date(2026, 12, 24), time(13, 0)),  # Christmas Eve (Thursday)
    (date(2026, 7, 2), None),  # no early close when July 3 is itself the observed holiday
    (date(2025, 7, 3), time(13, 0)),  # day before Independence Day (Thursday)
    (date(2024, 7, 3), time(13, 0)),
    (date(2024, 12, 24), time(13, 0)),
    (date(2026, 3, 2), None),
]


@pytest.mark.parametrize(("day", "close"), EARLY_CLOSES)
def test_early_closes(day: date, close: time | None) -> None:
    assert early_close(day) == close
    expected = close or time(16, 0)
    assert session_close(day) == datetime.combine(day, expected, tzinfo=NEW_YORK)
    assert session_open(day) == datetime.combine(day, time(9, 30), tzinfo=NEW_YORK)


def test_session_times_are_aware_and_refuse_holidays() -> None:
    close = session_close(date(2026, 11, 27))
    assert close.astimezone(UTC) == datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 1 pm EST
    with pytest.raises(ValueError, match="not an NYSE business day"):
        session_open(date(2026, 7, 3))
    assert is_market_open(datetime(2026, 11, 27, 12, 59, tzinfo=NEW_YORK))
    assert not is_market_open(datetime(2026, 11, 27, 13, 0, tzinfo=NEW_YORK))


def test_previous_business_days_skip_holidays() -> None:
    # The PDT window ending Monday 2026-04-06 skips Good Friday and the weekend.
    expected = [date(2026, 3, 30), date(2026, 3, 31), date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 6)]
    assert previous_business_days(date(2026, 4, 6), 5) == expected
    # Anchored on a holiday: the window ends at the previous business day.
    assert previous_business_days(date(2026, 7, 3), 2) == [date(2026, 7, 1), date(2026, 7, 2)]


def test_settlement_t_plus_one_skips_holidays() -> None:
    assert add_business_days(date(2026, 7, 2), 1) == date(2026, 7, 6)
    assert add_business_days(date(2026, 11, 25), 1) == date(2026, 11, 27)
    assert add_business_days(date(2026, 4, 2), 1) == date(2026, 4, 6)


FUTURES_SESSIONS = [
    # CME Globex: the trading day starts at 17:00 CT the evening before.
    (datetime(2026, 3, 3, 16, 59, tzinfo=CHICAGO), date(2026, 3, 3)),
    (datetime(2026, 3, 3, 17, 0, tzinfo=CHICAGO), date(2026, 3, 4)),
    (datetime(2026, 3, 3, 23, 30, tzinfo=CHICAGO), date(2026, 3, 4)),
    # Friday after the 16:00 close, Saturday and Sunday before 17:00 belong to Monday.
    (datetime(2026, 3, 6, 15, 59, tzinfo=CHICAGO), date(2026, 3, 6)),
    (datetime(2026, 3, 6, 17, 30, tzinfo=CHICAGO), date(2026, 3, 9)),
    (datetime(2026, 3, 7, 12, 0, tzinfo=CHICAGO), date(2026, 3, 9)),
    (datetime(2026, 3, 8, 17, 0, tzinfo=CHICAGO), date(2026, 3, 9)),
    # UTC input: 2026-03-03 23:30 UTC is 17:30 CST.
    (datetime(2026, 3, 3, 23, 30, tzinfo=UTC), date(2026, 3, 4)),
    # Across the DST change (2026-03-08): 22:00 UTC on Monday 03-09 is 17:00 CDT.
    (datetime(2026, 3, 9, 22, 0, tzinfo=UTC), date(2026, 3, 10)),
]


@pytest.mark.parametrize(("ts", "session"), FUTURES_SESSIONS)
def test_futures_session_date(ts: datetime, session: date) -> None:
    assert futures_session_date(ts) == session


def test_next_session_start_and_bounds() -> None:
    assert next_session_start(datetime(2026, 3, 3, 10, 0, tzinfo=CHICAGO)) == datetime(
        2026, 3, 3, 17, 0, tzinfo=CHICAGO
    )
    assert next_session_start(datetime(2026, 3, 3, 17, 0, tzinfo=CHICAGO)) == datetime(
        2026, 3, 4, 17, 0, tzinfo=CHICAGO
    )
    # A Friday breach waits for the Sunday 17:00 CT open.
    assert next_session_start(datetime(2026, 3, 6, 10, 0, tzinfo=CHICAGO)) == datetime(
        2026, 3, 8, 17, 0, tzinfo=CHICAGO
    )
    assert futures_session_start(date(2026, 3, 9)) == datetime(2026, 3, 8, 17, 0, tzinfo=CHICAGO)
    assert futures_session_start(date(2026, 3, 4)) == datetime(2026, 3, 3, 17, 0, tzinfo=CHICAGO)
    assert futures_session_end(date(2026, 3, 6)) == datetime(2026, 3, 6, 16, 0, tzinfo=CHICAGO)
    assert is_futures_open(datetime(2026, 3, 8, 17, 0, tzinfo=CHICAGO))
    assert not is_futures_open(datetime(2026, 3, 4, 16, 30, tzinfo=CHICAGO))
    assert not is_futures_open(datetime(2026, 3, 7, 12, 0, tzinfo=CHICAGO))


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        futures_session_date(datetime(2026, 3, 3, 12, 0))
