"""Label matchers, as Alertmanager has them: ``=``, ``!=``, ``=~``, ``!~``.

Two ways to write them in a playbook's alert trigger:

- ``match: {alertname: DiskFull, severity: "critical|warning", env: "!dev"}``: each value
  is a regular expression that must match the whole label value (so a plain word
  matches exactly and ``a|b`` either); a leading ``!`` negates it.
- ``matchers: ['severity=~"critical|warning"', 'env!="dev"']``: Alertmanager's own
  syntax, where ``=`` and ``!=`` compare exactly.

A label the alert lacks counts as the empty string, as in Alertmanager: ``env!="dev"``
matches an alert without ``env``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]
SYNTAX = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Op
    value: str

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")
        match self.op:
            case "=":
                return have == self.value
            case "!=":
                return have != self.value
            case "=~":
                return self.pattern.fullmatch(have) is not None
            case "!~":
                return self.pattern.fullmatch(have) is None

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


_cache: dict[str, re.Pattern[str]] = {}


def _compiled(value: str) -> re.Pattern[str]:
    pattern = _cache.get(value)
    if pattern is None:
        pattern = _cache[value] = re.compile(value)
    return pattern


def _checked(label: str, op: Op, value: str) -> Matcher:
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"matcher on {label!r}: {value!r} is not a regex ({exc})") from None
    return Matcher(label, op, value)


def from_match(match: Mapping[str, object]) -> list[Matcher]:
    """``match: {label: regex}`` (``!regex`` negates)."""
    out = []
    for label, raw in match.items():
        value = str(raw)
        if value.startswith("!"):
            out.append(_checked(label, "!~", value[1:]))
        else:
            out.append(_checked(label, "=~", value))
    return out


def parse(text: str) -> Matcher:
    """One matcher in Alertmanager's syntax: ``name="value"``, ``name=~"regex"``, ..."""
    found = SYNTAX.match(text)
    if found is None:
        raise ValueError(
            f'cannot read matcher {text!r}: write it as name="value", name!="value", '
            'name=~"regex" or name!~"regex"'
        )
    label, op, value = found.groups()
    return _checked(label, op, value)  # type: ignore[arg-type]


def all_match(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
