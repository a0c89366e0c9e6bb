"""Ansible's ``group_vars/`` and ``host_vars/`` folders beside an inventory.

Next to an inventory file (or inside an inventory folder), ``group_vars/web.yml`` holds
vars of group ``web`` and ``host_vars/web1.yml`` vars of host ``web1``. As in Ansible a
name may be a file (no suffix, ``.yml``, ``.yaml`` or ``.json``) or a folder of such
files (read in name order); each holds a YAML mapping. They override the vars the
inventory files give the same group or host (a group's still rank below any host's, by
depth as usual). Files for a group or host the inventory does not hold are not read, as
Ansible ignores them. Every file is read like the inventory's own (``engine.playbooks.yamldoc``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.errors import PlaybookInvalid, Problem
from engine.fleet.draft import ALL, Draft, Where
from engine.playbooks import yamldoc

VARS_SUFFIXES = (".yml", ".yaml", ".json")
_SKIPPED = ("~", ".bak", ".swp", ".orig", ".retry", ".md", ".txt", ".rst", ".pyc")


def apply(draft: Draft, bases: Sequence[Path]) -> None:
    """Merge the vars folders of every folder in ``bases`` into ``draft``, in order."""
    for base in dict.fromkeys(bases):
        for name, file in _files(base / "group_vars"):
            if name in draft.groups or name == ALL:
                found = _read(file, draft.problems)
                if found is not None:
                    variables, lines = found
                    at = {k: Where(str(file), lines.get((k,))) for k in variables}
                    draft.set_vars(name, Where(str(file), 1), variables, at)
        for name, file in _files(base / "host_vars"):
            host = draft.hosts.get(name)
            if host is not None:
                found = _read(file, draft.problems)
                if found is not None:
                    variables, lines = found
                    host.vars.update(variables)
                    host.var_lines.update({k: Where(str(file), lines.get((k,))) for k in variables})


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(group or host name, file) for every vars file of ``folder``, in name order."""
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if _skipped(entry):
            continue
        if entry.is_dir():
            for file in sorted(entry.rglob("*")):
                if not file.is_dir() and not _skipped(file):
                    yield entry.name, file
        else:
            suffix = entry.suffix.lower()
            yield (entry.name[: -len(suffix)] if suffix in VARS_SUFFIXES else entry.name), entry


def _skipped(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(_SKIPPED)


def _read(file: Path, problems: list[Problem]) -> tuple[dict[str, Any], yamldoc.Lines] | None:
    try:
        data, lines = yamldoc.parse(yamldoc.read_text(file), str(file))
    except PlaybookInvalid as exc:
        problems.extend(exc.problems)
        return None
    if data is None:
        return {}, lines
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        problems.append(Problem(str(file), 1, "a vars file holds a mapping of var names to values"))
        return None
    return data, lines
