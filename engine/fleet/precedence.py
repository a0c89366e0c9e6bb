"""How groups nest, and whose var wins: Ansible's rules, applied to a ``Draft``.

- Every group is under ``all``; a group no file lists as a child is a child of ``all``.
  A host in no group but ``all`` is also in ``ungrouped``.
- A group's depth is its longest path from ``all`` (``all`` 0, its children 1...).
- A host's vars: its groups' vars merged from the shallowest group to the deepest (a
  child overrides its parent), groups of one depth by ``ansible_group_priority`` (default
  1, higher wins) then by name; the host's own vars win over every group's.
- Children that loop (``a`` under ``b`` under ``a``) are a problem at the line that
  closes the loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from engine.errors import Problem, closest
from engine.fleet.draft import ALL, UNGROUPED, Draft, HostDraft, Where
from engine.fleet.hosts import Host

_PORT = "ansible_port"
_ADDRESS = ("ansible_host", "ansible_ssh_host")
_USER = ("ansible_user", "ansible_ssh_user")
_KEY = "ansible_ssh_private_key_file"


@dataclass(frozen=True)
class Layout:
    """Groups in precedence order, each with all its hosts, and each host's groups."""

    order: dict[str, tuple[int, int, str]]  # group -> sort key: depth, priority, name
    members: dict[str, frozenset[str]]
    group_names: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, draft: Draft, problems: list[Problem]) -> Layout:
        draft.group(ALL, Where("inventory", None))
        _undeclared(draft, problems)
        parents: dict[str, list[str]] = {name: [] for name in draft.groups}
        for group in draft.groups.values():
            for child in group.children:
                parents[child].append(group.name)
        for name, above in parents.items():
            if name != ALL and not above:
                above.append(ALL)
        depth = _depths(draft, parents, problems)
        members = _members(draft, depth)
        grouped: set[str] = set()
        for name, inside in members.items():
            if name not in (ALL, UNGROUPED):
                grouped |= inside
        ungrouped = members[ALL] - grouped
        members[UNGROUPED] = members.get(UNGROUPED, frozenset()) | ungrouped
        members = {name: members[name] for name in (*draft.groups, UNGROUPED)}  # file order
        depth.setdefault(UNGROUPED, 1)
        found: dict[str, set[str]] = {name: set() for name in draft.hosts}
        for name, inside in members.items():
            if name != ALL:
                for host in inside:
                    found[host].add(name)
        order = {name: (level, _priority(draft, name), name) for name, level in depth.items()}
        return cls(order, members, {h: tuple(sorted(g)) for h, g in found.items()})


def _undeclared(draft: Draft, problems: list[Problem]) -> None:
    """An INI ``[g:vars]`` for a group no file defines is most likely a typo."""
    defined = [g.name for g in draft.groups.values() if g.declared]
    for group in draft.groups.values():
        if not group.declared:
            near = closest(group.name, defined, n=1)
            hint = f"did you mean [{near[0]}:vars]? " if near else ""
            problems.append(
                group.where.problem(
                    f"[{group.name}:vars] sets vars of a group no section defines; {hint}"
                    f"add a [{group.name}] section (it may be empty) or fix the name"
                )
            )


def _depths(
    draft: Draft, parents: Mapping[str, list[str]], problems: list[Problem]
) -> dict[str, int]:
    """Each group's longest path from ``all``, parents before children (Kahn's order);
    groups left over sit on a loop of children."""
    waiting = {name: len(set(above)) for name, above in parents.items()}
    depth = {ALL: 0}
    ready = deque(name for name, count in waiting.items() if count == 0)
    children = {name: list(dict.fromkeys(g.children)) for name, g in draft.groups.items()}
    for name, above in parents.items():
        if above == [ALL] and name not in draft.groups[ALL].children:
            children[ALL].append(name)
    while ready:
        name = ready.popleft()
        for child in children[name]:
            depth[child] = max(depth.get(child, 0), depth.get(name, 0) + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    looped = {name for name, count in waiting.items() if count > 0}
    closing = [edge for edge in draft.edges if _on_loop(edge, children, looped)]
    if closing:  # the last edge said closes the loop
        parent, child = closing[-1]
        problems.append(
            draft.edges[closing[-1]].problem(
                f"group {child} is a child of {parent}, which is already under "
                f"{child}: children may not loop; remove one of the two"
            )
        )
    for name in looped:
        depth.setdefault(name, 1)
    return depth


def _on_loop(edge: tuple[str, str], children: Mapping[str, list[str]], looped: set[str]) -> bool:
    """Whether ``parent -> child`` closes a loop: the parent is under the child."""
    parent, child = edge
    if parent not in looped or child not in looped:
        return False
    seen, todo = {child}, [child]
    while todo:
        for below in children[todo.pop()]:
            if below == parent:
                return True
            if below not in seen:
                seen.add(below)
                todo.append(below)
    return False


def _members(draft: Draft, depth: Mapping[str, int]) -> dict[str, frozenset[str]]:
    """Every group's hosts, its children's included (deepest groups first)."""
    members: dict[str, frozenset[str]] = {}
    for name in sorted(draft.groups, key=lambda g: -depth.get(g, 0)):
        group = draft.groups[name]
        found = set(group.hosts)
        for child in group.children:
            found |= members.get(child, frozenset())
        members[name] = frozenset(found)
    members[ALL] = frozenset(draft.hosts)
    return members


def _priority(draft: Draft, group: str) -> int:
    found = draft.groups.get(group)
    value = found.vars.get("ansible_group_priority", 1) if found else 1
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def merged_vars(
    draft: Draft, layout: Layout, spec: HostDraft, problems: list[Problem]
) -> Host | None:
    """``spec`` as a ``Host``, its groups' vars merged under its own; None (and a
    problem at the line that set the var) when a connection var does not read."""
    groups = sorted((ALL, *layout.group_names[spec.name]), key=lambda g: layout.order[g])
    merged: dict[str, Any] = {}
    origin: dict[str, tuple[str, Where]] = {}  # var -> (whose: "group web", where)
    for name in groups:
        group = draft.groups.get(name)
        if group is not None:
            merged.update(group.vars)
            origin.update({k: (f"group {name}", group.var_lines[k]) for k in group.vars})
    merged.update(spec.vars)
    origin.update({k: (f"host {spec.name}", spec.var_lines[k]) for k in spec.vars})
    bad = _bad_connection_var(merged)
    if bad is not None:
        key, fix = bad
        whose, where = origin[key]
        problems.append(where.problem(f"{whose}: {key} is {merged[key]!r}; {fix}"))
        return None
    port = merged.get(_PORT)
    return Host(
        name=spec.name,
        address=_first(merged, _ADDRESS) or spec.name,
        port=int(port) if port is not None else None,
        user=_first(merged, _USER),
        key_file=str(merged[_KEY]) if merged.get(_KEY) is not None else None,
        vars=MappingProxyType(merged),
    )


def _bad_connection_var(merged: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first var saying how to connect that does not read, and what to write."""
    port = merged.get(_PORT)
    if port is not None and not _is_port(port):
        return _PORT, "give a number from 1 to 65535"
    for key in (*_ADDRESS, *_USER, _KEY):
        value = merged.get(key)
        if value is not None and not isinstance(value, str | int):
            return key, "give it as text"
    return None


def _is_port(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return isinstance(value, int) and 1 <= value <= 65535


def _first(merged: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if merged.get(key) is not None:
            return str(merged[key])
    return None
