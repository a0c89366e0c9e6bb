"""Reading the dashboard's query strings and forms: filters, time ranges, page sizes.
A bad value is a message naming the field and what it takes, never a 500."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from bot import edge
from bot.api_kit import MAX_BODY
from engine.playbooks.durations import parse_duration

MAX_LIMIT = 200
MAX_FIELDS = 1000  # a form of the dashboard has a few dozen at most
MAX_VALUE = 32 * 1024  # characters in one field: a value is read as a chat line would be
_FORM = web.RequestKey("dashboard.form", MultiDictProxy)


class FormError(Exception):
    """A filter or form value that cannot be used; the message says how to fix it."""


def whole(text: str) -> bool:
    """``text`` is a whole number written with the digits 0-9 (``isdigit`` alone takes
    ``²`` and other digits ``int`` refuses or reads otherwise)."""
    return text.isascii() and text.isdigit()


def limit_of(request: web.Request, default: int = 50) -> int:
    """The page size a list's query asks for (``limit``), 1 to ``MAX_LIMIT``."""
    raw = request.query.get("limit", "")
    if not raw:
        return default
    if not whole(raw) or not 1 <= int(raw) <= MAX_LIMIT:
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
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        try:
            return at.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59-23:59 is past the year 9999 in UTC
            raise FormError(f"{name}: {raw!r} is out of range (years 1 to 9999, in UTC)") from None
    try:
        return now - parse_duration(raw)
    except ValueError as exc:
        if "too long" in str(exc):  # a duration, but past the longest one
            raise FormError(f"{name}: {exc}") from None
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


async def posted(request: web.Request, seconds: float) -> MultiDictProxy[str]:
    """The form a dashboard page posted, read once per request (the CSRF check reads it
    first): within ``seconds`` (``BATON_READ_TIMEOUT``: a body that stalls is 408, as
    on the API), at most ``MAX_BODY`` bytes and ``MAX_FIELDS`` fields, every field text
    in its charset (invalid text is refused, never replaced), no file uploads."""
    if _FORM in request:
        return request[_FORM]
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise web.HTTPBadRequest(text=f"unknown charset {charset!r}: send utf-8") from None
    body = await edge.read(request, limit=MAX_BODY, seconds=seconds, limit_name="1 MB")
    if isinstance(body, edge.Refused):
        raise _refused(body)
    if request.content_type == "multipart/form-data":
        raise web.HTTPUnsupportedMediaType(
            text="the dashboard's forms are sent urlencoded: a file cannot be a value"
        )
    try:
        fields = parse_qsl(
            body.decode("ascii"),  # urlencoded: the rest is %-escaped
            keep_blank_values=True,
            encoding=charset,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeError:
        raise web.HTTPBadRequest(text=f"the form holds text that is not valid {charset}") from None
    except ValueError:  # over max_num_fields
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_FIELDS, actual_size=body.count(b"&") + 1, text="over 1000 fields"
        ) from None
    for name, value in fields:
        if len(value) > MAX_VALUE:  # a param typed in a form; the API takes longer ones
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_VALUE,
                actual_size=len(value),
                text=f"{name!r} is {len(value):,} characters: a form field takes up to "
                f"{MAX_VALUE:,} (POST /api/runs takes a longer param)",
            )
        if "\x00" in name or "\x00" in value:
            raise web.HTTPBadRequest(text=f"{name!r} holds a NUL character (\\u0000): remove it")
    form = MultiDictProxy(MultiDict(fields))
    request[_FORM] = form
    return form


def _refused(refused: edge.Refused) -> web.HTTPException:
    """What ``edge.read`` refused (408, 413, 415 or 400), as an exception to raise."""
    text = refused.message
    if refused.status == 408:
        return web.HTTPRequestTimeout(text=text)
    if refused.status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=0, text=text)
    if refused.status == 415:
        return web.HTTPUnsupportedMediaType(text=text)
    return web.HTTPBadRequest(text=text)
