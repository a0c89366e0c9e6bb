"""Where the inventory comes from: the ``inventory:`` key of ``BATON_CONFIG``, naming a
file, a folder or a list of them, read into one ``Draft``.

Relative paths are relative to the config file's folder (the config and its inventory
travel together). A folder stands for every file in it, sorted by name, as Ansible reads
one: hidden files, backups and notes (``~``, ``.bak``, ``.swp``, ``.orig``, ``.retry``,
``.md``, ``.txt``, ``.rst``) and subfolders are left out. Files ending ``.yml``,
``.yaml`` or ``.json`` are YAML; any other is INI, as Ansible decides. The
``group_vars/`` and ``host_vars/`` folders beside them are read too
(``engine.fleet.varsdirs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import PlaybookInvalid, Problem
from engine.fleet import inifile, varsdirs, yamlfile
from engine.fleet.draft import Draft, InventoryError
from engine.playbooks import model as playbook
from engine.playbooks import yamldoc

YAML_SUFFIXES = (".yml", ".yaml", ".json")
SKIPPED_SUFFIXES = ("~", ".bak", ".swp", ".orig", ".retry", ".md", ".txt", ".rst", ".pyc")


def files_of(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    """The files ``paths`` stand for, in order (a folder's sorted); a path that does not
    exist is a problem."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += [
                child
                for child in sorted(path.iterdir())
                if not child.name.startswith(".")
                and not child.name.endswith(SKIPPED_SUFFIXES)
                and not child.is_dir()
            ]
        elif path.exists() or path.is_symlink():
            files.append(path)  # yamldoc.read_text refuses what is not a regular file
        else:
            problems.append(
                Problem(
                    str(path),
                    None,
                    "no such inventory file or folder: fix `inventory:` in BATON_CONFIG",
                )
            )
    return files


def read(paths: Sequence[Path]) -> tuple[Draft, list[str]]:
    """Every inventory file of ``paths`` read into one draft, and the files read."""
    draft = Draft()
    files = files_of(paths, draft.problems)
    for file in files:
        try:
            text = yamldoc.read_text(file)  # a regular UTF-8 file of at most 1 MiB
        except PlaybookInvalid as exc:
            draft.problems.extend(exc.problems)
            continue
        reader = yamlfile if file.suffix.lower() in YAML_SUFFIXES else inifile
        reader.read(text, str(file), draft)
    varsdirs.apply(draft, [path if path.is_dir() else path.parent for path in paths])
    return draft, [str(file) for file in files]


def configured(config: Path | None) -> list[Path] | None:
    """The inventory paths ``BATON_CONFIG`` names under ``inventory:`` (None: no key, no
    file). A config file that does not read is left to the access rules to report."""
    if config is None or not config.is_file():
        return None
    try:
        data, lines = playbook.parse_yaml(yamldoc.read_text(config), str(config))
    except PlaybookInvalid:
        return None
    entry: Any = data.get("inventory") if isinstance(data, dict) else None
    if entry is None:
        return None
    items = [entry] if isinstance(entry, str) else entry
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(item, str) and item.strip() for item in items)
    ):
        line = playbook.line_of(lines, ("inventory",))
        raise InventoryError(
            [
                Problem(
                    str(config),
                    line,
                    "inventory: give a path (inventory: hosts.yml), a folder, or a list of "
                    "them (inventory: [prod.yml, lab.ini])",
                )
            ]
        )
    return [config.parent / Path(item.strip()).expanduser() for item in items]
