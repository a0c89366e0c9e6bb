"""The inventory: the hosts Baton acts on, read from Ansible inventory files.

``load(paths)`` reads YAML and INI files (``engine.fleet.sources``) and builds an
immutable ``Inventory``: every host with its vars merged as Ansible merges them (the
``all`` group first, then parent groups before their children, groups of one depth by
name or ``ansible_group_priority``, the host's own vars last) and made into a
``engine.fleet.hosts.Host``. ``from_config`` reads the one ``BATON_CONFIG`` names.

A Baton process has one inventory at a time, as it has one template budget
(``engine.playbooks.sandbox.configure``): ``activate`` sets it at start-up and on a reload, and
``host`` (the steps' ``ActionContext.hosts``) and the template globals ``hosts`` and
``hostvars`` read the active one. A reload swaps the whole object, so a step or a render
sees one inventory, never half of two.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.errors import BatonError, Problem, closest
from engine.fleet import patterns, sources
from engine.fleet.draft import ALL, UNGROUPED, Draft, InventoryError
from engine.fleet.hosts import Host
from engine.fleet.precedence import Layout, merged_vars
from engine.playbooks import sandbox

MAX_HOSTS = 100_000
"""The most hosts an inventory may hold."""
_MATCH_CACHE = 256
_CACHED_CHARS = 200  # longer patterns are matched each time, not kept
_SHOWN_GROUPS = 20
_NEAR = 0.75  # a suggestion closer than difflib's usual 0.6: `nosuchgroup` is not `ungrouped`

__all__ = [
    "Inventory",
    "InventoryError",
    "NoHosts",
    "activate",
    "active",
    "from_config",
    "host",
    "load",
]


class NoHosts(BatonError):
    """A pattern or a name that names no host; the message lists what there is."""


class Inventory:
    """Hosts (in inventory order) and groups (each with all its hosts, children's too)."""

    def __init__(
        self,
        hosts: Mapping[str, Host] | None = None,
        groups: Mapping[str, frozenset[str]] | None = None,
        host_groups: Mapping[str, tuple[str, ...]] | None = None,
        sources: Sequence[str] = (),
    ) -> None:
        self.hosts: Mapping[str, Host] = MappingProxyType(dict(hosts or {}))
        self.groups: Mapping[str, frozenset[str]] = MappingProxyType(
            dict(groups or {ALL: frozenset(), UNGROUPED: frozenset()})
        )
        self._host_groups = dict(host_groups or {})
        self.sources = tuple(sources)
        self._matches: dict[str, list[str]] = {}
        self._vars: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.hosts)

    def host(self, name: str) -> Host | None:
        """The host called ``name``, or None (what ``ActionContext.hosts`` asks)."""
        return self.hosts.get(name)

    def groups_of(self, name: str) -> tuple[str, ...]:
        """The groups ``name`` is in, every ancestor too but ``all``, sorted (Ansible's
        ``group_names``)."""
        return self._host_groups.get(name, ())

    def match(self, pattern: str) -> list[str]:
        """The names of the hosts ``pattern`` names (``engine.fleet.patterns``), in
        inventory order; PatternError when it does not read."""
        found = self._matches.get(pattern)
        if found is None:
            found = patterns.match(pattern, self.hosts, self.groups)
            if len(pattern) <= _CACHED_CHARS:
                if len(self._matches) >= _MATCH_CACHE:
                    self._matches.clear()
                self._matches[pattern] = found
        return list(found)

    def no_match(self, pattern: str) -> str:
        """Why ``pattern`` names no host, with what there is to name."""
        if not self.hosts:
            return (
                f"no host matches {pattern!r}: no inventory is loaded "
                "(set `inventory:` in BATON_CONFIG)"
            )
        names = [g for g in self.groups if g not in (ALL, UNGROUPED)] + [ALL]
        names += [UNGROUPED] if self.groups.get(UNGROUPED) else []
        shown = ", ".join(names[:_SHOWN_GROUPS]) + (", ..." if len(names) > _SHOWN_GROUPS else "")
        near = difflib.get_close_matches(pattern, [*self.groups, *self.hosts], 1, _NEAR)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"no host matches {pattern!r} (groups: {shown}){hint}"

    def vars_of(self, name: str) -> dict[str, Any]:
        """What ``hostvars[name]`` gives: the host's merged vars plus Ansible's magic
        ones (``inventory_hostname``, ``ansible_host``, ``group_names``...)."""
        known = self._vars.get(name)
        if known is not None:
            return known
        found = self.hosts.get(name)
        if found is None:
            near = closest(name, self.hosts, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise NoHosts(f"hostvars: no host {name!r} in the inventory{hint}")
        made = {
            **found.vars,
            "inventory_hostname": name,
            "inventory_hostname_short": name.split(".", 1)[0],
            "group_names": list(self.groups_of(name)),
            "ansible_host": found.address,
        }
        self._vars[name] = made
        return made

    def summary(self) -> str:
        """One line for the start-up log."""
        if not self.sources:
            return "no inventory (set `inventory:` in BATON_CONFIG to name hosts)"
        groups = len([g for g in self.groups if g not in (ALL, UNGROUPED)])
        return (
            f"inventory from {', '.join(self.sources)}: {len(self.hosts)} host(s) "
            f"in {groups} group(s)"
        )


_MAPPING_METHODS = frozenset({"get", "keys", "items", "values"})


class HostVars(Mapping[str, dict[str, Any]]):
    """``hostvars`` in templates: host name -> its vars, from the active inventory; an
    unknown name fails the render naming it (never an empty value)."""

    def __init__(self, inventory: Callable[[], Inventory]) -> None:
        self._inventory = inventory

    def __getitem__(self, name: str) -> dict[str, Any]:
        fleet = self._inventory()
        if name in _MAPPING_METHODS and name not in fleet.hosts:
            raise KeyError(name)  # not a host: ``hostvars.get(...)`` is the method
        return fleet.vars_of(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._inventory().hosts

    def get(self, name: str, default: Any = None) -> Any:
        return self._inventory().vars_of(name) if name in self else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._inventory().hosts)

    def __len__(self) -> int:
        return len(self._inventory())


def build(draft: Draft, files: Sequence[str]) -> Inventory:
    """The inventory ``draft`` describes; InventoryError with every problem found."""
    problems = list(draft.problems)
    if len(draft.hosts) > MAX_HOSTS:
        problems.append(
            Problem(
                files[-1] if files else "inventory",
                None,
                f"more than {MAX_HOSTS:,} hosts: split the fleet across Baton instances",
            )
        )
    layout = Layout.of(draft, problems)
    hosts: dict[str, Host] = {}
    for name, spec in draft.hosts.items():
        made = merged_vars(draft, layout, spec, problems)
        if made is not None:
            hosts[name] = made
    if problems:  # a group's bad var is one problem, however many hosts it reaches
        unique = list(dict.fromkeys(problems))
        raise InventoryError(sorted(unique, key=lambda p: (p.file, p.line or 0)))
    return Inventory(hosts, layout.members, layout.group_names, files)


def load(paths: Sequence[Path]) -> Inventory:
    """Read and build the inventory of ``paths`` (files and folders, merged in order)."""
    draft, files = sources.read(paths)
    return build(draft, files)


def from_config(config: Path | None) -> Inventory:
    """The inventory ``BATON_CONFIG`` names under ``inventory:``; empty without one."""
    paths = sources.configured(config)
    return Inventory() if paths is None else load(paths)


_active = Inventory()


def activate(inventory: Inventory) -> None:
    """Make ``inventory`` the one steps and templates see (at start-up, on a reload)."""
    global _active
    _active = inventory


def active() -> Inventory:
    return _active


def host(name: str) -> Host | None:
    """The active inventory's host ``name`` (``ActionContext.hosts``)."""
    return _active.host(name)


def _hosts(pattern: str) -> list[str]:
    """``hosts('web:&prod')`` in templates: the names, in inventory order; a pattern
    naming no host fails the render (a loop over nothing would hide a typo)."""
    if not isinstance(pattern, str):
        raise NoHosts(f"hosts() takes a pattern as text (hosts('web')), not {pattern!r}")
    fleet = _active  # one inventory for the whole call, even across a reload
    sandbox.charge(patterns.work(pattern, len(fleet)))  # charged before the work is done
    found = fleet.match(pattern)
    sandbox.charge(len(found))  # the list is as much work as its hosts
    if not found:
        raise NoHosts(fleet.no_match(pattern))
    return found


def template_globals() -> dict[str, Any]:
    """What ``engine.playbooks.templating`` adds to every template: ``hosts`` and ``hostvars``."""
    return {"hosts": _hosts, "hostvars": HostVars(active)}
