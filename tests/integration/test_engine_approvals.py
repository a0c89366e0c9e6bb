"""Approval gates through ``Engine.decide``, on SQLite and PostgreSQL.

Runs are requested by alice; bob, carol and dave may approve; eve may not.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine import events as ev
from engine.errors import ApprovalNotFound, NotAllowed
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.integration import support as s

GATE = """
    name: {name}
    steps:
      - id: gate
        action: approval
        with:
          approvers: {approvers}
          min_approvals: {quorum}
          message: "Restart prod?"
          allow_self_approval: {self_ok}
          timeout: {timeout}
          on_timeout: {on_timeout}
      - id: after
        action: shell
        needs: gate
        with:
          env: {{BY: "{{{{ steps.gate.output.approved_by | join(',') }}}}"}}
          script: echo approved by "$BY"
"""


def _gate(
    name: str,
    quorum: int = 1,
    self_ok: bool = False,
    on_timeout: str = "",
    approvers: str = "[bob, carol, dave]",
) -> str:
    timeout = "1h" if on_timeout else "null"
    return GATE.format(
        name=name,
        approvers=approvers,
        quorum=quorum,
        self_ok=str(self_ok).lower(),
        timeout=timeout,
        on_timeout=on_timeout or "reject",
    )


PLAYBOOKS = {
    "gate": _gate("gate"),
    "quorum": _gate("quorum", quorum=2),
    "self-refused": _gate("self-refused", approvers="[alice, bob]"),
    "self-ok": _gate("self-ok", self_ok=True, approvers="[alice, bob]"),
    "timeout-reject": _gate("timeout-reject", on_timeout="reject"),
    "timeout-approve": _gate("timeout-approve", on_timeout="approve"),
}


async def test_quorum_of_two(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("quorum", requested_by="alice")
    events = h.seen()
    (asked,) = s.of_type(events, ev.ApprovalRequested)
    assert (asked.step_id, asked.min_approvals, asked.message, asked.requested_by) == (
        "gate",
        2,
        "Restart prod?",
        "alice",
    )
    assert asked.approvers["users"] == ["bob", "carol", "dave"]
    assert asked.approval_id == await s.approval_id(h, run_id, "gate")
    assert (await h.run_row(run_id)).status == "waiting"
    step = (await h.steps(run_id))["gate"]
    assert (step.status, step.wake_reason, step.approval_id) == (
        "waiting",
        "approval",
        asked.approval_id,
    )

    first = await h.engine.decide(asked.approval_id, "bob", "approve", "lgtm")
    await h.engine.wait_idle()
    assert (first.recorded, first.status) == (True, "pending")
    assert (await h.run_row(run_id)).status == "waiting"

    second = await h.engine.decide(asked.approval_id, "carol", "approve")
    await h.engine.wait_idle()
    assert (second.recorded, second.status) == (True, "approved")

    assert (await h.run_row(run_id)).status == "succeeded"
    steps = await h.steps(run_id)
    assert steps["gate"].output == {
        "approval_id": asked.approval_id,
        "approved_by": ["bob", "carol"],
    }
    assert steps["after"].output["stdout"] == "approved by bob,carol\n"
    assert (await s.approval_row(h, asked.approval_id)).status == "approved"
    assert await s.decisions(h, asked.approval_id) == [
        ("bob", "approve", "lgtm"),
        ("carol", "approve", ""),
    ]
    events = h.seen()
    assert [(e.user, e.decision) for e in s.of_type(events, ev.ApprovalDecided)] == [
        ("bob", "approve"),
        ("carol", "approve"),
    ]
    assert [e.outcome for e in s.of_type(events, ev.ApprovalClosed)] == ["approved"]
    await s.assert_settled(h, run_id)

    late = await h.engine.decide(asked.approval_id, "dave", "reject")
    assert (late.recorded, late.status) == (False, "approved")
    assert len(await s.decisions(h, asked.approval_id)) == 2


@pytest.mark.parametrize(
    ("playbook", "allowed"),
    [("self-refused", False), ("self-ok", True)],
    ids=["refused", "allowed"],
)
async def test_self_approval(harness: HarnessFactory, playbook: str, allowed: bool) -> None:
    """alice is an approver, and started the run: she may approve only if the step says so."""
    h = await harness(PLAYBOOKS)
    run_id = await h.run(playbook, requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    if allowed:
        result = await h.engine.decide(gate, "alice", "approve")
        await h.engine.wait_idle()
        assert (result.recorded, result.status) == (True, "approved")
        assert (await h.run_row(run_id)).status == "succeeded"
    else:
        with pytest.raises(NotAllowed, match="alice started run"):
            await h.engine.decide(gate, "alice", "approve")
        await h.engine.wait_idle()
        assert await s.decisions(h, gate) == []
        assert (await h.run_row(run_id)).status == "waiting"
        assert (await s.approval_row(h, gate)).status == "pending"


async def test_outsider_is_refused(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    with pytest.raises(NotAllowed, match="eve may not decide") as caught:
        await h.engine.decide(gate, "eve", "approve")

    assert "bob, carol, dave" in str(caught.value)
    assert await s.decisions(h, gate) == []
    refused = await h.store.all(sa.select(t.audit).where(t.audit.c.outcome == "refused"))
    assert [(r.actor, r.action, r.target) for r in refused] == [("eve", "approve", gate)]
    assert (await h.run_row(run_id)).status == "waiting"


async def test_unknown_approval(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)

    with pytest.raises(ApprovalNotFound):
        await h.engine.decide("nope", "bob", "approve")


async def test_duplicate_decision_is_idempotent(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("quorum", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    first = await h.engine.decide(gate, "bob", "approve")
    again = await h.engine.decide(gate, "bob", "approve")
    changed_mind = await h.engine.decide(gate, "bob", "reject")
    await h.engine.wait_idle()

    assert first.recorded is True
    assert (again.recorded, again.status) == (False, "pending")
    assert (changed_mind.recorded, changed_mind.status) == (False, "pending")
    assert await s.decisions(h, gate) == [("bob", "approve", "")]
    assert (await s.approval_row(h, gate)).status == "pending"
    assert (await h.run_row(run_id)).status == "waiting"
    assert len(s.of_type(h.seen(), ev.ApprovalDecided)) == 1


async def test_reject_fails_the_step_and_the_run(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("quorum", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    await h.engine.decide(gate, "bob", "approve")
    result = await h.engine.decide(gate, "carol", "reject", "too risky")
    await h.engine.wait_idle()

    assert (result.recorded, result.status) == (True, "rejected")
    approval = await s.approval_row(h, gate)
    assert (approval.status, approval.outcome_reason) == ("rejected", "too risky")
    steps = await h.steps(run_id)
    assert (steps["gate"].status, steps["gate"].error) == ("failed", "rejected by carol: too risky")
    assert steps["after"].status == "skipped"
    run = await h.run_row(run_id)
    assert (run.status, run.failed_step) == ("failed", "gate")
    assert run.error == "step gate failed: rejected by carol: too risky"
    assert await s.decisions(h, gate) == [("bob", "approve", ""), ("carol", "reject", "too risky")]
    await s.assert_settled(h, run_id)


@pytest.mark.parametrize(
    ("playbook", "outcome", "gate_status", "run_status"),
    [
        ("timeout-reject", "timed_out", "failed", "failed"),
        ("timeout-approve", "approved", "succeeded", "succeeded"),
    ],
    ids=["reject", "approve"],
)
async def test_approval_timeout(
    harness: HarnessFactory, playbook: str, outcome: str, gate_status: str, run_status: str
) -> None:
    h = await harness(PLAYBOOKS)
    began = h.clock.now()
    run_id = await h.run(playbook, requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")
    (asked,) = s.of_type(h.seen(), ev.ApprovalRequested)
    assert asked.deadline == (await s.approval_row(h, gate)).deadline_at

    await h.advance(3599)
    assert (await s.approval_row(h, gate)).status == "pending"
    await h.advance(1)

    approval = await s.approval_row(h, gate)
    assert (approval.status, approval.outcome_reason) == (outcome, "timeout")
    assert approval.closed_at == asked.deadline
    assert asked.deadline is not None and (asked.deadline - began).total_seconds() == 3600
    steps = await h.steps(run_id)
    assert steps["gate"].status == gate_status
    assert steps["gate"].output["timed_out"] is True
    assert (await h.run_row(run_id)).status == run_status
    if run_status == "failed":
        assert steps["gate"].error == "approval timed out with no decision"
    assert [e.reason for e in s.of_type(h.seen(), ev.ApprovalClosed)] == ["timeout"]
    await s.assert_settled(h, run_id)

    late = await h.engine.decide(gate, "bob", "approve")
    assert late.recorded is False


async def test_cancel_closes_a_pending_approval(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    await h.engine.cancel(run_id, by="alice")
    await h.engine.wait_idle()

    assert (await h.run_row(run_id)).status == "cancelled"
    assert (await s.approval_row(h, gate)).status == "cancelled"
    assert (await h.engine.decide(gate, "bob", "approve")).recorded is False
    await s.assert_settled(h, run_id)


TEMPLATED_TIMEOUT = """
    name: templated-timeout
    params:
      fallback: {type: choice, choices: [reject, approve], default: approve}
    steps:
      - id: gate
        action: approval
        with:
          approvers: [bob]
          timeout: 10m
          on_timeout: "{{ params.fallback }}"
"""


async def test_on_timeout_is_taken_rendered_and_survives_a_restart(
    harness: HarnessFactory,
) -> None:
    h = await harness({"templated-timeout": TEMPLATED_TIMEOUT})
    run_id = await h.run("templated-timeout", requested_by="alice")
    await h.restart()
    await h.advance(600)
    assert (await h.run_row(run_id)).status == "succeeded"
    row = await s.approval_row(h, await s.approval_id(h, run_id, "gate"))
    assert (row.status, row.outcome_reason) == ("approved", "timeout")


async def test_closing_reason_names_the_outcome(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")
    h.seen()
    await h.engine.decide(gate, "bob", "approve", "looks fine")
    await h.engine.wait_idle()
    (closed,) = s.of_type(h.seen(), ev.ApprovalClosed)
    assert (closed.outcome, closed.reason) == ("approved", "approved by bob: looks fine")
