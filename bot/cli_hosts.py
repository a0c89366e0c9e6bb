"""``baton hosts [PATTERN]``: the inventory's hosts, read from the files BATON_CONFIG
names (no database, no server). Exit status: 0 when hosts are listed, 1 when the pattern
names none (or there is no inventory), 2 when the inventory does not read."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Problem

if TYPE_CHECKING:
    from bot.settings import Settings


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


def inventory_problems(config: Path | None) -> list[Problem]:
    """What is wrong with the inventory BATON_CONFIG names (``baton validate``)."""
    from engine.fleet import inventory

    try:
        inventory.from_config(config)
    except inventory.InventoryError as exc:
        return exc.problems
    return []
