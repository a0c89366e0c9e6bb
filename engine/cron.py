"""Cron expressions, read by APScheduler's ``CronTrigger`` (which handles time zones and
daylight-saving changes); never computed by hand here.

Five fields are standard crontab (``minute hour day month day-of-week``, Sunday = 0 or 7).
Six fields put seconds first (``second minute hour day month day-of-week``), as Quartz
does; handy for tests and for sub-minute checks.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_TICK = timedelta(seconds=1)
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
        ) from None


def _weekdays(field: str) -> str:
    """Crontab's numeric days (0 or 7 = Sunday) as names, which APScheduler reads the
    same way (its own numbers start at Monday)."""
    return re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: _DAYS[int(m.group(1))], field)


def trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """A ``CronTrigger`` for ``expression``; ValueError says what is wrong."""
    from apscheduler.triggers.cron import CronTrigger

    tz = zone(timezone)
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {expression!r} has {len(fields)} fields: use 5 (minute hour day month "
            "weekday, e.g. '0 2 * * *') or 6 with seconds first"
        )
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(weekday),
            timezone=tz,
        )
    except ValueError as exc:
        raise ValueError(f"cron {expression!r}: {exc}") from None


def fires_between(
    expression: str, timezone: str, after: datetime, until: datetime, limit: int = 10_000
) -> list[datetime]:
    """Fire times in (after, until], oldest first, at most ``limit`` of them."""
    trig = trigger(expression, timezone)
    out: list[datetime] = []
    prev = after
    while len(out) < limit:
        nxt = trig.get_next_fire_time(prev, prev)
        if nxt is None or nxt > until:
            break
        if nxt > prev:
            out.append(nxt)
        prev = nxt
    return out


def next_fire(expression: str, timezone: str, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``."""
    trig = trigger(expression, timezone)
    nxt = trig.get_next_fire_time(after, after)
    while nxt is not None and nxt <= after:
        nxt = trig.get_next_fire_time(nxt, nxt + _TICK)
    return nxt
