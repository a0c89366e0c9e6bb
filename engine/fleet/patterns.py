"""Ansible's host patterns: which hosts ``web:&prod:!web03`` names.

A pattern is terms joined by ``:`` (or ``,``; a pattern holding a comma is split on
commas only, so names with ``:`` can be written). Each term is:

- a group (``web``, ``all``) or a host name: exactly that;
- a glob (``web*``, ``db-?``, ``web[a-c]``): every group and host whose name fits
  (``fnmatch``, case-sensitive);
- any of these with a subscript: ``web[0]``, ``web[-1]``, ``web[0:2]``, ``web[1:]``
  (both ends included, as Ansible's), counted in inventory order. As in Ansible, digits
  in brackets are a subscript, never a glob's character class.

A term prefixed ``&`` intersects, ``!`` excludes. As in Ansible the plain terms are
joined first, then the intersections apply, then the exclusions, whatever their order in
the text; a pattern of only ``&``/``!`` terms starts from ``all``. The result is in
inventory order. Ansible's ``~regex`` terms are refused (a regex can take exponential
time on a crafted name, and patterns render inside budgeted templates): use a glob.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Mapping

from engine.errors import BatonError

_GLOB_CHARS = frozenset("*?[")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?\d+)|(\d*):(\d*))\]$")


MAX_PATTERN = 10_000
MAX_TERMS = 100
"""The longest pattern read, in characters (names and groups are short; a longer one is
a template gone wrong)."""


class PatternError(BatonError):
    """A pattern that cannot be read; the message says how to write it."""


def work(pattern: str, hosts: int) -> int:
    """Units of template budget a match costs on an inventory of ``hosts`` hosts: a glob
    or subscript term looks at every host (a unit per ten), and so does putting the
    result in inventory order; a plain name costs one."""
    terms = split(_bounded(pattern))
    scans = 1 + sum(1 for term in terms if _GLOB_CHARS.intersection(term))
    return len(terms) + scans * (hosts // 10)


def _bounded(pattern: str) -> str:
    if len(pattern) > MAX_PATTERN:
        raise PatternError(
            f"a host pattern of {len(pattern):,} characters, more than the {MAX_PATTERN:,} "
            "one may have: name groups instead of listing hosts"
        )
    if pattern.count(":") + pattern.count(",") >= MAX_TERMS:
        raise PatternError(
            f"a host pattern of more than {MAX_TERMS} terms: name groups instead of listing hosts"
        )
    return pattern


def split(pattern: str) -> list[str]:
    """The terms of ``pattern``: split on commas if it has any, else on colons outside
    brackets (``web[0:2]`` is one term)."""
    if "," in pattern:
        parts = pattern.split(",")
    else:
        parts, depth, current = [], 0, ""
        for char in pattern:
            depth += (char == "[") - (char == "]")
            if char == ":" and depth <= 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def match(pattern: str, hosts: Collection[str], groups: Mapping[str, Collection[str]]) -> list[str]:
    """The hosts ``pattern`` names, in the order of ``hosts`` (every host, in inventory
    order; a dict's keys look up fastest); ``groups`` maps each group to all its hosts
    (its children's too)."""
    terms = split(_bounded(pattern))
    if not terms:
        raise PatternError(
            f"{pattern!r} is an empty pattern: name a group, a host, `all` or a glob (web*)"
        )
    plain = [t for t in terms if t[0] not in "&!"] or ["all"]
    chosen: set[str] = set()
    for term in plain:
        chosen |= _term(term, hosts, groups)
    for term in (t[1:] for t in terms if t[0] == "&"):
        chosen &= _term(term, hosts, groups)
    for term in (t[1:] for t in terms if t[0] == "!"):
        chosen -= _term(term, hosts, groups)
    return [name for name in hosts if name in chosen]


def _term(term: str, hosts: Collection[str], groups: Mapping[str, Collection[str]]) -> set[str]:
    term = term.strip()
    if not term:
        raise PatternError("`&` and `!` need a group, host or glob after them (web:&prod)")
    if term.startswith("~"):
        raise PatternError(
            f"{term!r}: regular expressions (~...) are not supported in host patterns; "
            "use a glob (web*) or a group"
        )
    subscript = _SUBSCRIPT.match(term)
    if subscript is None:
        return _named(term, hosts, groups)
    base = _named(subscript.group(1), hosts, groups)
    ordered = [name for name in hosts if name in base]
    if subscript.group(2) is not None:
        index = int(subscript.group(2))
        return {ordered[index]} if -len(ordered) <= index < len(ordered) else set()
    first = int(subscript.group(3) or 0)
    last = int(subscript.group(4)) if subscript.group(4) else len(ordered) - 1
    return set(ordered[first : last + 1])


def _named(term: str, hosts: Collection[str], groups: Mapping[str, Collection[str]]) -> set[str]:
    """Hosts of the group or the host named ``term``, or of every one a glob fits."""
    if term in groups:
        return set(groups[term])
    if not _GLOB_CHARS.intersection(term):
        return {term} if term in hosts else set()
    found: set[str] = set()
    for group in groups:
        if fnmatch.fnmatchcase(group, term):
            found.update(groups[group])
    found.update(name for name in hosts if fnmatch.fnmatchcase(name, term))
    return found
