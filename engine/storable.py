"""Values every database stores: what reaches a row is made storable at the edge.

SQLite's driver refuses a lone surrogate (``"a\\ud800b"``, which JSON and Python
strings can hold but UTF-8 cannot), PostgreSQL refuses NUL characters in text and
``NaN``/``Infinity`` in JSON. A value a driver refuses would fail the driver's whole
commit, so:

- what people send (params, names, comments) is refused with the reason (``problem``);
- what steps produce (outputs, errors, log lines) is repaired (``clean``): a lone
  surrogate or a NUL becomes U+FFFD (the replacement character), a float that is not
  finite becomes the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

REPLACEMENT = "\ufffd"


def _bad(text: str) -> bool:
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(text: str) -> str:
    """``text`` with lone surrogates and NULs replaced by U+FFFD."""
    if not _bad(text):
        return text
    out = text.replace("\x00", REPLACEMENT)
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        out = "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in out)
    return out


def clean(value: Any) -> Any:
    """A copy of a JSON-like ``value`` that every database stores (``value`` itself when
    nothing needed repair)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {clean_text(str(k)) if isinstance(k, str) else k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def problem(value: Any) -> str | None:
    """Why ``value`` (from a person) cannot be stored as it is, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "it holds a NUL character (\\u0000)"
        if _bad(value):
            bad = next(c for c in value if 0xD800 <= ord(c) <= 0xDFFF)
            return f"it holds a lone surrogate (\\u{ord(bad):04x}), which is not valid text"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = problem(k) or problem(v)
            if found:
                return found
    if isinstance(value, list | tuple):
        for v in value:
            found = problem(v)
            if found:
                return found
    return None


# what JSON text (ensure_ascii) shows of a NUL, a surrogate, NaN and Infinity; a match
# may be innocent (an emoji's surrogate pair, "NaN" inside a string): then ``find`` looks
_SUSPECT = re.compile(r"\\u0000|\\u[dD][89a-fA-F]|NaN|Infinity")


def _plainly_storable(value: Any) -> bool:
    """True when ``value``'s JSON text shows nothing suspect: one pass in C instead of a
    walk in Python (a webhook body of 1,000 alerts is checked in milliseconds)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return False
    return _SUSPECT.search(text) is None


def find(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where in a JSON-like ``value`` (from a person or a sender) the first thing no
    database stores is, and why: ``("labels.instance", "it holds a NUL ...")``; ``path``
    names ``value`` itself ("" for the top). None when all of it is storable."""
    if not path and _plainly_storable(value):
        return None
    if isinstance(value, Mapping):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            key_problem = problem(k)
            if key_problem is not None:
                return (f"{path or 'the top'}: a key", key_problem)
            found = find(v, where)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, v in enumerate(value):
            found = find(v, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    bad = problem(value)
    return None if bad is None else (path or "the value", bad)
