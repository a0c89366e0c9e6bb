"""One host as the rest of Baton sees it, whatever inventory format it came from.

The inventory (``engine.fleet.inventory``) builds these; the ``ssh`` action asks for one by
name through ``ActionContext.hosts`` and connects to ``address``/``port`` as ``user``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Host:
    name: str
    """The inventory name (``web1``); what ``hosts('web')`` returns."""
    address: str
    """Where to connect: ``ansible_host``, else the name."""
    port: int | None = None
    """``ansible_port``; None means the ssh default (22)."""
    user: str | None = None
    """``ansible_user``."""
    key_file: str | None = None
    """``ansible_ssh_private_key_file``."""
    vars: Mapping[str, Any] = field(default_factory=dict)
    """Every var of the host, its groups' vars merged in (the host's own win)."""


HostLookup = Callable[[str], "Host | None"]
"""Name -> Host, or None when the inventory has no such host (or there is no inventory)."""


def no_hosts(_name: str) -> Host | None:
    return None
