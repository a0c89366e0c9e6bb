"""People: who Baton knows by name, with their own API tokens, Slack ids, groups and roles.

Two sections of the ``BATON_CONFIG`` file, next to the access rules::

    users:
      alice:
        token_sha256: 9f86d081884c7d65...  # printf %s "$TOKEN" | sha256sum (64 hex digits)
        slack: U01AAA                      # her Slack user id: in chat she is alice
        groups: [sre]                      # Baton groups she is in (besides `groups:`)
        role: operator                     # viewer | operator (default) | admin
    console_as: [admins, bob]              # who may use `--as` on the command line

How they read:

- A person is known by name (their console/CLI login name and the name the API records)
  and, when ``slack`` is given, by that Slack id. Either one finds the same person: the
  rules, approver lists and groups that name one name the other too, and whoever started
  a run cannot approve it under the other name.
- Roles: a ``viewer`` only reads (run, schedule, unschedule, retry, cancel, approve and
  reject are refused); an ``operator`` acts where the access rules let them; an
  ``admin`` passes every access rule and may use ``--as``. An approval gate's own
  ``approvers`` and its no-self-approval rule still bind an admin: they are the
  playbook's four-eyes check, not an access rule.
- ``token_sha256`` is the SHA-256 of the person's API token, as hex: Baton keeps no
  token itself. A person without one is known in chat and on the command line only.
- ``console_as`` names groups or users (login names, person names, Slack ids). Without
  it nobody may use ``--as`` (as somebody else) once the file has rules or people.

A file with a bad entry (a hash that is not 64 hex digits, an unknown role, a token or
Slack id given to two people) stops Baton at start with the file, line and fix.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from engine.errors import Problem, closest
from engine.playbooks import model as playbook

if TYPE_CHECKING:
    from engine.access.rules import AccessRules

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[str, ...] = get_args(Role)
KEYS: tuple[str, ...] = ("token_sha256", "slack", "groups", "role")
SLACK_ID = re.compile(r"[UW][A-Z0-9]{2,}")
"""A Slack user id (``U01AAA``; ``W...`` on Enterprise Grid)."""
DECISIONS: tuple[str, ...] = ("approve", "reject")
MAKE_HASH = 'printf %s "$TOKEN" | sha256sum'
_HEX = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Person:
    name: str
    token_sha256: str | None = None
    slack: str | None = None
    groups: frozenset[str] = frozenset()
    role: Role = "operator"
    origin: str = ""
    """Where the person is written (``file:line``), for refusals."""

    @property
    def ids(self) -> frozenset[str]:
        """Every id this person goes by: the name, and the Slack id when given."""
        return frozenset(i for i in (self.name, self.slack) if i)


@dataclass(frozen=True)
class People:
    """The ``users`` and ``console_as`` sections of one config file."""

    people: Mapping[str, Person] = field(default_factory=lambda: MappingProxyType({}))
    console_as: tuple[str, ...] | None = None
    """Who may use ``--as``; ``None`` when the section is absent."""

    def __bool__(self) -> bool:
        return bool(self.people)

    @property
    def tokens(self) -> bool:
        """Whether anyone has an API token."""
        return any(p.token_sha256 for p in self.people.values())

    def find(self, user_id: str) -> Person | None:
        """The person whose name or Slack id is ``user_id``."""
        found = self.people.get(user_id)
        if found is not None:
            return found
        return next((p for p in self.people.values() if p.slack == user_id), None)

    def by_token(self, token: str) -> Person | None:
        """The person whose token this is. Every hash is compared, in constant time, so
        the answer's timing tells nothing about which (or whether) a hash matched."""
        digest = hashlib.sha256(token.encode()).hexdigest().encode()
        found = None
        for person in self.people.values():
            expected = (person.token_sha256 or "").encode()
            if hmac.compare_digest(digest, expected) and person.token_sha256:
                found = person
        return found

    def ids_of(self, user_id: str) -> frozenset[str]:
        """``user_id`` and the other ids of the person it names."""
        person = self.find(user_id)
        return frozenset({user_id}) | (person.ids if person is not None else frozenset())

    def same(self, a: str, b: str) -> bool:
        """Whether two ids name one person (or are equal)."""
        return a == b or b in self.ids_of(a)


def may_act_as(rules: AccessRules, me: str, other: str) -> str | None:
    """Why login ``me`` may not use ``--as other`` (None: they may). Acting as oneself
    is always fine; so is anything when the file has neither rules nor people. Else
    ``me`` must be named in ``console_as`` (directly, by a group, or by their person's
    name or Slack id), or be an admin."""
    if other == me or (rules.open and not rules.people):
        return None
    from engine.access.rules import Actor

    actor = Actor(me, via="cli")
    person = rules.people.find(me)
    allowed = rules.people.console_as or ()
    if person is not None and person.role == "admin":
        return None
    if not rules.ids_of(actor).isdisjoint(allowed) or not rules.groups_of(actor).isdisjoint(
        allowed
    ):
        return None
    named = ", ".join(allowed) if allowed else "nobody: the key is not there"
    return (
        f"--as {other} is refused: {me} may not act as someone else. BATON_CONFIG "
        f"({rules.source}) allows --as only for the users and groups in `console_as:` "
        f"(now {named}); add {me} or one of their groups there, or leave --as out"
    )


def build(
    users: Any, console_as: Any, lines: playbook.Lines, source: str
) -> tuple[People, list[Problem]]:
    """The people of a file's ``users`` and ``console_as`` sections (raw YAML data), and
    the problems found, each at its line."""
    problems: list[Problem] = []

    def problem(loc: tuple[Any, ...], message: str) -> None:
        where = ".".join(str(p) for p in loc)
        problems.append(Problem(source, playbook.line_of(lines, loc), f"{where}: {message}"))

    people: dict[str, Person] = {}
    if users is not None and not isinstance(users, dict):
        problem(("users",), f"`users` maps each person's name to {{{', '.join(KEYS)}}}")
        users = {}
    tokens: dict[str, str] = {}
    slack_ids: dict[str, str] = {}
    for name, spec in (users or {}).items():
        name = str(name)
        at = ("users", name)
        if not name.strip() or name in ("None", "null"):
            problem(at, "a person needs a name (the key of their entry)")
            continue
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            problem(at, f"a person is a mapping of {', '.join(KEYS)}")
            continue
        for key in spec:
            if key not in KEYS:
                near = closest(str(key), KEYS, n=1)
                hint = f"did you mean `{near[0]}`? " if near else ""
                problem((*at, key), f"unknown key; {hint}Known keys here: {', '.join(KEYS)}")
        digest = _token(spec.get("token_sha256"), (*at, "token_sha256"), problem)
        if digest is not None:
            if digest in tokens:
                problem(
                    (*at, "token_sha256"),
                    f"the same token as {tokens[digest]}: give each person their own token",
                )
            tokens.setdefault(digest, name)
        slack = spec.get("slack")
        if slack is not None and (not isinstance(slack, str) or not SLACK_ID.fullmatch(slack)):
            # a name here would make this person the one so named, everywhere
            problem((*at, "slack"), f"{slack!r} is not a Slack user id (such as U01AAA)")
            slack = None
        if slack is not None:
            if slack in slack_ids:
                problem((*at, "slack"), f"{slack} is {slack_ids[slack]}'s Slack id already")
            slack_ids.setdefault(slack, name)
        groups = spec.get("groups") or []
        groups = [groups] if isinstance(groups, str) else groups
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            problem((*at, "groups"), "a list of Baton group names")
            groups = []
        role = spec.get("role", "operator")
        if role not in ROLES:
            near = closest(str(role), ROLES, n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            problem((*at, "role"), f"unknown role {role!r}; {hint}roles are {', '.join(ROLES)}")
            role = "viewer"  # not used: the file is refused
        line = playbook.line_of(lines, at)
        people[name] = Person(
            name=name,
            token_sha256=digest,
            slack=slack,
            groups=frozenset(groups),
            role=role,
            origin=f"{source}:{line}" if line else source,
        )
    allowed: tuple[str, ...] | None = None
    if console_as is not None:
        entries = [console_as] if isinstance(console_as, str) else console_as
        if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
            problem(("console_as",), "a list of group or user names who may use --as")
        else:
            allowed = tuple(entries)
    return People(MappingProxyType(people), allowed), problems


def _token(value: Any, loc: tuple[Any, ...], problem: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        problem(
            loc,
            "not a SHA-256 hash (64 hex digits): put the hash of the person's token here, "
            f"never the token itself; make it with `{MAKE_HASH}`",
        )
        return None
    return value.lower()
