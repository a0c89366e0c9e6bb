"""Cron expressions, read by APScheduler's ``CronTrigger`` (which handles time zones and
daylight-saving changes); never computed by hand here.

Five fields are standard crontab (``minute hour day month day-of-week``, Sunday = 0 or 7).
Six fields put seconds first (``second minute hour day month day-of-week``), as Quartz
does; handy for tests and for sub-minute checks.

Two places where APScheduler reads a field otherwise than crontab, translated here:

- Day of week. APScheduler numbers days from Monday = 0, crontab from Sunday = 0 (and 7).
  The weekday field is read the crontab way (numbers 0-7, names ``sun``-``sat``, ranges,
  ``*/2``, ``1-5/2``, lists) into the set of days it names, handed to APScheduler as day
  names (``mon,wed,fri``), which both read alike.
- Day of month *and* day of week. When both are restricted (neither starts with ``*``),
  crontab fires on either (``0 9 1 * 1``: the 1st and every Monday), APScheduler only on
  both; such an expression becomes two triggers, the earlier fire winning
  (APScheduler's ``OrTrigger``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger
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


_NAMES = {name: number for number, name in enumerate(_DAYS[:7])}
_ITEM = re.compile(r"(?P<first>\*|\w+)(?:-(?P<last>\w+))?(?:/(?P<step>\d+))?")
_WEEKDAY_FORMS = (
    "use 0-7 (0 and 7 are Sunday) or sun-sat, a range (1-5), a step (*/2, 1-5/2) or a list (1,3,5)"
)


def _day(text: str, field: str) -> int:
    if text.isascii() and text.isdigit() and int(text) <= 7:
        return int(text)
    if text in _NAMES:
        return _NAMES[text]
    raise ValueError(f"weekday {field!r}: {text!r} is not a day; {_WEEKDAY_FORMS}")


def _weekdays(field: str) -> str:
    """Crontab's weekday field as the day names it stands for (``*`` for every day),
    which APScheduler reads the same way (its own numbers start at Monday)."""
    days: set[int] = set()
    for item in field.lower().split(","):
        m = _ITEM.fullmatch(item)
        if m is None:
            raise ValueError(f"weekday {field!r}: {item!r} is not understood; {_WEEKDAY_FORMS}")
        step = int(m["step"] or 1)
        if step < 1:
            raise ValueError(f"weekday {field!r}: a step must be 1 or more")
        if m["first"] == "*":
            if m["last"]:
                raise ValueError(f"weekday {field!r}: {item!r} is not understood")
            first, last = 0, 6
        else:
            first = _day(m["first"], field)
            # `5/2` is crontab's "from Friday on, every other day" (up to 7, Sunday)
            last = _day(m["last"], field) if m["last"] else (7 if m["step"] else first)
            if m["last"] == "sun":  # `sat-sun`, `mon-sun`: the week's end, as people mean it
                last = 7
        if first > last:
            raise ValueError(
                f"weekday {field!r}: the range {item!r} runs backwards; ranges do not wrap "
                "around the week (Friday to Monday is 5-7,1 or fri-sun,mon)"
            )
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DAYS[d] for d in sorted(days, key=lambda d: (d - 1) % 7))


def trigger(expression: str, timezone: str = "UTC") -> BaseTrigger:
    """A trigger for ``expression`` (a ``CronTrigger``, or two of them when crontab's
    "day of month or day of week" applies); ValueError says what is wrong."""
    from apscheduler.triggers.combining import OrTrigger
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
        days = _weekdays(weekday)

        def cron(day: str, day_of_week: str) -> CronTrigger:
            return CronTrigger(
                second=second,
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=day_of_week,
                timezone=tz,
            )

        if day.startswith("*") or weekday.startswith("*"):
            return cron(day, days)
        return OrTrigger([cron(day, "*"), cron("*", days)])
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
