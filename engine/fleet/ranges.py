"""Ansible's host ranges: ``web[01:40].example.com`` is forty hosts, ``db-[a:c]`` three.

A range is ``[START:END]`` or ``[START:END:STEP]``, both ends included. Numbers keep the
width of a start written with leading zeros (``[01:10]`` gives ``01`` ... ``10``);
letters go one by one (``[a:f]``). A name may hold several ranges: every combination is
a host. Expansion is capped (``MAX_EXPANDED``) so that ``web[0:999999999]`` is refused,
not built.
"""

from __future__ import annotations

import re
import string

MAX_EXPANDED = 50_000
"""The most hosts one name with ranges may stand for."""

_RANGE = re.compile(r"\[([^\]\[:]*):([^\]\[:]*)(?::([^\]\[:]*))?\]")


class RangeError(ValueError):
    """A range that does not read; ``str()`` says what to write."""


def has_range(name: str) -> bool:
    return _RANGE.search(name) is not None


def expand(name: str) -> list[str]:
    """Every host ``name`` stands for, in order; ``[name]`` when it holds no range."""
    match = _RANGE.search(name)
    if match is None:
        return [name]
    items = _items(match.group(0), *match.groups())
    head, tail = name[: match.start()], name[match.end() :]
    tails = expand(tail)
    if len(items) * len(tails) > MAX_EXPANDED:
        raise RangeError(
            f"{name} stands for {len(items) * len(tails):,} hosts, more than the "
            f"{MAX_EXPANDED:,} one line may: split it into smaller ranges"
        )
    return [f"{head}{item}{rest}" for item in items for rest in tails]


def _items(text: str, start: str, end: str, step_text: str | None) -> list[str]:
    start, end = start.strip(), end.strip()
    step = _step(text, step_text)
    if start.isascii() and end.isascii() and start.isdigit() and end.isdigit():
        first, last = int(start), int(end)
        _ordered(text, first, last)
        count = (last - first) // step + 1
        if count > MAX_EXPANDED:
            raise RangeError(
                f"{text} stands for {count:,} hosts, more than the {MAX_EXPANDED:,} one "
                "line may: split it into smaller ranges"
            )
        width = len(start) if start.startswith("0") and len(start) > 1 else 0
        return [str(n).zfill(width) for n in range(first, last + 1, step)]
    letters = string.ascii_letters
    if len(start) == 1 and len(end) == 1 and start in letters and end in letters:
        if start.islower() != end.islower():
            raise RangeError(f"{text} mixes lower and upper case: write [a:f] or [A:F]")
        _ordered(text, ord(start), ord(end))
        return [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    raise RangeError(
        f"{text} is not a host range: write numbers ([01:40]) or single letters ([a:f]), "
        "optionally with a step ([1:9:2])"
    )


def _step(text: str, step_text: str | None) -> int:
    if step_text is None or not step_text.strip():
        return 1
    if not (step_text.strip().isascii() and step_text.strip().isdigit()) or int(step_text) < 1:
        raise RangeError(f"{text}: the step must be a whole number of 1 or more")
    return int(step_text)


def _ordered(text: str, first: int, last: int) -> None:
    if first > last:
        raise RangeError(f"{text} starts after it ends: write the smaller end first")
