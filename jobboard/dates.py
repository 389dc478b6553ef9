"""When a date has passed. A date stays "today" somewhere on Earth until it has ended in
the last time zone, UTC-12: a bid's proposed deadline is in the past only after that, and
a job is due at that moment of its due date. One rule, so a bidder in any time zone may
propose their own today, and nobody is told a job is overdue while its date still runs
somewhere."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

EARLIEST_TIME_ZONE = timezone(timedelta(hours=-12))


def earliest_date_in_use() -> date:
    """The calendar date in the time zone that is furthest behind (UTC-12)."""
    return datetime.now(EARLIEST_TIME_ZONE).date()


def end_of_date_everywhere(day: date) -> datetime:
    """The moment `day` has ended in every time zone: its end in UTC-12."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=EARLIEST_TIME_ZONE)
