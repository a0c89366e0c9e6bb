"""The run machine's stop, retry, timeout, child-run and resume rules, driven by hand (no
asyncio, no database)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from engine import events as ev
from engine.actions import ChildRunSpec
from engine.runs import messages as msg
from engine.runs.batch import Batch, StopChild
from engine.runs.moves import JITTER
from engine.runs.state import RunState, RunStatus, StepState, StepStatus
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

STOPS = [  # (status, by, the run's stored error)
    ("cancelled", "dave", None),
    ("timed_out", "timeout", "run timed out after 0:10:00"),
]


@pytest.mark.parametrize(("status", "by", "error"), STOPS)
def test_the_stop_reason_is_stored_with_who_stopped_it(
    status: str, by: str, error: str | None
) -> None:
    d = Driver()
    run = new_run(playbook([step("a")], finally_=[step("clean")], timeout="10m"))
    d.turn(run)
    batch = d.turn(run, msg.Stop(status=status, by=by))
    (update, *_) = updates_of(batch, t.runs)
    assert conditions(update) == {"id": run.id}
    assert statement_values(update) == {"stop_reason": status, "stopped_by": by, "error": error}
    assert (run.stop_reason, run.stopped_by, run.error) == (status, by, error)
    again = d.turn(run, msg.Stop(status="cancelled", by="erin"))  # the first one stands
    assert again.ops == [] and run.stopped_by == by


def test_a_cancel_cancels_running_attempts_and_ends_the_rest_but_finally() -> None:
    d = Driver()
    pb = playbook(
        [
            step("run1"),
            step("gate"),
            step("retrying", retry={"attempts": 3}),
            step("later", "run1"),
        ],
        finally_=[step("clean")],
    )
    run = new_run(pb)
    d.turn(run)
    approval = d.wait_at_gate(run, "gate", timeout_s=60)
    d.finish(run, "retrying", "failed", error="flaky")
    assert run.steps["retrying"].status is StepStatus.WAITING
    batch = d.turn(run, msg.Stop(status="cancelled", by="dave"))
    assert d.task_cancels == [(run.id, "run1", "cancelled")]
    assert run.steps["run1"].status is StepStatus.RUNNING  # until its attempt ends
    for sid in ("gate", "retrying", "later"):
        assert run.steps[sid].status is StepStatus.CANCELLED
    assert [e.step_id for e in events(batch, ev.StepCancelled)] == ["gate", "retrying", "later"]
    assert d.approvals.status(approval) == "cancelled"
    assert not [k for k in d.timers if k[0] == run.id]  # retry and approval timers gone
    assert started(batch) == []
    batch = d.finish(run, "run1", "cancelled", error="cancelled by dave")
    assert started(batch) == ["clean"]  # finally runs on a cancelled run
    batch = d.finish(run, "clean")
    (end,) = events(batch, ev.RunCancelled)
    assert (end.by, end.error, run.status) == ("dave", "cancelled by dave", RunStatus.CANCELLED)


def test_a_timed_out_run_ends_timed_out() -> None:
    d = Driver()
    run = new_run(playbook([step("a")], timeout="10m"))
    d.turn(run)
    d.turn(run, msg.Stop(status="timed_out", by="timeout"))
    batch = d.finish(run, "a", "cancelled")
    (end,) = events(batch, ev.RunTimedOut)
    assert end.error == "run timed out after 0:10:00"


def test_a_cancel_stops_a_waiting_child_run() -> None:
    d = Driver(spawn_child=_child_factory)
    run = new_run(playbook([step("call")]))
    d.turn(run)
    d.suspend(run, "call", child=ChildRunSpec("child", {"x": 1}))
    child = d.children_started[0]
    assert (child.parent_run_id, run.steps["call"].child_run_id) == (run.id, child.id)
    d.turn(run, msg.Stop(status="cancelled", by="dave"))
    assert d.children_stopped == [StopChild(child.id, "cancelled", "dave")]


def test_a_child_run_that_cannot_be_started_fails_its_step() -> None:
    d = Driver()  # its spawn_child refuses: no such playbook
    run = new_run(playbook([step("call", retry={"attempts": 3}), step("after", "call")]))
    d.turn(run)
    batch = d.suspend(run, "call", child=ChildRunSpec("nope", {}))
    s = run.steps["call"]
    assert (s.status, s.error, s.child_run_id) == (StepStatus.FAILED, "no playbook 'nope'", None)
    assert d.children_started == []
    (failed,) = events(batch, ev.StepFailed)
    assert failed.will_retry is False
    assert events(batch, ev.StepWaiting) == []
    assert [
        r["status"] for op in batch.ops if getattr(op, "kind", "") == "step" for r in op.rows
    ] == [
        "failed",
        "skipped",
    ]
    assert run.steps["after"].status is StepStatus.SKIPPED and d.ended[run.id]


def test_a_child_run_that_succeeds_completes_its_step() -> None:
    d = Driver(spawn_child=_child_factory)
    run = new_run(playbook([step("call")]))
    d.turn(run)
    d.suspend(run, "call", child=ChildRunSpec("child", {}))
    child_id = run.steps["call"].child_run_id or ""
    batch = d.turn(run, msg.ChildEnded("call", "other-child", "succeeded"))
    assert batch.ops == [] and run.steps["call"].status is StepStatus.WAITING
    d.turn(run, msg.ChildEnded("call", child_id, "succeeded", output={"run_id": child_id}))
    assert run.steps["call"].output == {"run_id": child_id}
    assert d.ended[run.id] and run.status is RunStatus.SUCCEEDED


JITTERED = [  # (delay s, backoff, attempt failing, jitter factor, retry after s)
    (10, "fixed", 1, JITTER[0], 5.0),
    (10, "fixed", 1, JITTER[1], 10.0),
    (10, "exponential", 2, JITTER[0], 10.0),
]


@pytest.mark.parametrize(("delay", "backoff", "failing", "factor", "after"), JITTERED)
def test_jitter_scales_the_retry_delay(
    delay: int, backoff: str, failing: int, factor: float, after: float
) -> None:
    asked: list[tuple[float, float]] = []

    def jitter(lo: float, hi: float) -> float:
        asked.append((lo, hi))
        return factor

    d = Driver(jitter=jitter)
    retry = {"attempts": 5, "delay": f"{delay}s", "backoff": backoff, "jitter": True}
    run = new_run(playbook([step("s", retry=retry)]))
    d.turn(run)
    for _ in range(failing - 1):
        d.finish(run, "s", "failed")
        d.fire(run, "s", "retry")
    now = d.clock.now()
    batch = d.finish(run, "s", "failed")
    assert asked[-1] == (0.5, 1.0)
    assert events(batch, ev.StepFailed)[0].retry_at == now + timedelta(seconds=after)


def test_jitter_stays_within_half_and_all_of_the_delay() -> None:
    rng = random.Random(7)
    seen = []
    for _ in range(200):
        d = Driver(jitter=rng.uniform)
        run = new_run(playbook([step("s", retry={"attempts": 2, "delay": "10s", "jitter": True})]))
        d.turn(run)
        d.finish(run, "s", "failed")
        seen.append((d.timers[run.id, "s", "retry"] - T0).total_seconds())
    assert all(5.0 <= s <= 10.0 for s in seen)
    assert min(seen) < 5.5 and max(seen) > 9.5  # the whole range is used


def test_no_jitter_no_random_factor() -> None:
    d = Driver(jitter=lambda lo, hi: 99.0)
    run = new_run(playbook([step("s", retry={"attempts": 2, "delay": "10s"})]))
    d.turn(run)
    d.finish(run, "s", "failed")
    assert d.timers[run.id, "s", "retry"] == T0 + timedelta(seconds=10)


@pytest.mark.parametrize("why", ["stopping run", "stopping node"])
def test_no_retry_wait_while_stopping(why: str) -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 3}), step("t")]))
    d.turn(run)
    if why == "stopping run":
        d.turn(run, msg.Stop(status="cancelled", by="dave"))
    else:
        d.stopping = True
    batch = d.finish(run, "s", "failed", error="boom")
    assert events(batch, ev.StepFailed)[0].will_retry is False
    assert run.steps["s"].status is StepStatus.FAILED


def test_a_retry_timer_after_a_stop_starts_nothing() -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 3}), step("t")]))
    d.turn(run)
    d.finish(run, "s", "failed")
    run.stop_reason = "cancelled"  # as a stop whose timer cancel came too late
    batch = d.turn(run, msg.Wake("s", "retry"))
    assert started(batch) == []


def test_a_step_timeout_cancels_only_a_running_attempt() -> None:
    d = Driver()
    run = new_run(playbook([step("s", timeout="5s"), step("gate")]))
    d.turn(run)
    d.wait_at_gate(run, "gate")
    d.turn(run, msg.Wake("s", "timeout"), msg.Wake("gate", "timeout"))
    assert d.task_cancels == [(run.id, "s", "timeout")]


OUTCOMES = [  # (outcome, cancel reason, step status, event, fails the run)
    ("cancelled", None, StepStatus.CANCELLED, ev.StepCancelled, False),
    ("interrupted", None, StepStatus.INTERRUPTED, ev.StepInterrupted, True),
    ("interrupted", "shutdown", StepStatus.INTERRUPTED, None, False),
    ("timed_out", None, StepStatus.FAILED, ev.StepFailed, True),
]


@pytest.mark.parametrize(("outcome", "reason", "status", "event", "fails"), OUTCOMES)
def test_how_an_attempt_ended(
    outcome: str, reason: str | None, status: StepStatus, event: Any, fails: bool
) -> None:
    d = Driver()
    run = new_run(playbook([step("s"), step("w")]))
    d.turn(run)
    run.steps["s"].cancel_reason = reason
    batch = d.finish(run, "s", outcome, error="why", output={"partial": "x"})
    s = run.steps["s"]
    assert (s.status, s.error, s.output) == (status, "why", {"partial": "x"})
    assert s.wake_reason == ("shutdown" if reason == "shutdown" else None)
    kinds = [type(e) for e in batch.events if getattr(e, "step_id", "") == "s"]
    assert kinds == ([event] if event else [])
    assert run.failing is fails


def test_a_late_result_of_an_earlier_attempt_is_ignored() -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 3})]))
    d.turn(run)
    d.finish(run, "s", "failed")
    d.fire(run, "s", "retry")
    batch = d.turn(run, msg.Finished("s", 1, "succeeded"))
    assert batch.ops == [] and run.steps["s"].status is StepStatus.RUNNING


def test_a_wait_completes_at_its_time() -> None:
    d = Driver()
    run = new_run(playbook([step("s"), step("t", "s")]))
    d.turn(run)
    until = T0 + timedelta(minutes=5)
    d.suspend(run, "s", until=until)
    assert d.timers[run.id, "s", "wait"] == until and run.status is RunStatus.WAITING
    assert started(d.turn(run, msg.Wake("s", "retry"))) == []  # not what it waits for
    batch = d.fire(run, "s", "wait")
    assert run.steps["s"].output == {"waited_until": until.isoformat()}
    (row, _) = [r for op in batch.ops if getattr(op, "kind", "") == "step" for r in op.rows]
    assert (row["status"], row["wake_at"], row["wake_reason"]) == ("succeeded", None, None)
    assert started(batch) == ["t"]


RESUMES = [  # (retry attempts, idempotent, stopped, rerun)
    (1, False, False, False),
    (2, False, False, True),
    (1, True, False, True),
    (2, False, True, False),
]


@pytest.mark.parametrize(("attempts", "idempotent", "stopped", "rerun"), RESUMES)
def test_a_step_running_when_baton_stopped(
    attempts: int, idempotent: bool, stopped: bool, rerun: bool
) -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": attempts}, idempotent=idempotent)]))
    d.turn(run)
    d.running.clear()
    if stopped:
        run.stop_reason = "cancelled"
    batch = Batch()
    d.machine.recover_running(run, batch)
    (interrupted,) = events(batch, ev.StepInterrupted)
    assert interrupted.rerun is rerun
    s = run.steps["s"]
    if rerun:
        assert (s.status, s.attempts) == (StepStatus.RUNNING, 2)
    else:
        assert s.status is StepStatus.INTERRUPTED and s.error is not None
        assert run.failed_step == "s"


def test_log_lines_are_cleaned_and_committed() -> None:
    d = Driver()
    run = new_run(playbook([step("s")]))
    d.turn(run)
    batch = d.turn(run, msg.Logged("s", "a\x00b", "info", T0))
    (logged,) = events(batch, ev.RunLogged)
    assert logged.message == batch.ops[0].rows[0]["message"]
    assert "\x00" not in logged.message


def test_a_worker_note_shows_what_the_step_waits_for() -> None:
    d = Driver()
    run = new_run(playbook([step("s")]))
    d.turn(run)
    batch = d.turn(run, msg.WorkerNote("s", 1, "a worker labelled dc1"))
    assert run.steps["s"].output == {"waiting_for": "a worker labelled dc1"}
    assert events(batch, ev.StepWaiting)[0].reason == "a worker labelled dc1"
    d.turn(run, msg.WorkerNote("s", 1, None))
    assert run.steps["s"].output is None


def _child_factory(
    parent: RunState, s: StepState, spec: ChildRunSpec
) -> tuple[RunState, list[Any]]:
    child = new_run(playbook([step("c")]), f"{parent.id}-child")
    child.parent_run_id, child.parent_step_id = parent.id, s.id
    return child, []


def test_a_finally_step_waiting_to_retry_when_the_run_is_cancelled_retries() -> None:
    """A cancel leaves ``finally`` alone: its step waiting for a retry tries again, and the
    run ends (it waited for ever: the retry was refused for the stopping run)."""
    d = Driver()
    run = new_run(playbook([step("a")], finally_=[step("clean", retry={"attempts": 2})]))
    d.turn(run)
    d.finish(run, "a")
    d.finish(run, "clean", "failed", error="busy")
    d.turn(run, msg.Stop(status="cancelled", by="dave"))
    assert run.steps["clean"].status is StepStatus.WAITING
    assert started(d.fire(run, "clean", "retry")) == ["clean"]
    batch = d.finish(run, "clean")
    (end,) = events(batch, ev.RunCancelled)
    assert end.by == "dave" and d.ended[run.id]
