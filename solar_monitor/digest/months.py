"""Calendar-month arithmetic for the digest (light: `run` imports it every time)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after `month` (negative: before)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def last_day(month: date) -> date:
    return add_months(month, 1) - timedelta(days=1)


def previous_month(now: datetime, tz: ZoneInfo) -> date:
    """The first day of the site-local month before the one `now` falls in."""
    return add_months(now.astimezone(tz).date().replace(day=1), -1)
