"""Retry from the failed step: which steps of a finished run a new attempt runs again.

A plain ``retry`` runs again every main step that did not succeed (a step its ``when:``
skipped is asked again). ``retry --from-failed`` restarts exactly at what went wrong:
the steps that failed, timed out, were cancelled or interrupted, or never got to run,
and every step that depends on one of them (through ``needs``, however far down, even
one that succeeded). Every other step keeps its result and its output, which the
restarted steps' templates read as before (``steps.ID.output``). The ``on_failure`` and
``finally`` steps belong to the attempt and run again as in a plain retry.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from engine.errors import InvalidTransition
from engine.playbooks.model import Phase, Playbook
from storage import tables as t
from storage.store import Store

KEPT = frozenset({"succeeded", "skipped"})
"""Step statuses that, on their own, need no new attempt."""


def steps_to_rerun(playbook: Playbook, statuses: Mapping[str, str]) -> set[str]:
    """The main steps a from-failed retry resets: those whose status is not one of
    ``KEPT``, and everything downstream of them."""
    rerun = {step.id for step in playbook.steps if statuses.get(step.id) not in KEPT}
    grew = True
    while grew:  # a step needing a step to rerun reruns too, until nothing more joins
        grew = False
        for step in playbook.steps:
            if step.id not in rerun and rerun.intersection(step.needs):
                rerun.add(step.id)
                grew = True
    return rerun


async def reset_condition(run_id: str, playbook: Playbook, store: Store) -> sa.ColumnElement[bool]:
    """The ``WHERE`` of the steps a from-failed retry resets (besides ``run_id``)."""
    rows = await store.all(
        sa.select(t.steps.c.step_id, t.steps.c.status).where(
            t.steps.c.run_id == run_id, t.steps.c.phase == Phase.MAIN.value
        )
    )
    rerun = steps_to_rerun(playbook, {row.step_id: row.status for row in rows})
    if not rerun:
        raise InvalidTransition(
            f"run {run_id} has no failed step to retry from: every step succeeded or was "
            "skipped; retry it without --from-failed to run the skipped steps' conditions again"
        )
    return sa.or_(t.steps.c.phase != Phase.MAIN.value, t.steps.c.step_id.in_(sorted(rerun)))
