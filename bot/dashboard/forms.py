"""Reading the dashboard's query strings and forms: filters, time ranges, page sizes.
A bad value is a message naming the field and what it takes, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from engine.durations import parse_duration

MAX_LIMIT = 200


class FormError(Exception):
    """A filter or form value that cannot be used; the message says how to fix it."""


def limit_of(request: web.Request, default: int = 50) -> int:
    """The page size a list's query asks for (``limit``), 1 to ``MAX_LIMIT``."""
    raw = request.query.get("limit", "")
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise FormError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def moment(name: str, raw: str, now: datetime) -> datetime | None:
    """A time filter: ``2026-12-01``, ``2026-12-01T10:00`` (UTC unless it says), or a
    duration back from now (``30m``, ``24h``, ``7d``)."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        pass
    else:
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    try:
        return now - parse_duration(raw)
    except ValueError:
        raise FormError(
            f"{name}: {raw!r} is neither a time (2026-12-01 or 2026-12-01T10:00, UTC) "
            "nor a duration back from now (30m, 24h, 7d)"
        ) from None


def time_range(request: web.Request, now: datetime) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` of a list's query."""
    since = moment("since", request.query.get("since", ""), now)
    until = moment("until", request.query.get("until", ""), now)
    if since is not None and until is not None and since >= until:
        raise FormError("since must be before until")
    return since, until


def next_url(request: web.Request, cursor: str | None) -> str | None:
    """The link to the page after this one: the same query with ``cursor``."""
    return str(request.rel_url.update_query(cursor=cursor)) if cursor else None


def first_url(request: web.Request) -> str | None:
    """The link back to the newest page (None on it)."""
    if not request.query.get("cursor"):
        return None
    kept = {k: v for k, v in request.query.items() if k != "cursor"}
    return str(request.rel_url.with_query(kept))
