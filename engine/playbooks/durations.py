"""Durations, the one way every playbook key and action input reads them.

A duration is a number of seconds (``90``, ``2.5``) or text made of NUMBER UNIT parts,
spaces allowed between and within them: ``500ms``, ``30s``, ``5m``, ``1h30m``,
``1h 30m``, ``10 minutes``, ``1 hour 30 minutes``, ``2d``, ``1w``. Units, any case:
``ms`` (``msec``, ``millisecond(s)``), ``s`` (``sec``, ``secs``, ``second(s)``), ``m``
(``min``, ``mins``, ``minute(s)``), ``h`` (``hr``, ``hrs``, ``hour(s)``), ``d``
(``day(s)``), ``w`` (``week(s)``). A duration is never negative and at most ten years.

Step and playbook ``timeout``, ``retry.delay``/``max_delay``, approval ``timeout``,
``remind`` and ``escalate.timeout``, ``wait: {for: ...}``, the http action's ``timeout``,
an alert trigger's ``dedup`` and ``rate`` period, and ``schedule P in ...`` all read
through ``parse_duration``; pydantic models use ``Duration`` (or ``Timeout``, which must
be more than zero), so ``baton validate`` refuses a bad one before any step runs.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_UNITS: dict[str, float] = {}
for _per_unit, _names in (
    (0.001, "ms msec msecs millisecond milliseconds"),
    (1, "s sec secs second seconds"),
    (60, "m min mins minute minutes"),
    (3600, "h hr hrs hour hours"),
    (86400, "d day days"),
    (604800, "w week weeks"),
):
    _UNITS.update(dict.fromkeys(_names.split(), _per_unit))
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
FORMS = "a number of seconds or e.g. 500ms, 30s, 5m, 1h30m, 10 minutes, 2d"
# Longer than any wait a playbook means, and short enough that `now + duration` is always
# a date Python (and the databases) can hold.
LONGEST = timedelta(days=3660)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``value`` into a timedelta of at most ten years; raise ValueError with the
    accepted forms."""
    try:
        parsed = _parse(value)
    except OverflowError:
        parsed = None
    if parsed is None or parsed > LONGEST:
        raise ValueError(f"duration {value!r} is too long: at most 10 years (3660d)")
    return parsed


def _parse(value: str | int | float | timedelta) -> timedelta:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"bad duration {value!r}: expected {FORMS}")
    if isinstance(value, int | float):
        if math.isnan(value):
            raise ValueError(f"bad duration {value!r}: expected {FORMS}")
        if value < 0:
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return timedelta(seconds=value)
    text = value.lower()
    if _NUMBER.fullmatch(text):
        return timedelta(seconds=float(text))
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos or m.group(2) not in _UNITS:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text.strip() or pos != len(text):
        raise ValueError(f"bad duration {value!r}: expected {FORMS}")
    return timedelta(seconds=total)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a timeout of 0 would end at once: give more than 0, or leave it out")
    return value


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(_seconds, return_type=float),
]
"""A pydantic field holding a duration (JSON: seconds)."""

Timeout = Annotated[Duration, AfterValidator(_positive)]
"""A duration that must be more than zero: a timeout of nothing is a mistake."""


def format_duration(seconds: float) -> str:
    """Short human form: 0.4s, 12s, 3m05s, 2h01m."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def format_measure(seconds: float) -> str:
    """A measured time (a percentile, a chart's bar): under a second in milliseconds,
    where ``format_duration`` would show two different quick steps both as 0.0s."""
    ms = round(seconds * 1000)
    return f"{ms}ms" if ms < 1000 else format_duration(seconds)


def parse_age(value: str) -> timedelta:
    """An age such as ``90d``, ``12w`` or ``36h`` (``parse_duration``). A bare
    number is refused: ``90`` would be 90 seconds to a duration, and days to a reader."""
    if value.strip().replace(".", "", 1).isdigit():
        raise ValueError(f"age {value!r} needs a unit: e.g. {value.strip()}d for days")
    try:
        age = parse_duration(value)
    except ValueError as exc:
        if "too long" in str(exc):
            raise
        raise ValueError(f"bad age {value!r}: expected e.g. 90d, 12w or 36h") from None
    if age <= timedelta(0):
        raise ValueError(f"age {value!r} must be more than nothing: e.g. 90d")
    return age
