"""What every parser shares: ``Parsed``, time parsing, fingerprint hashing, and the
helpers that read JSON values into label text, times and statuses."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine import storable
from engine.alerts.model import Alert, Rejected, Status

FIRING_VALUES: tuple[str, ...] = ("firing", "alerting", "triggered", "open", "problem")
RESOLVED_VALUES: tuple[str, ...] = ("resolved", "ok", "closed", "recovered")

_EPOCH_MILLIS_ABOVE = 10**11
_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<clock>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class Parsed:
    """What one body or message became. ``truncated`` counts alerts the sender says it
    left out (``truncatedAlerts``); ``note`` says in words what to log that is no error."""

    alerts: list[Alert] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    note: str | None = None
    truncated: int = 0


class _Bad(Exception):
    """An entry (or the whole body) cannot be read; the message is the reason."""


class _Skip(Exception):
    """The body is fine but holds nothing to route; the message becomes the note."""


# -- shared helpers -----------------------------------------------------------------------


def stable_fingerprint(source: str, labels: Mapping[str, str]) -> str:
    """Identity for alerts whose sender gives none: the same source and labels always give
    the same 16 hex digits, whatever order the labels came in."""
    canonical = json.dumps([source, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 time, always timezone-aware; ``None`` for "" and Go's zero time.

    Read by hand before ``fromisoformat``: Go senders write nanoseconds, and how many
    digits (or a lowercase ``t``/``z``) ``fromisoformat`` takes has changed between Python
    releases; cutting the fraction to microseconds here gives one answer everywhere."""
    text = value.strip()
    if not text:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    offset = match["offset"] or "Z"
    if offset.upper() == "Z":
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['clock']}.{fraction}{offset}")
    except ValueError as err:
        raise ValueError(f"{value!r} is not an RFC 3339 time: {err}") from None
    return None if moment.year == 1 else moment


def _kind(value: Any) -> str:
    """JSON's name for a decoded value's type, for reasons people read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(value: Any) -> str | None:
    """A JSON value as label text: JSON spelling for booleans and structures; no null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strings(value: Any, where: str) -> dict[str, str]:
    """An object of labels or annotations with every value as text (nulls dropped)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{where} is {_kind(value)}, not an object")
    return {str(key): text for key, item in value.items() if (text := _text(item)) is not None}


def _get(value: Any, path: str) -> Any:
    """The value at a dotted path (a number step indexes an array); ``None`` if absent."""
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isascii() and step.isdigit():
            if int(step) >= len(value):
                return None
            value = value[int(step)]
        else:
            return None
    return value


def _url(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _time_at(value: Any, where: str) -> datetime | None:
    """A time field: RFC 3339 text or epoch seconds/milliseconds; absent is ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as err:
            raise _Bad(f"{where}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{where} is {_kind(value)}, not a time")
    try:
        seconds = value / 1000 if value > _EPOCH_MILLIS_ABOVE else value
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _Bad(f"{where}: {value} is out of range for a time") from None


def _mapped_status(
    value: Any, where: str, firing: Sequence[str], resolved: Sequence[str]
) -> Status:
    """A free-form status word as firing or resolved, case-insensitively."""
    text = (_text(value) or "").strip()
    if not text:
        raise _Bad(f"no status {where}")
    if text.casefold() in {word.casefold() for word in firing}:
        return "firing"
    if text.casefold() in {word.casefold() for word in resolved}:
        return "resolved"
    raise _Bad(
        f"status {text!r} {where} is neither firing ({', '.join(firing)})"
        f" nor resolved ({', '.join(resolved)})"
    )


def _rejected(source: str, reason: str, raw: Any) -> Parsed:
    return Parsed(rejected=[Rejected(source=source, reason=reason, raw=raw)])


def _storable(entry: Any, where: str) -> None:
    """``_Bad`` naming the field of ``entry`` no database stores (a NUL, a lone
    surrogate, NaN or Infinity), so the entry is rejected and its body's others go on."""
    found = storable.find(entry)
    if found is not None:
        path, why = found
        raise _Bad(f"{path}: {why}" if path != "the value" else why)


def storable_only(parsed: Parsed) -> Parsed:
    """``parsed`` with every value storable: an alert holding anything no database
    stores (from its envelope, say) becomes a rejected entry with the reason, and what a
    rejected entry keeps (its raw record, its reason) is repaired (``storable.clean``).
    The parsers' last word before anything is stored."""
    alerts: list[Alert] = []
    rejected: list[Rejected] = []
    for alert in parsed.alerts:
        record = {
            "fingerprint": alert.fingerprint,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "severity": alert.severity,
            "links": [[link.title, link.url] for link in alert.links],
            "raw": alert.raw,
        }
        found = storable.find(record)
        if found is None:
            alerts.append(alert)
            continue
        why = f"{alert.name}: {found[0]}: {found[1]}"
        rejected.append(Rejected(source=alert.source, reason=why, raw=alert.raw))
    rejected = [
        Rejected(source=r.source, reason=storable.clean_text(r.reason), raw=storable.clean(r.raw))
        for r in [*parsed.rejected, *rejected]
    ]
    note = storable.clean_text(parsed.note) if parsed.note is not None else None
    return Parsed(alerts=alerts, rejected=rejected, note=note, truncated=parsed.truncated)


def _collect(
    source: str, entries: Sequence[tuple[str, Any]], read: Callable[[Any], Alert]
) -> Parsed:
    """Read every entry on its own, so one bad entry is rejected and the rest survive."""
    alerts: list[Alert] = []
    rejected: list[Rejected] = []
    for where, entry in entries:
        try:
            _storable(entry, where)
            alerts.append(read(entry))
        except _Bad as bad:
            rejected.append(Rejected(source=source, reason=f"{where}: {bad}", raw=entry))
    return Parsed(alerts=alerts, rejected=rejected)
