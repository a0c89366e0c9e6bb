"""Durations in every form reach the engine as written, and a gate that the requester's
own exclusion makes impossible fails at once with the reason, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

from storage import tables as t
from tests.conftest import HarnessFactory
from tests.integration import support as s

PLAYBOOKS = {
    "pause": """
        name: pause
        timeout: 1 hour
        steps:
          - id: pause
            action: wait
            with: {for: 10 minutes}
          - id: after
            action: log
            needs: pause
            with: {message: "waited"}
    """,
    "gate": """
        name: gate
        steps:
          - id: gate
            action: approval
            with: {approvers: [alice, bob], timeout: 1 hour 30 minutes, on_timeout: approve}
          - id: after
            action: log
            needs: gate
            with: {message: "approved"}
    """,
    "two-of-two": """
        name: two-of-two
        steps:
          - id: gate
            action: approval
            with: {approvers: [alice, bob], min_approvals: 2, message: "Both of you?"}
          - id: after
            action: log
            needs: gate
            with: {message: "approved"}
        on_failure:
          - id: told
            action: log
            with: {message: "{{ failure.error }}"}
    """,
}


async def test_a_wait_written_in_words_waits_that_long(harness: HarnessFactory) -> None:
    """``for: 10 minutes`` passed validate and then failed the run; it now waits."""
    h = await harness(PLAYBOOKS)
    run_id = await h.run("pause")
    assert (await h.run_row(run_id)).status == "waiting"
    await h.advance(599)
    assert (await h.statuses(run_id))["pause"] == "waiting"
    await h.advance(1)
    assert await h.statuses(run_id) == {"pause": "succeeded", "after": "succeeded"}
    assert (await h.run_row(run_id)).status == "succeeded"


async def test_an_approval_timeout_in_words(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="carol")
    gate = await s.approval_row(h, await s.approval_id(h, run_id, "gate"))
    assert (gate.deadline_at - gate.created_at).total_seconds() == 5400
    await h.advance(5400)
    assert (await h.run_row(run_id)).status == "succeeded"


async def test_a_quorum_the_requester_cannot_be_part_of_fails_at_once(
    harness: HarnessFactory,
) -> None:
    """alice starts a run that needs both alice and bob, and may not approve her own:
    nobody could ever approve it, so the step fails now with the reason, and no gate is
    left waiting."""
    h = await harness(PLAYBOOKS)
    run_id = await h.run("two-of-two", requested_by="alice")
    run = await h.run_row(run_id)
    assert run.status == "failed"
    steps = await h.steps(run_id)
    assert steps["gate"].status == "failed"
    assert steps["gate"].error == (
        "alice started this run and may not approve it, which leaves 1 of the 2 approvals "
        "needed (alice, bob): someone else must start it, or list more approvers, or set "
        "allow_self_approval: true"
    )
    assert steps["told"].output["message"] == run.error
    gates = await h.store.all(sa.select(t.approvals).where(t.approvals.c.run_id == run_id))
    assert gates == []
    await s.assert_settled(h, run_id)

    other = await h.run("two-of-two", requested_by="carol")
    assert (await h.run_row(other)).status == "waiting"
