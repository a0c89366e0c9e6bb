"""Dry runs: what a run would do, computed without running anything."""

from __future__ import annotations

from typing import Any

from engine import params as paramlib
from engine import templating
from engine.catalog import Catalog
from engine.playbook import Phase, Playbook
from engine.requests import Plan, RunRequest
from engine.state import parallel_groups


def concurrency_key(playbook: Playbook, params: dict[str, Any]) -> str | None:
    conc = playbook.concurrency
    if conc is None:
        return None
    if conc.key is None:
        return playbook.name
    return str(templating.render(conc.key, {"params": params}))


def plan(catalog: Catalog, request: RunRequest) -> Plan:
    playbook = catalog.get(request.playbook)
    params = paramlib.coerce(playbook, request.params)
    return Plan(
        playbook=playbook.name,
        params=paramlib.masked(playbook, params),
        waves=parallel_groups(playbook, Phase.MAIN),
        on_failure=parallel_groups(playbook, Phase.ON_FAILURE),
        finally_=parallel_groups(playbook, Phase.FINALLY),
        concurrency_key=concurrency_key(playbook, params),
    )
