"""What the inventory files say, gathered before the inventory is built.

The YAML and INI readers (``engine.fleet.yamlfile``, ``engine.fleet.inifile``) both fill
one ``Draft``; several files fill the same one, in order, as Ansible merges them: groups
and hosts are unions, and a var set twice keeps the later value. ``engine.fleet.inventory``
then turns the draft into the inventory (depths, precedence, ``Host`` objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import BatonError, Problem

ALL = "all"
UNGROUPED = "ungrouped"


class InventoryError(BatonError):
    """An inventory that cannot be read; ``problems`` point at file and line."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Where:
    file: str
    line: int | None

    def problem(self, message: str) -> Problem:
        return Problem(self.file, self.line, message)


@dataclass
class GroupDraft:
    name: str
    where: Where
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    var_lines: dict[str, Where] = field(default_factory=dict)
    declared: bool = False
    """Defined by a section or a YAML group, not only named by an INI ``[g:vars]``."""


@dataclass
class HostDraft:
    name: str
    where: Where
    vars: dict[str, Any] = field(default_factory=dict)
    var_lines: dict[str, Where] = field(default_factory=dict)


class Draft:
    """Groups and hosts as the files name them, in the order they first appear."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupDraft] = {}
        self.hosts: dict[str, HostDraft] = {}
        self.edges: dict[tuple[str, str], Where] = {}  # (parent, child) -> where it was said
        self.problems: list[Problem] = []

    def group(self, name: str, where: Where, *, declared: bool = True) -> GroupDraft:
        found = self.groups.get(name)
        if found is None:
            found = self.groups[name] = GroupDraft(name, where)
        found.declared = found.declared or declared
        return found

    def add_host(
        self,
        name: str,
        where: Where,
        variables: Mapping[str, Any],
        group: str | None,
        var_lines: Mapping[str, Where] | None = None,
    ) -> None:
        """``name`` in ``group`` (None: only in ``all``), its vars merged over earlier ones."""
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostDraft(name, where)
        host.vars.update(variables)
        host.var_lines.update(var_lines or {key: where for key in variables})
        if group is not None:
            members = self.group(group, where).hosts
            if name not in members:
                members.append(name)

    def add_child(self, parent: str, child: str, where: Where) -> None:
        if parent == child:
            self.problems.append(where.problem(f"group {child} is listed as its own child"))
            return
        self.group(parent, where)
        self.group(child, where)
        children = self.groups[parent].children
        if child not in children:
            children.append(child)
        self.edges.setdefault((parent, child), where)

    def set_vars(
        self,
        group: str,
        where: Where,
        variables: Mapping[str, Any],
        var_lines: Mapping[str, Where] | None = None,
    ) -> None:
        found = self.group(group, where, declared=False)
        found.vars.update(variables)
        found.var_lines.update(var_lines or dict.fromkeys(variables, where))
