"""Ansible's INI inventory format, read into a ``Draft``::

    bastion ansible_host=203.0.113.7     # before any section: in no group but `all`

    [web]
    web[01:03].example.com ansible_user=deploy
    web-canary:2222 ansible_host=10.0.0.9

    [web:vars]
    http_port=80

    [prod:children]
    web

A host line is the name (``name:PORT`` sets ``ansible_port``; ranges expand) and
``key=value`` words, split as a shell would (quote values with blanks). Values read as
Ansible reads them: a Python literal where one parses (``80`` is a number, ``True`` a
boolean, ``['a', 'b']`` a list), text otherwise. Lines starting ``#`` or ``;`` are
comments.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any

from engine.fleet import ranges
from engine.fleet.draft import Draft, Where

_SECTION = re.compile(r"^\[([^\]]*)\]\s*(?:[#;].*)?$")
_LITERAL_CHARS = 10_000  # longer values stay text: literal_eval's cost grows with them


def value(text: str) -> Any:
    """A var's value as Ansible reads it: a Python literal, else the text."""
    if not text or len(text) > _LITERAL_CHARS:
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _host_port(word: str) -> tuple[str, int | None]:
    """``web1:2222`` -> (``web1``, 2222); a colon inside a range (``web[1:3]``) or an
    IPv6 address is not a port."""
    head, colon, tail = word.rpartition(":")
    outside = re.sub(r"\[[^\]]*\]", "", head)
    if colon and tail.isdigit() and head and ":" not in outside:
        return head, int(tail)
    return word, None


class _Reader:
    def __init__(self, draft: Draft, file: str) -> None:
        self.draft, self.file = draft, file
        self.group: str | None = None
        self.kind = "hosts"

    def problem(self, line: int, message: str) -> None:
        self.draft.problems.append(Where(self.file, line).problem(message))

    def line(self, number: int, text: str) -> None:
        stripped = text.strip()
        if not stripped or stripped[0] in "#;":
            return
        if stripped.startswith("["):
            self.section(number, stripped)
        elif self.kind == "skip":  # under a section that does not read: reported once
            return
        elif self.kind == "vars":
            self.var(number, stripped)
        elif self.kind == "children":
            self.child(number, stripped)
        else:
            self.host(number, stripped)

    def section(self, number: int, text: str) -> None:
        match = _SECTION.match(text)
        name, _, kind = (match.group(1) if match else "").strip().partition(":")
        if match is None or not name or any(c.isspace() for c in name):
            self.problem(
                number,
                f"{text!r} is not a section: write [group], [group:vars] or [group:children]",
            )
            self.group, self.kind = None, "skip"
            return
        if kind not in ("", "vars", "children"):
            self.problem(
                number,
                f"[{name}:{kind}]: unknown kind of section; [{name}] lists hosts, "
                f"[{name}:vars] sets vars, [{name}:children] lists groups",
            )
            self.group, self.kind = None, "skip"
            return
        self.group, self.kind = name, kind or "hosts"
        where = Where(self.file, number)
        if kind == "vars":
            self.draft.set_vars(name, where, {})
        else:
            self.draft.group(name, where)

    def host(self, number: int, text: str) -> None:
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            self.problem(number, f"cannot read this line ({exc}): close the quote")
            return
        if not words:
            return
        name, port = _host_port(words[0])
        variables: dict[str, Any] = {} if port is None else {"ansible_port": port}
        for word in words[1:]:
            key, eq, raw = word.partition("=")
            if not eq or not key:
                self.problem(
                    number,
                    f"{word!r} after host {name}: host vars are key=value "
                    "(one host per line; quote values with blanks)",
                )
                return
            variables[key] = value(raw)
        try:
            names = ranges.expand(name)
        except ranges.RangeError as exc:
            self.problem(number, str(exc))
            return
        where = Where(self.file, number)
        for each in names:
            self.draft.add_host(each, where, variables, self.group)

    def var(self, number: int, text: str) -> None:
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or not key or any(c.isspace() for c in key):
            self.problem(number, f"[{self.group}:vars] holds key=value lines, not {text!r}")
            return
        assert self.group is not None
        self.draft.set_vars(self.group, Where(self.file, number), {key: value(raw.strip())})

    def child(self, number: int, text: str) -> None:
        name = text.split("#", 1)[0].split(";", 1)[0].strip()
        if not name or any(c.isspace() for c in name):
            self.problem(
                number, f"[{self.group}:children] lists one group name a line, not {text!r}"
            )
            return
        assert self.group is not None
        self.draft.add_child(self.group, name, Where(self.file, number))


def read(text: str, file: str, draft: Draft) -> None:
    """Add the INI inventory ``text`` (from ``file``) to ``draft``; problems go there."""
    reader = _Reader(draft, file)
    for number, line in enumerate(text.splitlines(), 1):
        reader.line(number, line)
