"""What the run machine leaves behind for people: the audit rows of a gate's life, the
log lines, the stop of a run as its rows say it, a child run's wait (no asyncio, no
database)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import events as ev
from engine.actions import ChildRunSpec
from engine.playbooks.foreach import Item, Tally
from engine.runs import items
from engine.runs import messages as msg
from engine.runs.gates import Escalation, Gate
from engine.runs.state import RunState, StepState, StepStatus
from storage.rows import Rows
from tests.fakes.machine import (
    T0,
    Driver,
    audits,
    events,
    gate_spec,
    new_run,
    playbook,
    rows,
    step,
)

BOB = {"users": ["bob"], "usergroups": [], "groups": []}
CAROL = {"users": ["carol"]}


def test_a_gate_s_life_in_the_audit_trail() -> None:
    d = Driver()
    run = new_run(playbook([step("gate")]), requested_by="alice")
    d.turn(run)
    escalate = {"approvers": CAROL, "timeout_s": 60, "on_timeout": "reject"}
    batch = d.suspend(
        run,
        "gate",
        approval=gate_spec(timeout_s=30, remind_s=10, on_timeout="escalate", escalate=escalate),
    )
    assert audits(batch) == [("alice", "approval-request", "g1", {"step": "gate"})]
    assert rows(batch, "audit_new")[0]["at"] == T0
    batch = d.fire(run, "gate", "remind")
    assert audits(batch) == [("baton", "approval-reminder", "g1", {})]
    assert rows(batch, "audit_new")[0]["at"] == T0 + timedelta(seconds=10)
    (reminded,) = events(batch, ev.ApprovalReminded)
    assert reminded.approval_id == "g1"
    batch = d.fire(run, "gate", "approval")
    assert audits(batch) == [("baton", "approval-escalated", "g1", {"added": CAROL})]
    assert rows(batch, "audit_new")[0]["at"] == T0 + timedelta(seconds=30)
    (escalated,) = events(batch, ev.ApprovalEscalated)
    assert escalated.approval_id == "g1"
    (row,) = rows(batch, "step")
    assert row["wake_at"] == T0 + timedelta(seconds=90) and row["status"] == "waiting"
    batch = d.fire(run, "gate", "approval")
    assert audits(batch) == [("baton", "approval-timeout", "g1", {"outcome": "timed_out"})]
    assert rows(batch, "audit_new")[0]["at"] == T0 + timedelta(seconds=90)
    assert d.approvals.rows["g1"]["closed_at"] == T0 + timedelta(seconds=90)
    assert d.approvals.rows["g1"]["outcome_reason"] == "timeout"
    (closed,) = events(batch, ev.ApprovalClosed)
    assert (closed.approval_id, closed.outcome, closed.reason) == ("g1", "timed_out", "timeout")
    (failed,) = events(batch, ev.StepFailed)
    assert failed.output == {"approval_id": "g1", "approved_by": [], "timed_out": True}


def test_a_stale_reminder_reminds_nobody() -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 2})]))
    d.turn(run)
    d.finish(run, "s", "failed")  # waits for its retry, not at a gate
    batch = d.turn(run, msg.Wake("s", "remind"))
    assert batch.ops == [] and batch.events == []


def test_escalating_a_gate_without_reminders_sets_none() -> None:
    d = Driver()
    run = new_run(playbook([step("gate")]))
    d.turn(run)
    escalate = {"approvers": CAROL, "timeout_s": 60}
    d.suspend(
        run, "gate", approval=gate_spec(timeout_s=30, on_timeout="escalate", escalate=escalate)
    )
    d.fire(run, "gate", "approval")
    assert (run.id, "gate", "remind") not in d.timers
    gate = run.steps["gate"].gate
    assert gate is not None and gate.remind_at is None and gate.on_timeout == "reject"


def test_a_cancelled_gate_says_who_cancelled_it_and_when() -> None:
    d = Driver()
    run = new_run(playbook([step("gate"), step("work")]))
    d.turn(run)
    d.suspend(run, "gate", approval=gate_spec())
    d.later(5)
    d.turn(run, msg.Stop(status="cancelled", by="dave"))
    row = d.approvals.rows["g1"]
    assert (row["status"], row["outcome_reason"]) == ("cancelled", "dave")
    assert row["closed_at"] == T0 + timedelta(seconds=5)
    assert d.children_stopped == []  # a gate has no child run
    assert run.steps["gate"].finished_at == T0 + timedelta(seconds=5)


def test_log_lines_rows_and_events() -> None:
    d = Driver()
    run = new_run(playbook([step("s")]))
    d.turn(run)
    at = T0 + timedelta(seconds=3)
    batch = d.turn(run, msg.Logged("s", "disk at 91%", "warning", at))
    assert [op.kind for op in batch.ops if isinstance(op, Rows)] == ["log_new"]
    assert rows(batch, "log_new") == [
        {"run_id": "r1", "step_id": "s", "at": at, "level": "warning", "message": "disk at 91%"}
    ]
    (line,) = events(batch, ev.RunLogged)
    assert (line.run_id, line.playbook, line.at, line.step_id, line.level, line.message) == (
        "r1",
        "pb",
        at,
        "s",
        "warning",
        "disk at 91%",
    )


def test_a_fan_out_s_progress_is_dated_now() -> None:
    d = Driver()
    run = new_run(playbook([step("fan")]))
    d.turn(run)
    d.later(7)
    news = items.ItemNews("fan", "item", (Item(0, "a", "running", 1),), Tally(1, running=1))
    (progress,) = events(d.turn(run, news), ev.ItemsProgressed)
    assert progress.at == T0 + timedelta(seconds=7)


def _child(parent: RunState, s: StepState, spec: ChildRunSpec) -> tuple[RunState, list[Any]]:
    child = new_run(playbook([step("c")]), "kid")
    return child, [Rows("run_new", [{"id": "kid"}])]


def test_a_child_run_s_rows_commit_with_its_parent_s_wait() -> None:
    d = Driver(spawn_child=_child)
    run = new_run(playbook([step("call")]))
    d.turn(run)
    batch = d.suspend(run, "call", child=ChildRunSpec("child", {}))
    assert rows(batch, "run_new") == [{"id": "kid"}]
    assert rows(batch, "attempt_end")[0]["status"] == "waiting"
    (row,) = rows(batch, "step")
    assert (row["status"], row["wake_reason"], row["child_run_id"]) == ("waiting", "child", "kid")
    (waiting,) = events(batch, ev.StepWaiting)
    assert waiting.reason == "child run kid"


INTERRUPTIONS = [  # (phase, continue_on_error, already failing, the run's failed step, error)
    ("main", False, False, "s", "step s its worker died"),
    ("main", True, False, None, None),
    ("main", False, True, "earlier", "step earlier failed: x"),
    ("finally", False, False, "s", "step s failed: its worker died"),  # as it ends
]


@pytest.mark.parametrize(("phase", "may_fail", "failing", "failed", "error"), INTERRUPTIONS)
def test_an_interrupted_main_step_fails_its_run(
    phase: str, may_fail: bool, failing: bool, failed: str | None, error: str | None
) -> None:
    d = Driver()
    s = step("s", continue_on_error=may_fail)
    pb = playbook([s, step("w")]) if phase == "main" else playbook([step("w")], finally_=[s])
    run = new_run(pb)
    d.turn(run)
    if phase == "finally":
        d.finish(run, "w")
    elif failing:
        run.failed_step, run.error = "earlier", "step earlier failed: x"
    d.finish(run, "s", "interrupted", error="its worker died")
    assert run.steps["s"].status is StepStatus.INTERRUPTED
    assert (run.failed_step, run.error) == (failed, error)


def test_a_stored_escalation_reads_back_with_its_defaults() -> None:
    assert Escalation.from_spec({"approvers": CAROL}) == Escalation(CAROL, 0.0, "reject")
    gate = Gate.from_spec(
        {"escalate": {"approvers": CAROL, "timeout_s": 5}, "on_timeout": "escalate"}
    )
    assert gate.escalation == Escalation(CAROL, 5.0, "reject")
