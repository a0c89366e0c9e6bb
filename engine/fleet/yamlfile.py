"""Ansible's YAML inventory format, read into a ``Draft``::

    all:
      vars: {ansible_user: deploy}
      children:
        web:
          hosts:
            web[01:03].example.com:
            web-canary: {ansible_host: 10.0.0.9, ansible_port: 2222}
          vars: {http_port: 80}

Top-level keys are groups (usually just ``all``); a group holds ``hosts`` (name -> vars),
``children`` (name -> group) and ``vars``, nothing else. The file is read through
``engine.playbooks.yamldoc`` (1 MiB, aliases bounded, duplicate keys refused).
"""

from __future__ import annotations

from typing import Any

from engine.errors import PlaybookInvalid, closest
from engine.fleet import ranges
from engine.fleet.draft import Draft, Where
from engine.playbooks import yamldoc

GROUP_KEYS = ("hosts", "children", "vars")


class _Reader:
    def __init__(self, draft: Draft, file: str, lines: yamldoc.Lines) -> None:
        self.draft, self.file, self.lines = draft, file, lines

    def where(self, path: tuple[Any, ...]) -> Where:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return Where(self.file, self.lines[path[:end]])
        return Where(self.file, None)

    def problem(self, path: tuple[Any, ...], message: str) -> None:
        self.draft.problems.append(self.where(path).problem(message))

    def top(self, data: Any) -> None:
        if data is None:
            return
        if not isinstance(data, dict):
            self.problem((), "a YAML inventory is a mapping of groups: `all: {hosts: ...}`")
            return
        if "plugin" in data:
            self.problem(
                ("plugin",),
                "dynamic inventory plugins are not read by Baton: write the hosts out "
                "(`ansible-inventory -i SOURCE --list --yaml` prints them)",
            )
            return
        for name, body in data.items():
            self.group(name, body, (name,), parent=None)

    def group(self, name: Any, body: Any, path: tuple[Any, ...], parent: str | None) -> None:
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            self.problem(path, f"{name!r} is not a group name: a word without blanks")
            return
        where = self.where(path)
        if parent is None:
            self.draft.group(name, where)
        else:
            self.draft.add_child(parent, name, where)
        if body is None:
            return
        if not isinstance(body, dict):
            self.problem(path, f"group {name} is a mapping with hosts, children and vars")
            return
        for key in body:
            if key not in GROUP_KEYS:
                near = closest(str(key), GROUP_KEYS, n=1)
                hint = f"did you mean `{near[0]}`? " if near else ""
                self.problem(
                    (*path, key),
                    f"group {name}: unknown key {key!r}; {hint}a group holds hosts, children "
                    "and vars (a host goes under `hosts:`)",
                )
        self.hosts(name, body.get("hosts"), (*path, "hosts"))
        variables = self.variables(body.get("vars"), (*path, "vars"), f"group {name}")
        lines = {key: self.where((*path, "vars", key)) for key in variables}
        self.draft.set_vars(name, where, variables, lines)
        children = body.get("children")
        if children is None:
            return
        if not isinstance(children, dict):
            self.problem((*path, "children"), f"group {name}: children map group names to groups")
            return
        for child, child_body in children.items():
            self.group(child, child_body, (*path, "children", child), parent=name)

    def hosts(self, group: str, hosts: Any, path: tuple[Any, ...]) -> None:
        if hosts is None:
            return
        if not isinstance(hosts, dict):
            self.problem(
                path, f"group {group}: hosts map each host name to its vars (or to nothing)"
            )
            return
        for raw, body in hosts.items():
            name = str(raw) if isinstance(raw, int) else raw
            at = (*path, raw)
            if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
                self.problem(at, f"{raw!r} is not a host name: a name or address without blanks")
                continue
            variables = self.variables(body, at, f"host {name}")
            lines = {key: self.where((*at, key)) for key in variables}
            try:
                names = ranges.expand(name)
            except ranges.RangeError as exc:
                self.problem(at, str(exc))
                continue
            for each in names:
                self.draft.add_host(each, self.where(at), variables, group, lines)

    def variables(self, body: Any, path: tuple[Any, ...], owner: str) -> dict[str, Any]:
        if body is None:
            return {}
        if not isinstance(body, dict):
            self.problem(path, f"{owner}: vars are a mapping of names to values")
            return {}
        bad = [key for key in body if not isinstance(key, str)]
        for key in bad:
            self.problem((*path, key), f"{owner}: var name {key!r} is not text")
        return {key: value for key, value in body.items() if isinstance(key, str)}


def read(text: str, file: str, draft: Draft) -> None:
    """Add the YAML inventory ``text`` (from ``file``) to ``draft``; problems go there."""
    try:
        data, lines = yamldoc.parse(text, file)
    except PlaybookInvalid as exc:
        draft.problems.extend(exc.problems)
        return
    _Reader(draft, file, lines).top(data)
