"""Keyset paging: every list a front end shows (runs, alerts) is read a page at a time
along an index, never with ``OFFSET``.

A page is the ``limit`` newest rows before a *cursor*: the sort key of the last row of
the page before, opaque to clients (URL-safe base64 of its parts). Reading page 1,000 costs
what reading page 1 costs, and rows that arrive while someone pages do not shift the
pages after the first (they are newer than every cursor).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from engine.errors import BadCursor

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None
    """The cursor of the page after this one (older rows), or None on the last page."""


def encode(kind: str, *parts: str) -> str:
    """The cursor after a row whose sort key is ``parts``, in the list ``kind``."""
    raw = json.dumps([kind, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str, parts: int) -> list[str]:
    """The sort key a cursor of the list ``kind`` holds; BadCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadCursor("not readable") from exc
    if (
        not isinstance(value, list)
        or len(value) != parts + 1
        or not all(isinstance(v, str) for v in value)
    ):
        raise BadCursor("not readable")
    if value[0] != kind:
        raise BadCursor(f"a cursor of {value[0]!r}, not of {kind!r}")
    if not all(_storable(v) for v in value[1:]):  # forged: no list gives out such keys
        raise BadCursor("not readable")
    return value[1:]


def _storable(part: str) -> bool:
    """A key a database can compare: no NUL, no lone surrogate, not absurdly long."""
    if "\x00" in part or len(part) > 500:
        return False
    try:
        part.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def number(text: str) -> int:
    """A cursor's id part, a whole number within 64 bits (BadCursor unless it is one)."""
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
        raise BadCursor("not readable")
    return int(text)


def timestamp(text: str) -> datetime:
    """A cursor's time part, aware (BadCursor unless it is one)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadCursor("not readable") from exc
    if at.tzinfo is None:
        raise BadCursor("not readable")
    try:
        return at.astimezone(UTC)
    except OverflowError as exc:  # past the year 9999 in UTC
        raise BadCursor("not readable") from exc
