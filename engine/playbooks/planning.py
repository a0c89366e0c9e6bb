"""Dry runs: what a run would do, computed without running anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets, templating
from engine.playbooks.catalog import Catalog
from engine.playbooks.model import Phase, Playbook
from engine.runs.requests import Plan, RunRequest
from engine.runs.state import parallel_groups
from engine.secrets import Masker


def concurrency_key(
    playbook: Playbook,
    params: dict[str, Any],
    masker: Masker | None = None,
    fingerprint: Callable[[str], str] | None = None,
) -> str | None:
    """The run's rendered concurrency key, as stored and shown.

    A key that holds a secret (a secret param, or a value ``masker`` knows) is never
    kept in clear: it becomes its masked text plus ``#`` and a keyed digest of the real
    key (``fingerprint``, ``SecretBox.fingerprint``), so runs with the same secret still
    share a key and runs with another do not. Without ``fingerprint`` (a dry run) the
    masked text alone is shown.
    """
    conc = playbook.concurrency
    if conc is None:
        return None
    if conc.key is None:
        return playbook.name
    key = str(templating.render(conc.key, {"params": params}))
    masker = (masker or Masker()).with_values(paramsecrets.secret_values(playbook, params))
    shown = masker.mask_text(key)
    if shown == key:
        return key
    return f"{shown}#{fingerprint(key)}" if fingerprint is not None else shown


def plan(catalog: Catalog, request: RunRequest, masker: Masker | None = None) -> Plan:
    """A dry run's plan; ``masker``: secrets to mask besides the secret params."""
    playbook = catalog.get(request.playbook)
    params = paramlib.coerce(playbook, request.params)
    return Plan(
        playbook=playbook.name,
        params=paramsecrets.masked(playbook, params),
        waves=parallel_groups(playbook, Phase.MAIN),
        on_failure=parallel_groups(playbook, Phase.ON_FAILURE),
        finally_=parallel_groups(playbook, Phase.FINALLY),
        concurrency_key=concurrency_key(playbook, params, masker),
    )
