"""``baton hosts [PATTERN]``: the inventory's hosts, read from the files BATON_CONFIG
names (no database, no server). Exit status: 0 when hosts are listed, 1 when the pattern
names none (or there is no inventory), 2 when the inventory does not read."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Problem

if TYPE_CHECKING:
    from bot.settings import Settings
    from engine.fleet.inventory import Inventory


def add_parser(sub: Any) -> None:
    hosts = sub.add_parser(
        "hosts",
        help="list the inventory's hosts a pattern names",
        description="List the hosts of the inventory (`inventory:` in BATON_CONFIG) that "
        "an Ansible pattern names: a group, a host, all, web:db (union), web:&prod "
        "(intersection), prod:!web (exclusion), web* (glob), web[0] (subscript). Columns: "
        "name, address, port, user, groups.",
    )
    hosts.add_argument("pattern", nargs="?", default=None, help="default: all")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.hosts import listing
    from engine.fleet import inventory

    found = listing(inventory.from_config(settings.config), args.pattern)
    print("\n".join(found.lines), file=sys.stdout if found.found else sys.stderr)
    return 0 if found.found else 1


def inventory_problems(config: Path | None, files: Sequence[Path] = ()) -> list[Problem]:
    """What is wrong with the inventory BATON_CONFIG names (``baton validate``), and,
    when there is one, with the constant patterns ``files`` give ``hosts()``
    (``hosts('webb')``: a typo that would name no host when the step runs)."""
    from engine.fleet import inventory

    try:
        fleet = inventory.from_config(config)
    except inventory.InventoryError as exc:
        return exc.problems
    if not fleet.sources:  # none configured: the run says so, if it asks for hosts
        return []
    return [problem for path in files for problem in _pattern_problems(path, fleet)]


_CONSTANT = re.compile(r"""\bhosts\(\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\)""")


def _pattern_problems(path: Path, fleet: Inventory) -> list[Problem]:
    from engine.fleet.patterns import PatternError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return []  # validate says why the file does not read
    found = []
    for m in _CONSTANT.finditer(text):
        pattern = m.group(1) if m.group(1) is not None else m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        try:
            hosts = fleet.match(pattern)
        except PatternError as exc:
            found.append(Problem(str(path), line, f"hosts({pattern!r}): {exc}"))
            continue
        if not hosts:
            found.append(Problem(str(path), line, f"hosts({pattern!r}): {fleet.no_match(pattern)}"))
    return found
