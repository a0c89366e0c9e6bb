"""Crontab expressions mean what crontab means, read by APScheduler's triggers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.schedules import cron

MONDAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday, 00:00
WEEK = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def fires(expression: str, days: int = 7) -> list[str]:
    """When ``expression`` fires in the ``days`` from MONDAY on, as "Mon 30"."""
    until = datetime.fromtimestamp(MONDAY.timestamp() + days * 86400, UTC)
    return [f.strftime("%a %d") for f in cron.fires_between(expression, "UTC", MONDAY, until)]


def weekdays(expression: str) -> str:
    return " ".join(f.split()[0] for f in fires(expression))


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("7", "Sun"),
        ("0", "Sun"),
        ("sun", "Sun"),
        ("SUN", "Sun"),
        ("1", "Mon"),
        ("1-5", "Mon Tue Wed Thu Fri"),
        ("mon-fri", "Mon Tue Wed Thu Fri"),
        ("0-6", " ".join(WEEK)),
        ("0-7", " ".join(WEEK)),
        ("1-7", " ".join(WEEK)),
        ("5-7", "Fri Sat Sun"),
        ("6,7", "Sat Sun"),
        ("sat-sun", "Sat Sun"),
        ("*/2", "Tue Thu Sat Sun"),
        ("1-5/2", "Mon Wed Fri"),
        ("5/1", "Fri Sat Sun"),
        ("5-7,1", "Mon Fri Sat Sun"),
    ],
)
def test_weekdays_are_crontabs(field: str, expected: str) -> None:
    """0 and 7 are Sunday; ranges and steps count from Sunday as crontab does
    (APScheduler's own numbers start at Monday: `0-6` was refused, `*/2` fired on Mondays
    and Wednesdays, `0-7` only on Sundays)."""
    assert weekdays(f"0 9 * * {field}") == expected


def test_day_of_month_or_day_of_week_as_in_crontab() -> None:
    """Both restricted: crontab fires on either (the 1st, and every Monday)."""
    assert fires("0 9 1 * 1", days=15) == ["Mon 30", "Tue 01", "Mon 07", "Mon 14"]
    # one of them starting with `*` restricts nothing: both must hold
    assert fires("0 9 */2 * 1", days=15) == ["Mon 07"]


@pytest.mark.parametrize(
    ("field", "needle"),
    [
        ("8", "'8' is not a day"),
        ("7-1", "runs backwards"),
        ("1#2", "not understood"),
        ("funday", "is not a day"),
    ],
)
def test_weekdays_crontab_has_not_are_refused_with_the_forms_it_has(
    field: str, needle: str
) -> None:
    with pytest.raises(ValueError, match=needle) as caught:
        cron.trigger(f"0 9 * * {field}")
    assert "0 and 7 are Sunday" in str(caught.value) or "Friday to Monday" in str(caught.value)
