"""Durations as people write them in playbooks: ``30s``, ``5m``, ``1h30m``, ``2d`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
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
        return value
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: expected e.g. 30s, 5m, 1h30m or a number")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"bad duration {value!r}: expected e.g. 30s, 5m, 1h30m, 2d or seconds")
    return timedelta(seconds=total)


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
