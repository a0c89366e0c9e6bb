"""What of a structurally broken playbook can still be checked.

``baton validate`` reports every problem it can find in one pass: a playbook whose
structure is wrong somewhere (an unknown key, a retry that is not a mapping, a param of an
unknown type) still has its other steps checked, quorums and templates included, instead
of showing those problems only once the structure is fixed.

``partial`` takes the broken parts out of a copy of the data until the rest builds: an
unknown key is dropped (it meant nothing); a step's broken field is dropped and that step
is left out of the semantic checks (without the field, they could report what is not
wrong), unless no check reads it (``name``, ``description``, ``timeout``, ``retry``,
``idempotent``: only the field is left out); a broken param becomes a plain string
param, a broken trigger a stand-in, and a broken ``timeout``, ``concurrency``, ``notify``
or ``description`` is dropped, each also left out. What other parts depend on (a step's
``id``, ``action``, ``needs`` or ``for_each``, the playbook's ``name`` or ``steps`` list)
cannot be taken out: then nothing is salvaged, and only the structural problems are
reported.

The salvaged playbook is for checking only; it never runs.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from engine.playbooks.model import Playbook

Path = tuple[Any, ...]

PHASES = ("steps", "on_failure", "finally")
_STEP_KEYS_OTHERS_NEED = ("id", "action", "needs", "for_each")
_STEP_KEYS_ALONE = ("name", "description", "timeout", "retry", "idempotent")
_DROPPABLE = ("description", "timeout", "concurrency", "notify")
_TRIGGER_STANDIN: dict[str, Any] = {"alert": {}}
_ROUNDS = 5
_ALIASES: dict[Any, str] = {"with_": "with", "finally_": "finally"}


def partial(data: Any) -> tuple[Playbook, list[Path]] | None:
    """A playbook built from what of ``data`` fits, with the paths left out of the checks
    (a problem at or under one of them is not to be reported); None when nothing can be
    salvaged."""
    if not isinstance(data, dict):
        return None
    data = copy.deepcopy(data)
    skipped: list[Path] = []
    for _ in range(_ROUNDS):
        try:
            return Playbook.model_validate(data), skipped
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(_ALIASES.get(part, part) for part in err["loc"])
                cut = _cut(data, loc, err["type"] == "extra_forbidden")
                if cut is None:
                    return None
                skipped.append(cut)
    return None


def _cut(data: dict[str, Any], loc: Path, unknown_key: bool) -> Path | None:
    """Take the broken part at ``loc`` out of ``data``; the path to leave out of the
    checks, or None when it cannot be taken out."""
    if unknown_key:
        parent = _at(data, loc[:-1])
        if isinstance(parent, dict):
            parent.pop(loc[-1], None)
            return loc
        return None
    head = loc[0] if loc else None
    if head in PHASES and len(loc) >= 3 and loc[2] not in _STEP_KEYS_OTHERS_NEED:
        step = _at(data, loc[:2])
        if isinstance(step, dict):
            step.pop(loc[2], None)
            # a field no other check reads: only it is left out, the step is checked
            return loc[:3] if loc[2] in _STEP_KEYS_ALONE else loc[:2]
    elif head == "params" and len(loc) >= 2 and isinstance(data.get("params"), dict):
        data["params"][loc[1]] = {}
        return loc[:2]
    elif head == "triggers" and len(loc) >= 2 and isinstance(data.get("triggers"), list):
        data["triggers"][loc[1]] = dict(_TRIGGER_STANDIN)
        return loc[:2]
    elif head in _DROPPABLE:
        data.pop(head, None)
        return (head,)
    return None


def _at(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def skipped(path: Path, paths: list[Path]) -> bool:
    """Whether ``path`` is at or under one of ``paths``."""
    return any(path[: len(p)] == p for p in paths)
