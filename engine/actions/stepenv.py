"""The environment a step's process starts from: clean, and computed once per process.

A shell step does not inherit Baton's environment, which holds Baton's own credentials
(API and alert tokens, the Fernet key, Slack tokens, the database URL). It gets:

- ``PATH``, ``HOME``, ``LANG``, ``LANGUAGE``, ``TZ`` and the locale's ``LC_*``, when
  Baton has them (``BASE``: what a command needs to behave as in a terminal);
- the variables the allowlist names (``BATON_STEP_ENV``: names and globs such as
  ``KUBECONFIG,AWS_*``), under two rules: Baton's credential variables never pass, not
  even named exactly; a glob never matches ``BATON_*``, ``SLACK_*`` or ``SECRET_*``
  (Baton's own namespaces): such a variable passes only when named exactly;
- then, per step, ``PARAM_*`` and the step's ``env:`` (see ``engine.actions.shell``).

``build`` is called once when Baton starts; the engine hands the result to every action
as ``ActionContext.env``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping

BASE = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ"})
BASE_PREFIXES = ("LC_",)
RESERVED_PREFIXES = ("BATON_", "SLACK_", "SECRET_")
"""Baton's namespaces: a glob of the allowlist never matches them."""

_GLOB = re.compile(r"[*?\[]")
_ENTRY = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")


def parse_allowlist(text: str) -> tuple[str, ...]:
    """``"KUBECONFIG, AWS_*"`` as ``("KUBECONFIG", "AWS_*")``; blanks are ignored.

    Raises ValueError naming an entry that is neither a variable name nor a glob.
    """
    entries = tuple(e.strip() for e in text.split(",") if e.strip())
    for entry in entries:
        if not _ENTRY.fullmatch(entry):
            raise ValueError(
                f"{entry!r} is not a variable name or a glob: give names such as "
                "KUBECONFIG or globs such as AWS_*, separated by commas"
            )
    return entries


def allowed(name: str, allowlist: Iterable[str], withheld: Collection[str] = ()) -> bool:
    """True when the variable ``name`` of Baton's environment may reach a step."""
    if name in withheld:
        return False
    if name in BASE or name.startswith(BASE_PREFIXES):
        return True
    for entry in allowlist:
        if not _GLOB.search(entry):
            if name == entry:
                return True
        elif not name.startswith(RESERVED_PREFIXES) and fnmatch.fnmatchcase(name, entry):
            return True
    return False


def build(
    environ: Mapping[str, str],
    allowlist: Iterable[str] = (),
    withheld: Collection[str] = (),
) -> dict[str, str]:
    """The variables of ``environ`` a step gets (see the module docstring)."""
    entries = tuple(allowlist)
    return {k: v for k, v in environ.items() if allowed(k, entries, withheld)}
