"""Chat messages other bots post in a watched channel, read through ``ChatRule`` patterns."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.alerts.parsers._common import (
    FIRING_VALUES,
    RESOLVED_VALUES,
    Parsed,
    _Bad,
    _mapped_status,
    _rejected,
    stable_fingerprint,
)
from engine.alerts.model import Alert, Status

CHAT = "chat"

_CHAT_SPECIAL_GROUPS = frozenset({"status", "summary", "description"})


class ChatRule(BaseModel):
    """How to read an alert out of messages other bots post in a watched channel.

    ``pattern`` is searched (not matched) in the text; its named groups become labels,
    except ``status`` (the status word, mapped through ``firing_values`` and
    ``resolved_values`` unless ``status`` is fixed; no such group: firing), ``summary``
    and ``description`` (annotations). ``labels`` are added after and win. ``fingerprint``
    is a template over the groups and labels (``"{alertname}:{instance}"``); unset: a
    hash of ``chat`` and the labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = Field(description="Channel id (C0123) or name (#alerts) watched.")
    pattern: str = Field(description="Python regex with named groups.")
    status: Status | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    firing_values: tuple[str, ...] = FIRING_VALUES
    resolved_values: tuple[str, ...] = RESOLVED_VALUES

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"pattern {value!r} is not a valid regex: {err}") from None
        return value

    @model_validator(mode="after")
    def _template_names_known(self) -> ChatRule:
        """A typo in the template shows when the rule loads, not when an alert comes."""
        if self.fingerprint is None:
            return self
        known = set(self.regex.groupindex) | set(self.labels)
        for _, name, _, _ in string.Formatter().parse(self.fingerprint):
            if name is not None and re.split(r"[.\[]", name, maxsplit=1)[0] not in known:
                raise ValueError(
                    f"fingerprint {self.fingerprint!r} names {{{name}}}, which is neither a"
                    " named group of the pattern nor a label"
                )
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)  # the re module caches compiled patterns

    def watches(self, channel: str, channel_name: str | None = None) -> bool:
        """Whether this rule's channel is the given id or name (``#`` optional)."""
        mine = self.channel.removeprefix("#").casefold()
        return any(
            mine == given.removeprefix("#").casefold() for given in (channel, channel_name) if given
        )


def chat(
    text: str, channel: str, rules: Sequence[ChatRule], *, channel_name: str | None = None
) -> Parsed:
    """The alert in one chat message: the first rule watching the channel (by id or
    name) whose pattern is found in the text wins; none: an empty ``Parsed``."""
    for index, rule in enumerate(rules):
        if not rule.watches(channel, channel_name):
            continue
        match = rule.regex.search(text)
        if match is None:
            continue
        raw = {"text": text, "channel": channel, "channel_name": channel_name, "rule": index}
        try:
            return Parsed(alerts=[_chat_alert(rule, match, raw)])
        except _Bad as bad:
            return _rejected(CHAT, f"rule {index} ({rule.channel}): {bad}", raw)
    return Parsed()


def _chat_alert(rule: ChatRule, match: re.Match[str], raw: dict[str, Any]) -> Alert:
    groups = {name: value for name, value in match.groupdict().items() if value is not None}
    labels = {
        name: value for name, value in groups.items() if name not in _CHAT_SPECIAL_GROUPS
    } | rule.labels
    if not labels:
        raise _Bad("the match gave no labels (add named groups or constant labels)")
    annotations = {"message": raw["text"]} | {
        name: groups[name] for name in ("summary", "description") if name in groups
    }
    return Alert(
        source=CHAT,
        fingerprint=_chat_fingerprint(rule, groups, labels),
        status=_chat_status(rule, groups),
        labels=labels,
        annotations=annotations,
        severity=labels.get("severity"),
        raw=raw,
    )


def _chat_status(rule: ChatRule, groups: dict[str, str]) -> Status:
    if rule.status is not None:
        return rule.status
    if "status" not in rule.regex.groupindex:
        return "firing"
    return _mapped_status(
        groups.get("status"),
        "in the pattern's 'status' group",
        rule.firing_values,
        rule.resolved_values,
    )


def _chat_fingerprint(rule: ChatRule, groups: dict[str, str], labels: dict[str, str]) -> str:
    if rule.fingerprint is None:
        return stable_fingerprint(CHAT, labels)
    values = dict.fromkeys(rule.regex.groupindex, "") | groups | rule.labels
    try:
        return rule.fingerprint.format_map(values)
    except (KeyError, IndexError, AttributeError, ValueError) as err:
        raise _Bad(f"fingerprint {rule.fingerprint!r} cannot be filled: {err!r}") from None
