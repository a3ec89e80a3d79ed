"""The 24x7 (crypto) calendar: trading days roll at midnight in their zone, every day, for the funded daily rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from daemon import calendar as cal
from daemon.risk import funded
from daemon.risk.funded_models import AccountRules

SAT_LATE = datetime(2026, 11, 28, 23, 59, 30, tzinfo=UTC)  # a Saturday: no futures session, crypto trades


def test_24x7_days_are_calendar_days_in_their_zone() -> None:
    assert cal.session_date(SAT_LATE, "24x7") == date(2026, 11, 28)
    assert cal.session_date(SAT_LATE, "24x7", "Asia/Tokyo") == date(2026, 11, 29)
    assert cal.session_date(SAT_LATE, "cme") == date(2026, 11, 30)  # futures: Monday's session
    assert cal.session_end(date(2026, 11, 28), "24x7") == datetime(2026, 11, 29, tzinfo=UTC)
    assert cal.next_session_open(SAT_LATE, "24x7") == datetime(2026, 11, 29, tzinfo=UTC)
    assert cal.next_session_open(SAT_LATE, "24x7", "America/New_York") == datetime(
        2026, 11, 29, tzinfo=ZoneInfo("America/New_York"))
    assert cal.following_session(date(2026, 11, 27), "24x7") == date(2026, 11, 28)  # Friday -> Saturday
    assert cal.following_session(date(2026, 11, 27), "cme") == date(2026, 11, 30)  # Friday -> Monday


def rules(**over: object) -> AccountRules:
    return AccountRules.model_validate({"starting_balance": "10000", "max_loss": "1000",
                                        "daily_loss_limit": "200", "calendar": "24x7", **over})


def test_daily_loss_on_24x7_blocks_until_the_next_utc_midnight_and_the_day_rolls_on_a_weekend() -> None:
    r = rules()
    state = funded.new_state(r, datetime(2026, 11, 28, 10, tzinfo=UTC))
    assert state.session == date(2026, 11, 28)
    state, breaches = funded.on_mark(state, r, datetime(2026, 11, 28, 12, tzinfo=UTC), live_equity=Decimal("9790"))
    assert [b.rule for b in breaches] == ["daily_loss_limit"]
    assert state.blocked_until == datetime(2026, 11, 29, tzinfo=UTC)  # Sunday 00:00 UTC, not Monday's futures open
    rolled, _ = funded.on_session_close(state, r, Decimal("9790"), datetime(2026, 11, 29, 0, 0, 5, tzinfo=UTC))
    assert rolled.session == date(2026, 11, 29) and rolled.session_start_balance == Decimal("9790")
    assert rolled.day_pnl == {"2026-11-28": Decimal("-210")}
    again, breaches = funded.on_mark(rolled, r, datetime(2026, 11, 29, 1, tzinfo=UTC), live_equity=Decimal("9700"))
    assert breaches == [] and again.blocked_until is None  # a new day: 90 down of its 200


def test_futures_rules_keep_the_cme_session() -> None:
    r = rules(calendar="cme")
    state = funded.new_state(r, SAT_LATE)
    assert state.session == date(2026, 11, 30)


def test_an_unknown_day_roll_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        rules(day_roll_tz="Mars/Olympus")
