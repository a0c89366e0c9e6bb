"""A schedule's times as chat and the command line show them: in the schedule's own time
zone, with the zone named (``2026-12-07 09:00:00 Europe/Paris``), so that a schedule made
for 09:00 Paris never reads as 08:00 beside the word Europe/Paris."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zoned(at: datetime | None, zone: str) -> str:
    """``at`` (naive means UTC, as the database keeps it) in ``zone``, named; "" for
    none. A zone this machine does not know shows the time in UTC, named so."""
    if at is None:
        return ""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        local = at.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local, zone = at.astimezone(UTC), "UTC"
    return f"{local:%Y-%m-%d %H:%M:%S} {zone}"
