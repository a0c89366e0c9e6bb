"""Approval gates in the run machine, driven by hand (no asyncio, no database): several
runs each waiting at a gate, decisions, timeouts, escalation, reminders, cancels; and the
``Gate``'s own rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import events as ev
from engine.actions import ChildRunSpec
from engine.runs import gates
from engine.runs import messages as msg
from engine.runs.gates import Escalation, Gate
from engine.runs.state import RunState, StepStatus
from storage import tables as t
from tests.fakes.machine import (
    T0,
    Driver,
    conditions,
    events,
    new_run,
    playbook,
    started,
    statement_values,
    step,
    updates_of,
)

BOB = {"users": ["bob"], "usergroups": [], "groups": []}
CAROL = {"users": ["carol"], "usergroups": ["oncall"], "groups": []}


def three_runs_at_gates(d: Driver, **spec: Any) -> list[tuple[RunState, str]]:
    """Three runs, each with one step waiting at its gate (retries allowed)."""
    out = []
    for rid in ("r1", "r2", "r3"):
        run = new_run(playbook([step("gate", retry={"attempts": 3}), step("next", "gate")]), rid)
        d.turn(run)
        out.append((run, d.wait_at_gate(run, "gate", **spec)))
    return out


# how one run's gate ends -> (that gate's status, the step's status)
ENDINGS = {
    "cancel": ("cancelled", StepStatus.CANCELLED),
    "timeout, reject": ("timed_out", StepStatus.FAILED),
    "timeout, approve": ("approved", StepStatus.SUCCEEDED),
    "rejected": ("rejected", StepStatus.FAILED),
    "approved": ("approved", StepStatus.SUCCEEDED),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_one_gate_ends_and_the_other_runs_gates_stay_pending(ending: str) -> None:
    d = Driver()
    on_timeout = "approve" if ending == "timeout, approve" else "reject"
    runs = three_runs_at_gates(d, timeout_s=60, remind_s=30, on_timeout=on_timeout)
    run, approval = runs[1]
    if ending == "cancel":
        batch = d.turn(run, msg.Stop(status="cancelled", by="dave"))
    elif ending.startswith("timeout"):
        batch = d.fire(run, "gate", "approval")
    else:
        d.approvals.rows[approval]["status"] = ending  # as a decision closes it
        outcome = "approved" if ending == "approved" else "rejected"
        batch = d.turn(run, msg.GateClosed("gate", approval, outcome, f"{outcome} by bob"))
    status, step_status = ENDINGS[ending]
    assert d.approvals.status(approval) == status
    assert run.steps["gate"].status is step_status
    for other, other_approval in (runs[0], runs[2]):
        assert d.approvals.status(other_approval) == "pending"
        assert other.steps["gate"].status is StepStatus.WAITING
        assert (other.id, "gate", "approval") in d.timers
        assert (other.id, "gate", "remind") in d.timers
    for update in updates_of(batch, t.approvals):  # each names its gate
        assert conditions(update) == {"id": approval, "status": "pending"}
    assert (run.id, "gate", "approval") not in d.timers
    assert (run.id, "gate", "remind") not in d.timers


def test_a_reminder_updates_only_its_gate() -> None:
    d = Driver()
    runs = three_runs_at_gates(d, timeout_s=60, remind_s=30)
    run, approval = runs[0]
    batch = d.fire(run, "gate", "remind")
    (update,) = updates_of(batch, t.approvals)
    assert conditions(update) == {"id": approval, "status": "pending"}
    assert statement_values(update)["spec"]["remind_at"] is None
    assert d.approvals.rows[runs[1][1]]["spec"]["remind_at"] is not None
    (reminded,) = events(batch, ev.ApprovalReminded)
    assert (reminded.approval_id, reminded.approvers) == (approval, BOB)
    assert reminded.deadline == T0 + timedelta(seconds=60)
    assert run.steps["gate"].status is StepStatus.WAITING


# a decision that must not close the waiting gate: (step, approval id, the gate's step
# has timed out and gone on already)
STALE = {
    "an earlier attempt's gate": ("gate", "g0", False),
    "another step's gate": ("other", "OWN", False),
    "its own gate, no longer waiting": ("gate", "OWN", True),
}


@pytest.mark.parametrize("case", STALE)
def test_a_decision_on_a_stale_or_other_gate_changes_nothing(case: str) -> None:
    sid, approval, gone_on = STALE[case]
    d = Driver()
    run = new_run(playbook([step("gate"), step("other", "gate")]))
    d.turn(run)
    own = d.wait_at_gate(run, "gate", timeout_s=10, on_timeout="approve")
    if gone_on:
        d.fire(run, "gate", "approval")
    status = {s.id: s.status for s in run.steps.values()}
    approval = own if approval == "OWN" else approval
    batch = d.turn(run, msg.GateClosed(sid, approval, "rejected", "rejected by bob"))
    assert batch.ops == [] and batch.events == [] and batch.effects == []
    assert {s.id: s.status for s in run.steps.values()} == status
    assert run.failed_step is None


@pytest.mark.parametrize("how", ["rejected", "timed out", "child failed"])
def test_a_rejected_gate_or_failed_child_is_never_retried(how: str) -> None:
    d = Driver(spawn_child=_child_factory)
    run = new_run(playbook([step("s", retry={"attempts": 5, "delay": "1s"})]))
    d.turn(run)
    if how == "child failed":
        d.suspend(run, "s", child=_child_spec())
        child_id = run.steps["s"].child_run_id
        assert child_id is not None
        batch = d.turn(run, msg.ChildEnded("s", child_id, "failed", error="disk full"))
        error = f"child run {child_id} failed: disk full"
    else:
        approval = d.wait_at_gate(run, "s", timeout_s=10)
        if how == "rejected":
            batch = d.turn(run, msg.GateClosed("s", approval, "rejected", "rejected by bob: no"))
            error = "rejected by bob: no"
        else:
            batch = d.fire(run, "s", "approval")
            error = "approval timed out with no decision"
    (failed,) = events(batch, ev.StepFailed)
    assert (failed.will_retry, failed.retry_at, failed.error) == (False, None, error)
    assert run.steps["s"].status is StepStatus.FAILED
    assert (run.id, "s", "retry") not in d.timers
    assert d.ended[run.id]


def test_a_failed_attempt_is_retried_while_attempts_are_left() -> None:
    """The counterpart of the rule above: an action's failure does retry."""
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 2, "delay": "10s"})]))
    d.turn(run)
    batch = d.finish(run, "s", "failed", error="boom")
    (failed,) = events(batch, ev.StepFailed)
    assert failed.will_retry and failed.retry_at == T0 + timedelta(seconds=10)
    assert d.timers[run.id, "s", "retry"] == T0 + timedelta(seconds=10)
    assert started(d.fire(run, "s", "retry")) == ["s"]
    batch = d.finish(run, "s", "failed", error="boom")
    assert events(batch, ev.StepFailed)[0].will_retry is False  # no attempts left


def test_escalation_adds_the_next_approvers_once_and_keeps_the_first() -> None:
    d = Driver()
    run = new_run(playbook([step("gate")]))
    d.turn(run)
    escalate = {"approvers": CAROL, "timeout_s": 120, "on_timeout": "approve"}
    approval = d.wait_at_gate(
        run, "gate", timeout_s=60, on_timeout="escalate", escalate=escalate, remind_s=30
    )
    d.later(60)
    batch = d.fire(run, "gate", "approval")
    merged = {"users": ["bob", "carol"], "usergroups": ["oncall"], "groups": []}
    (escalated,) = events(batch, ev.ApprovalEscalated)
    assert (escalated.approvers, escalated.added) == (merged, CAROL)
    assert escalated.deadline == T0 + timedelta(seconds=180)
    spec = d.approvals.rows[approval]["spec"]
    assert (spec["approvers"], spec["stage"], spec["on_timeout"]) == (merged, 1, "approve")
    assert (
        spec["escalate"] is None
        and spec["escalated_at"] == (T0 + timedelta(seconds=60)).isoformat()
    )
    assert d.approvals.rows[approval]["deadline_at"] == T0 + timedelta(seconds=180)
    assert d.approvals.status(approval) == "pending"
    assert d.timers[run.id, "gate", "approval"] == T0 + timedelta(seconds=180)
    assert d.timers[run.id, "gate", "remind"] == T0 + timedelta(seconds=90)
    assert run.steps["gate"].status is StepStatus.WAITING
    batch = d.fire(run, "gate", "approval")  # the second stage times out: no third
    assert events(batch, ev.ApprovalEscalated) == []
    assert d.approvals.status(approval) == "approved"
    assert run.steps["gate"].status is StepStatus.SUCCEEDED


def test_opening_a_gate() -> None:
    d = Driver()
    run = new_run(playbook([step("gate")]), requested_by="alice")
    d.turn(run)
    approval = d.wait_at_gate(run, "gate", timeout_s=60, min_approvals=2, show={"x": 1})
    row = d.approvals.rows[approval]
    assert (row["run_id"], row["step_id"], row["status"]) == (run.id, "gate", "pending")
    assert (row["requested_by"], row["deadline_at"]) == ("alice", T0 + timedelta(seconds=60))
    assert Gate.from_spec(row["spec"]) == run.steps["gate"].gate
    assert row["spec"]["min_approvals"] == 2 and row["spec"]["stage"] == 0
    assert (run.id, "gate", "remind") not in d.timers  # no remind: no reminder


def _child_spec() -> ChildRunSpec:
    return ChildRunSpec("child", {})


def _child_factory(parent: RunState, s: Any, spec: Any) -> tuple[RunState, list[Any]]:
    child = new_run(playbook([step("c")]), f"{parent.id}-child")
    child.parent_run_id, child.parent_step_id = parent.id, s.id
    return child, []


# --- the Gate's rules -------------------------------------------------------------------

SELF_APPROVAL = [  # (allowed, user, requested_by, refused)
    (False, "alice", "alice", True),
    (True, "alice", "alice", False),
    (False, "bob", "alice", False),
]


@pytest.mark.parametrize(("allowed", "user", "requester", "refused"), SELF_APPROVAL)
def test_self_approval(allowed: bool, user: str, requester: str, refused: bool) -> None:
    gate = Gate(approvers=BOB, allow_self_approval=allowed)
    assert gate.self_approval_refused(user, requester) is refused


def test_self_approval_knows_one_person_under_two_ids() -> None:
    same = lambda a, b: {a, b} <= {"alice", "U1"} or a == b  # noqa: E731
    assert Gate().self_approval_refused("U1", "alice", same)


DESCRIBED = [  # (approvers, self approval allowed, requester, text)
    (BOB, False, "alice", "bob"),
    ({"users": ["alice", "bob"]}, False, "alice", "bob"),
    ({"users": ["alice"]}, True, "alice", "alice"),
    ({}, False, "alice", "anyone but alice"),
    ({}, True, "alice", "anyone"),
    ({"users": ["alice", "bob"]}, True, "alice", "alice, bob"),
    (CAROL, False, "x", "carol, @oncall"),
    ({"groups": ["dba"]}, False, "x", "group dba"),
    ({"usergroups": ["@sre", "S0DBA"]}, False, "x", "@sre, S0DBA"),  # as written, one @
]


@pytest.mark.parametrize(("approvers", "allowed", "requester", "text"), DESCRIBED)
def test_describe_approvers(approvers: Any, allowed: bool, requester: str, text: str) -> None:
    gate = Gate(approvers=approvers, allow_self_approval=allowed)
    assert gate.describe_approvers(requester) == text


CLOSING = [  # (decision, people who approved, quorum, outcome)
    ("reject", 5, 1, "rejected"),
    ("approve", 0, 1, None),
    ("approve", 1, 1, "approved"),
    ("approve", 1, 2, None),
    ("approve", 3, 2, "approved"),
]


@pytest.mark.parametrize(("decision", "approved", "quorum", "outcome"), CLOSING)
def test_closing(decision: str, approved: int, quorum: int, outcome: str | None) -> None:
    assert gates.closing(decision, approved, quorum) == outcome


def test_people_counts_one_person_once() -> None:
    same = lambda a, b: {a, b} <= {"bob", "U2"} or a == b  # noqa: E731
    assert gates.people(["bob", "carol", "U2", "carol"], same) == ["bob", "carol"]


TIMEOUTS = [  # (on_timeout, escalate, escalates, outcome)
    ("reject", None, False, "timed_out"),
    ("approve", None, False, "approved"),
    ("escalate", Escalation(CAROL, 60), True, "timed_out"),
    ("escalate", None, False, "timed_out"),
    ("reject", Escalation(CAROL, 60), False, "timed_out"),
]


@pytest.mark.parametrize(("on_timeout", "escalate", "escalates", "outcome"), TIMEOUTS)
def test_timeouts(on_timeout: str, escalate: Any, escalates: bool, outcome: str) -> None:
    gate = Gate(on_timeout=on_timeout, escalate=escalate)
    assert (gate.escalation is not None, gate.timeout_outcome()) == (escalates, outcome)


def test_a_stored_gate_reads_back_as_it_was() -> None:
    gate = Gate(
        approvers=BOB,
        min_approvals=2,
        message="go?",
        allow_self_approval=True,
        on_timeout="escalate",
        show={"n": 1},
        escalate=Escalation(CAROL, 90.0, "approve"),
        remind_s=30.0,
        remind_at=T0,
        stage=0,
    )
    assert Gate.from_spec(gate.spec()) == gate
    assert gate.escalate is not None
    later, deadline = gate.escalated(gate.escalate, T0)
    assert Gate.from_spec(later.spec()) == later
    assert deadline == T0 + timedelta(seconds=90)
    assert "escalated_at" not in gate.spec() and later.spec()["escalated_at"] == T0.isoformat()


def test_an_old_or_partial_stored_gate_takes_the_defaults() -> None:
    gate = Gate.from_spec({"approvers": BOB})
    assert (gate.min_approvals, gate.on_timeout, gate.stage, gate.escalate) == (
        1,
        "reject",
        0,
        None,
    )
    assert not gate.allow_self_approval and gate.remind_at is None
    assert Gate.from_spec(None) == Gate()
