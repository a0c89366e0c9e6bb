"""``hosts [PATTERN]``: the inventory's hosts a pattern names, as an aligned table
(``baton hosts`` on the command line, ``hosts`` in chat): name, address, port, user and
groups. A pattern naming no host, or no inventory at all, gets one line saying so."""

from __future__ import annotations

from dataclasses import dataclass

from bot.tables import table
from engine.fleet.inventory import Inventory
from engine.fleet.patterns import PatternError

HEADER = ("HOST", "ADDRESS", "PORT", "USER", "GROUPS")
SSH_PORT = 22
NO_INVENTORY = (
    "no inventory: set `inventory: PATH` in BATON_CONFIG (an Ansible inventory, YAML or INI)"
)


@dataclass(frozen=True)
class Listing:
    lines: list[str]
    found: bool
    """False when nothing is listed: no inventory, a pattern that does not read or that
    names no host (``lines`` says which)."""


def listing(fleet: Inventory, pattern: str | None, limit: int | None = None) -> Listing:
    """The hosts ``pattern`` (default ``all``) names, one row each, in inventory order;
    past ``limit`` rows (chat: a message holds a few screens), a last line says how many
    more there are."""
    if not fleet.sources:
        return Listing([NO_INVENTORY], False)
    pattern = pattern or "all"
    try:
        names = fleet.match(pattern)
    except PatternError as exc:
        return Listing([str(exc)], False)
    if not names:
        return Listing([fleet.no_match(pattern)], False)
    rows = []
    for name in names[:limit]:
        host = fleet.hosts[name]
        groups = ",".join(fleet.groups_of(name))
        rows.append([name, host.address, str(host.port or SSH_PORT), host.user or "-", groups])
    lines = table(HEADER, rows)
    if limit is not None and len(names) > limit:
        lines.append(f"... and {len(names) - limit:,} more: narrow the pattern (web:&prod)")
    return Listing(lines, True)
