"""Reading ``BATON_CONFIG``'s access rules, groups and people (``load``, ``parse``):
the file's schema, its problems with their lines, and the names checked across keys.
What the rules decide is ``engine.access.rules``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from engine.access import people as peoplelib
from engine.access.rules import ACTIONS, RESERVED_SECTIONS, AccessRules, ConfigError, Default, Rule
from engine.errors import PlaybookInvalid, Problem, closest
from engine.playbooks import model as playbook
from engine.playbooks import yamldoc


def load(path: Path | None) -> AccessRules:
    """Read the file ``BATON_CONFIG`` names; ``None`` (unset) gives open rules."""
    if path is None:
        return AccessRules()
    if not path.exists():
        raise ConfigError(f"BATON_CONFIG points at {path}, which does not exist")
    try:
        text = yamldoc.read_text(path)  # a regular file of at most 1 MiB
    except PlaybookInvalid as exc:
        reason = "; ".join(p.message for p in exc.problems)
        raise ConfigError(f"BATON_CONFIG points at {path}: {reason}") from None
    return parse(text, str(path))


def parse(text: str, source: str = "<config>") -> AccessRules:
    try:
        data, lines = playbook.parse_yaml(text, source)
    except PlaybookInvalid as exc:
        raise ConfigError.of(exc.problems) from exc
    if data is None:
        return AccessRules(source=source)
    if not isinstance(data, dict):
        raise ConfigError.of(
            [Problem(source, 1, "the config file must be a mapping with `groups` and `access`")]
        )
    try:
        spec = _FileSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError.of([_problem(err, lines, source) for err in exc.errors()]) from exc
    return _build(spec, lines, source)


_EMPTY = {
    "playbooks": "give a glob or a list of globs",
    "actions": f"list some of {', '.join(ACTIONS)}, or leave the key out for all",
    "channels": "list channels, write [] for nowhere, or leave the key out for anywhere",
}
_EMPTY_PRINCIPALS = "list members, write [] to admit nobody, or leave the key out"


def _known_action(name: str) -> str:
    if name not in ACTIONS:
        near = closest(name, ACTIONS, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise ValueError(f"unknown action {name!r}; {hint}actions are {', '.join(ACTIONS)}")
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RuleSpec(_Model):
    playbooks: tuple[str, ...]
    users: tuple[str, ...] | None = None
    usergroups: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    actions: tuple[Annotated[str, AfterValidator(_known_action)], ...] | None = None

    @field_validator(
        "playbooks", "users", "usergroups", "groups", "channels", "actions", mode="before"
    )
    @classmethod
    def _one_or_many(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        if value is None or (value == [] and name in ("playbooks", "actions")):
            raise ValueError(f"`{name}` is empty: {_EMPTY.get(name, _EMPTY_PRINCIPALS)}")
        return [value] if isinstance(value, str) else value


class _AccessSpec(_Model):
    default: Default | None = None
    rules: tuple[_RuleSpec, ...] = ()

    @field_validator("rules", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class _FileSpec(_Model):
    groups: dict[str, tuple[str, ...]] = {}
    access: _AccessSpec | None = None
    users: Any = None  # engine.access.people reads these two
    console_as: Any = None
    inventory: Any = None  # engine.fleet.sources reads it
    approvals: Any = None
    alerts: Any = None
    slack: Any = None

    @field_validator("groups", mode="before")
    @classmethod
    def _members(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else (v or []) for k, v in value.items()}
        return value


_SECTIONS = ("groups", "access", "users", "console_as", "inventory")


_SHAPES: dict[tuple[Any, ...], str] = {
    ("groups",): "`groups` maps each group name to a list of members",
    ("access",): "`access` is a mapping with `default` and `rules`",
    ("access", "rules"): "`rules` is a list of rules, each starting `- playbooks: GLOB`",
}


def _known_keys(loc: tuple[Any, ...]) -> Iterable[str]:
    """The keys allowed where an unknown key ``loc`` was found."""
    if len(loc) == 1:
        return _SECTIONS
    if loc[0] == "access" and len(loc) == 2:
        return _AccessSpec.model_fields
    return _RuleSpec.model_fields


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(err: Any, lines: playbook.Lines, source: str) -> Problem:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        near = closest(key, _known_keys(loc), n=1)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        if len(loc) == 1:
            reserved = ", ".join(RESERVED_SECTIONS)
            msg = (
                f"unknown section{hint or '.'} Known sections: {', '.join(_SECTIONS)} "
                f"(and {reserved}, read elsewhere: `alerts.chat` holds the chat alert rules)"
            )
        else:
            known = ", ".join(_known_keys(loc))
            msg = f"unknown key{hint or '.'} Known keys here: {known}"
    elif err["type"] == "literal_error":
        msg = f"{msg}, not {err['input']!r}"
    elif err["type"] in ("dict_type", "tuple_type", "model_type") and loc in _SHAPES:
        msg = _SHAPES[loc]
    elif err["type"] == "model_type":
        msg = "a rule is a mapping: `playbooks` and optional " + ", ".join(
            k for k in _RuleSpec.model_fields if k != "playbooks"
        )
    elif err["type"] == "missing":
        msg = f"missing `{loc[-1]}`" + (
            ": every rule needs a glob or a list of globs" if loc[-1] == "playbooks" else ""
        )
        loc = loc[:-1]
    where = _loc_text(loc)
    return Problem(source, playbook.line_of(lines, loc), f"{where}: {msg}" if where else msg)


def _build(spec: _FileSpec, lines: playbook.Lines, source: str) -> AccessRules:
    """Turn a valid file into rules, checking what the schema cannot: names across keys."""
    groups = {name: frozenset(members) for name, members in spec.groups.items()}
    access = spec.access or _AccessSpec()
    people, problems = peoplelib.build(spec.users, spec.console_as, lines, source)
    known_groups = set(groups).union(*(p.groups for p in people.people.values()))

    def problem(loc: tuple[Any, ...], message: str) -> None:
        problems.append(
            Problem(source, playbook.line_of(lines, loc), f"{_loc_text(loc)}: {message}")
        )

    rules: list[Rule] = []
    for i, rs in enumerate(access.rules):
        at = ("access", "rules", i)
        for j, user in enumerate(rs.users or ()):
            if user.startswith("@"):
                problem(
                    (*at, "users", j), f"{user!r} is a Slack user group; list it under `usergroups`"
                )
        for j, group in enumerate(rs.groups or ()):
            if group not in known_groups:
                near = closest(group, known_groups, n=1)
                hint = f"did you mean {near[0]!r}?" if near else "define it under `groups:`"
                problem((*at, "groups", j), f"group {group!r} is not defined; {hint}")
        line = playbook.line_of(lines, at)
        rules.append(
            Rule(
                playbooks=rs.playbooks,
                users=rs.users,
                usergroups=rs.usergroups,
                groups=rs.groups,
                channels=rs.channels,
                actions=rs.actions or ACTIONS,
                origin=f"{source}:{line}" if line else source,
            )
        )
    if problems:
        raise ConfigError.of(sorted(problems, key=lambda p: p.line or 0))
    default: Default = access.default or ("deny" if rules else "allow")
    return AccessRules(tuple(rules), MappingProxyType(groups), default, source, people)
