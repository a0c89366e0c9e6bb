"""Access rules: who may run, schedule, retry or cancel which playbook, and from where.

The rules are data, read once from the YAML file that ``BATON_CONFIG`` names; one pure
function, ``authorize``, decides. With ``BATON_CONFIG`` unset (or a file without rules)
every member may run every playbook. The file::

    groups:                     # Baton-defined groups; members are user ids (Slack U…/W…
      sre: [U01AAA, U01BBB, alice]   # ids, or console/CLI login names) or Slack user
      dba: ["@dba-team", S0DBA]      # groups (by @handle or S… id): their members are in
    access:
      default: deny             # when no rule matches: allow | deny.
                                # Unset: deny if any rule exists, else allow
      rules:                    # the first rule whose playbooks (and actions) match decides
        - playbooks: "restart-*"          # a glob or a list of globs (fnmatch, case-sensitive)
          users: [U01AAA]                 # who may: any of users / usergroups / groups;
          usergroups: ["@sre-oncall", S0123]   # none of the three given = anyone
          groups: [sre]
          channels: ["#ops", C0OPS, console, cli]  # from where; absent = anywhere. `console`
                                                   # and `cli` name Baton's own front ends
          actions: [run, schedule]        # optional; default: every action below
        - playbooks: "*"

How the rules read:

- The rules govern the actions ``run``, ``schedule``, ``unschedule``, ``retry`` and
  ``cancel``. Everything else (help, playbooks, describe, status, history, schedules,
  ``run --dry-run``) only reads and is always allowed.
- The first rule whose ``playbooks`` glob matches the playbook and whose ``actions``
  include the action decides. A matching rule that does not admit the asker refuses; it
  does not fall through to later rules. No matching rule: ``default`` decides.
- ``users`` are compared exactly. ``usergroups`` entries are S… ids (exact) or handles
  (case-insensitive, the ``@`` optional). In ``groups`` a handle needs its ``@``; any
  other member is a user id or an S… id.
- A key left out does not restrict; an empty list admits nobody: ``users: []`` (with no
  other principal) or ``channels: []`` make a rule that refuses everyone.
- ``channels`` entries are channel ids (``C0OPS``, exact) or names (``#ops`` or ``ops``,
  case-insensitive; quote ``"#ops"`` in YAML). The bare words ``console`` and ``cli``
  name Baton's own front ends; a Slack channel called #console is ``"#console"``.
- ``users`` and ``console_as`` name people, their tokens and roles (``engine.access.people``):
  a rule, group or approver list that names a person's name or Slack id names them by
  either, and a person's ``groups`` count like membership under ``groups:``.
- Other top-level sections are refused as typos, except ``inventory`` (read by
  ``engine.fleet.sources``), ``approvals``, ``alerts`` and ``slack``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from engine.access import people as peoplelib
from engine.errors import BatonError, NotAllowed, Problem

ACTIONS: tuple[str, ...] = ("run", "schedule", "unschedule", "retry", "cancel")
FRONT_ENDS: tuple[str, ...] = ("console", "cli")
RESERVED_SECTIONS: tuple[str, ...] = ("approvals", "alerts", "slack")

Default = Literal["allow", "deny"]

_PARTICIPLES = {
    "run": "run",
    "schedule": "scheduled",
    "unschedule": "unscheduled",
    "retry": "retried",
    "cancel": "cancelled",
}
_FRONT_END_NAMES = {"console": "the console", "cli": "the CLI"}


class ConfigError(BatonError):
    """The config file is missing or wrong; ``problems`` point at file:line."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        super().__init__(message)

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> ConfigError:
        return cls("\n".join(str(p) for p in problems), problems)


# --- who and where ---------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who asks: stable id (Slack user id, login name), display name, the front end
    (``console``, ``slack``, ``cli``, ``api``, ...), and the Slack user groups they belong
    to (ids and @handles, resolved by the Slack front end; empty elsewhere)."""

    id: str
    name: str = ""
    via: str = "console"
    usergroups: frozenset[str] = frozenset()

    @property
    def shown(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Place:
    """Where a command came from: a channel id and/or name (``C0OPS``, ``ops``), or one of
    Baton's own front ends (``console``, ``cli``) as the name with no id."""

    channel_id: str | None = None
    channel_name: str | None = None

    @property
    def front_end(self) -> str | None:
        """``console`` or ``cli`` when the command came through that front end."""
        name = (self.channel_name or "").lower()
        return name if self.channel_id is None and name in FRONT_ENDS else None


CONSOLE = Place(channel_name="console")
CLI = Place(channel_name="cli")


def is_usergroup(member: str) -> bool:
    """A Slack user group as rules and groups name one: an @handle or an S… id."""
    return member.startswith("@") or (member[:1] == "S" and member.isupper())


def plain(token: str) -> str:
    """Render a user, user group or channel as written in the config."""
    return token


# --- rules -----------------------------------------------------------------------------


def _looks_like_id(token: str) -> bool:
    return token.isupper()


def _usergroup_ids(actor: Actor) -> frozenset[str]:
    return frozenset(g for g in actor.usergroups if not g.startswith("@"))


def _usergroup_handles(actor: Actor) -> frozenset[str]:
    return frozenset(g[1:].lower() for g in actor.usergroups if g.startswith("@"))


def _in_usergroup(actor: Actor, entry: str) -> bool:
    """``entry`` from a rule's ``usergroups``: an S… id, or a handle with or without ``@``."""
    if entry.startswith("@"):
        return entry[1:].lower() in _usergroup_handles(actor)
    return entry in _usergroup_ids(actor) or entry.lower() in _usergroup_handles(actor)


def _is_member(actor: Actor, ids: frozenset[str], member: str) -> bool:
    """``member`` of a Baton group: an @handle, or else one of the actor's ``ids`` or a
    user group id."""
    if member.startswith("@"):
        return member[1:].lower() in _usergroup_handles(actor)
    return member in ids or member in _usergroup_ids(actor)


def _at(place: Place, entry: str) -> bool:
    if entry.lower() in FRONT_ENDS:
        return place.front_end == entry.lower()
    if place.front_end is not None:
        return False
    if entry == place.channel_id:
        return True
    name = entry.removeprefix("#").lower()
    return place.channel_name is not None and place.channel_name.lstrip("#").lower() == name


def _either(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


@dataclass(frozen=True)
class Rule:
    """One rule as written. A principal or channel list is ``None`` when the key was left
    out (no restriction) and ``()`` when it was given empty (nobody, nowhere)."""

    playbooks: tuple[str, ...]
    users: tuple[str, ...] | None = None
    usergroups: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    actions: tuple[str, ...] = ACTIONS
    origin: str = ""
    """Where the rule is written (``file:line``), for logs and refusals."""

    def covers(self, action: str, playbook: str) -> bool:
        return action in self.actions and any(
            fnmatch.fnmatchcase(playbook, glob) for glob in self.playbooks
        )

    @property
    def names_principals(self) -> bool:
        return any(p is not None for p in (self.users, self.usergroups, self.groups))

    def admits(
        self, actor: Actor, actor_groups: frozenset[str], ids: frozenset[str] = frozenset()
    ) -> bool:
        """Whether the rule lets ``actor`` (in Baton groups ``actor_groups``, also known
        by ``ids``) through."""
        if not self.names_principals:
            return True
        return (
            not (ids | {actor.id}).isdisjoint(self.users or ())
            or any(_in_usergroup(actor, g) for g in self.usergroups or ())
            or not actor_groups.isdisjoint(self.groups or ())
        )

    def admits_place(self, place: Place) -> bool:
        return self.channels is None or any(_at(place, entry) for entry in self.channels)

    def who(self, mention: Callable[[str], str] = plain) -> list[str] | None:
        """The principals as shown to people; ``None`` for anyone, ``[]`` for nobody."""
        if not self.names_principals:
            return None
        handles = [
            g if g.startswith("@") or _looks_like_id(g) else f"@{g}" for g in self.usergroups or ()
        ]
        return [
            *(mention(g) for g in handles),
            *(mention(u) for u in self.users or ()),
            *(f"group {g}" for g in self.groups or ()),
        ]

    def where(self, mention: Callable[[str], str] = plain) -> list[str] | None:
        """The channels as shown to people; ``None`` for anywhere, ``[]`` for nowhere."""
        if self.channels is None:
            return None
        shown = []
        for entry in self.channels:
            if entry.lower() in FRONT_ENDS:
                shown.append(_FRONT_END_NAMES[entry.lower()])
            elif entry.startswith("#") or _looks_like_id(entry):
                shown.append(mention(entry))
            else:
                shown.append(mention(f"#{entry}"))
        return shown


@dataclass(frozen=True)
class AccessRules:
    """The rules and groups of one config file; immutable, loaded once at start-up."""

    rules: tuple[Rule, ...] = ()
    groups: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    default: Default = "allow"
    source: str | None = None
    people: peoplelib.People = field(default_factory=peoplelib.People)

    @property
    def open(self) -> bool:
        """True when there are no rules: everyone may do everything."""
        return not self.rules and self.default == "allow"

    def ids_of(self, actor: Actor) -> frozenset[str]:
        """Every id ``actor`` goes by: theirs, and their person's name and Slack id."""
        return self.people.ids_of(actor.id)

    def groups_of(self, actor: Actor) -> frozenset[str]:
        """The Baton groups ``actor`` is in: by id or through a Slack user group under
        ``groups:``, and their person's own ``groups``."""
        ids = self.ids_of(actor)
        person = self.people.find(actor.id)
        return frozenset(
            name
            for name, members in self.groups.items()
            if any(_is_member(actor, ids, m) for m in members)
        ) | (person.groups if person is not None else frozenset())

    def approver_groups(self) -> Mapping[str, frozenset[str]]:
        """Every Baton group with its members, as an approval's ``groups`` names them:
        those under ``groups:`` and those people name in their own ``groups`` (by name)."""
        found = {name: set(members) for name, members in self.groups.items()}
        for person in self.people.people.values():
            for group in person.groups:
                found.setdefault(group, set()).add(person.name)
        return MappingProxyType({name: frozenset(m) for name, m in found.items()})

    def names_usergroups(self, groups: Iterable[str] | None = None) -> bool:
        """Whether deciding needs an asker's Slack user groups: a rule names one, or one
        of ``groups`` (default: every group) has one as a member. Without, no lookup."""
        if groups is None and any(rule.usergroups for rule in self.rules):
            return True
        names = self.groups if groups is None else groups
        return any(is_usergroup(m) for name in names for m in self.groups.get(name, ()))

    def summary(self) -> str:
        """One line for the start-up log."""
        if self.open:
            return "no access rules: every member may run every playbook"
        count = f"{len(self.rules)} rule{'' if len(self.rules) == 1 else 's'}"
        groups = f", groups: {', '.join(self.groups)}" if self.groups else ""
        return f"access rules from {self.source}: {count}, default {self.default}{groups}"


@dataclass(frozen=True)
class Decision:
    """The answer of ``authorize``. ``rule`` is the rule that decided; ``None`` when the
    default did, the rules are open, or the action only reads."""

    allowed: bool
    action: str
    playbook: str
    rule: Rule | None
    person: peoplelib.Person | None = None
    """Set when the person's role decided (a viewer refused, an admin let through)."""

    def refusal(self, mention: Callable[[str], str] = plain) -> str:
        """Who may do this and from where, for the person who was refused. ``mention``
        renders one user, user group or channel token for the front end."""
        action, name = self.action, f"`{self.playbook}`"
        if self.person is not None:
            person = self.person.name
            if self.allowed:
                return f"{person} is an admin and may {action} {name}"
            return (
                f"{person} is a viewer (users.{person}.role at {self.person.origin}) and may "
                f"only read, not {action}: an operator or admin role lets them act"
            )
        if self.rule is None:
            if self.allowed:
                return f"anyone may {action} {name}"
            return f"nobody may {action} {name} (no access rule allows it; default deny)"
        who, where = self.rule.who(mention), self.rule.where(mention)
        if who == [] or where == []:
            return f"nobody may {action} {name} (access rule at {self.rule.origin})"
        done = f"{name} can be {_PARTICIPLES.get(action, action)} by"
        if who is None:
            return f"{done} anyone" + (f", but only from {_either(where)}" if where else "")
        return f"{done} {_either(who)}" + (f", from {_either(where)}" if where else "")


def may_approve(rules: AccessRules, actor: Actor, approvers: Mapping[str, Any]) -> bool:
    """Whether ``actor`` is one of an approval step's ``approvers`` (``users``,
    ``usergroups``, Baton ``groups``); a step that names nobody lets anyone decide
    (the self-approval rule is the engine's). A viewer decides nothing."""
    person = rules.people.find(actor.id)
    if person is not None and person.role == "viewer":
        return False
    users = approvers.get("users") or []
    usergroups = approvers.get("usergroups") or []
    groups = approvers.get("groups") or []
    if not (users or usergroups or groups):
        return True
    if not rules.ids_of(actor).isdisjoint(users) or any(
        _in_usergroup(actor, g) for g in usergroups
    ):
        return True
    return bool(set(groups) & rules.groups_of(actor))


class Refused(NotAllowed):
    """``authorize`` said no: the message says who may, in plain words; ``decision`` lets
    a front end say it in its own markup (mentions in Slack)."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(decision.refusal())


def authorize(
    rules: AccessRules,
    actor: Actor,
    action: str,
    playbook: str,
    place: Place,
    *,
    own: bool = False,
) -> Decision:
    """Whether ``actor`` may do ``action`` to ``playbook`` from ``place``.

    A person's role comes first: a viewer may only read, an admin may do everything.
    Then actions outside ``ACTIONS`` (reads; approve and reject, whose approvers the
    engine checks) are allowed, and so is cancelling one's ``own`` run. Otherwise the
    first rule covering the playbook and action decides, else the default."""
    person = rules.people.find(actor.id)
    if person is not None and action in (*ACTIONS, *peoplelib.DECISIONS):
        if person.role == "viewer":
            return Decision(False, action, playbook, None, person)
        if person.role == "admin":
            return Decision(True, action, playbook, None, person)
    if action not in ACTIONS or (own and action == "cancel"):
        return Decision(True, action, playbook, None)
    for rule in rules.rules:
        if rule.covers(action, playbook):
            admitted = rule.admits(actor, rules.groups_of(actor), rules.ids_of(actor))
            return Decision(admitted and rule.admits_place(place), action, playbook, rule)
    return Decision(rules.default == "allow", action, playbook, None)


# --- the file format -------------------------------------------------------------------
