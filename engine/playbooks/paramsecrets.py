"""The secret side of a playbook's params: which are secret, their values, and params
and definitions with them masked (``***``) for storing and showing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.playbooks.model import ParamType, Playbook
from engine.playbooks.params import MASK


def secret_names(playbook: Playbook) -> set[str]:
    return {name for name, spec in playbook.params.items() if spec.type is ParamType.SECRET}


def secret_values(playbook: Playbook, values: Mapping[str, Any]) -> list[str]:
    """The values of the secret params in ``values`` (the ones given)."""
    return [str(values[n]) for n in secret_names(playbook) if values.get(n)]


def masked(playbook: Playbook, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every secret param's value replaced by ``***`` (None stays None)."""
    secrets = secret_names(playbook)
    return {k: MASK if k in secrets and v is not None else v for k, v in values.items()}


def typed_masked(playbook: Playbook, typed: Mapping[str, Any]) -> dict[str, Any]:
    """Params as a person typed them (before ``coerce``), safe to keep or show: the value
    of a secret param and of every name the playbook does not declare is ``***``.

    An undeclared name is often a mistyped secret (``tokn=...`` for ``token``); the run is
    refused anyway (with a did-you-mean), so its value is never worth keeping.
    """
    secrets = secret_names(playbook)
    return {k: MASK if k in secrets or k not in playbook.params else v for k, v in typed.items()}


def stored_definition(playbook: Playbook) -> dict[str, Any]:
    """The definition a run keeps (``Playbook.snapshot``) without secrets: a secret
    param's ``default``, and the values its triggers give secret params, are ``***``.

    A run never reads them back: its params, secret ones encrypted, are stored with it
    (a resumed or retried run takes them from there), and triggers play no part in a run.
    The rest is kept as written, since a resumed run runs its steps from it.
    """
    snapshot = playbook.snapshot()
    names = secret_names(playbook)
    holders: list[tuple[Any, str]] = [(snapshot.get("params", {}).get(n), "default") for n in names]
    for trigger in snapshot.get("triggers", []) if names else []:
        for kind in ("schedule", "alert"):
            body = trigger.get(kind) or {}
            holders += [(body.get("params"), name) for name in names]
    for holder, key in holders:
        if isinstance(holder, dict) and holder.get(key) not in (None, ""):
            holder[key] = MASK
    return snapshot
