"""The run machine's DAG rules, driven by hand (no asyncio, no database): which steps
start, which are skipped and why, phases, and how the run ends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import events as ev
from engine.runs import messages as msg
from engine.runs.state import RunStatus, StepStatus
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

# (steps, what starts in the first turn): every step whose needs have ended starts, in
# order, wherever it is listed (a ready step after a join that still waits starts too)
FIRST_TURN = {
    "independent": ([step("a"), step("b"), step("c")], ["a", "b", "c"]),
    "ready after a waiting join": ([step("w"), step("j", "w"), step("r")], ["w", "r"]),
    "two joins then a ready one": (
        [step("w"), step("j1", "w"), step("j2", "w"), step("r")],
        ["w", "r"],
    ),
    "chain": ([step("a"), step("b", "a"), step("c", "b")], ["a"]),
    "when false then ready": (
        [step("s", when="false"), step("r")],
        ["r"],
    ),
}


@pytest.mark.parametrize("case", FIRST_TURN)
def test_every_ready_step_starts(case: str) -> None:
    steps, first = FIRST_TURN[case]
    d = Driver()
    run = new_run(playbook(steps))
    batch = d.turn(run)
    assert started(batch) == first
    assert [e.step_id for e in events(batch, ev.StepStarted)] == first
    assert all(run.steps[s].status is StepStatus.RUNNING for s in first)


def test_a_ready_step_after_a_waiting_join_starts_in_a_later_turn() -> None:
    """The dependents of a step that moved are looked at, not only the first of them."""
    d = Driver()
    run = new_run(playbook([step("a"), step("w"), step("j", "a", "w"), step("r", "a")]))
    d.turn(run)
    batch = d.finish(run, "a")
    assert started(batch) == ["r"]  # j still waits for w
    assert run.steps["j"].status is StepStatus.PENDING
    assert started(d.finish(run, "w")) == ["j"]


def test_a_join_after_a_waiting_branch_starts_once_the_gate_is_approved() -> None:
    d = Driver()
    run = new_run(playbook([step("a"), step("gate"), step("j", "a", "gate")]))
    d.turn(run)
    approval = d.wait_at_gate(run, "gate")
    assert started(d.finish(run, "a")) == []
    assert run.status is RunStatus.WAITING
    batch = d.turn(run, msg.GateClosed("gate", approval, "approved", output={"ok": 1}))
    assert started(batch) == ["j"]
    assert run.steps["gate"].status is StepStatus.SUCCEEDED
    assert run.steps["gate"].output == {"ok": 1}


# (steps, the failing step, {step: (status, skip reason or None)} once it failed)
FAILURES: dict[str, tuple[list[dict[str, Any]], str, dict[str, tuple[StepStatus, str | None]]]] = {
    "dependent skipped": (
        [step("a"), step("b", "a")],
        "a",
        {"b": (StepStatus.SKIPPED, "needs a, which did not succeed")},
    ),
    "continue_on_error lets it run": (
        [step("a", continue_on_error=True), step("b", "a")],
        "a",
        {"b": (StepStatus.RUNNING, None)},
    ),
    "independent pending step not started": (
        [step("a"), step("w"), step("late", "w")],
        "a",
        {"late": (StepStatus.PENDING, None)},
    ),
}


@pytest.mark.parametrize("case", FAILURES)
def test_a_failed_step(case: str) -> None:
    steps, failing, expected = FAILURES[case]
    d = Driver()
    run = new_run(playbook(steps))
    d.turn(run)
    batch = d.finish(run, failing, "failed", error="boom")
    for sid, (status, reason) in expected.items():
        assert run.steps[sid].status is status
        skipped = [e.reason for e in events(batch, ev.StepSkipped) if e.step_id == sid]
        assert skipped == ([reason] if reason else [])


def test_a_failed_run_skips_what_is_left_and_runs_on_failure_then_finally() -> None:
    d = Driver()
    pb = playbook(
        [step("a"), step("w"), step("late", "w")],
        on_failure=[step("alert")],
        finally_=[step("clean")],
    )
    run = new_run(pb)
    d.turn(run)
    d.finish(run, "a", "failed", error="boom")
    assert run.failed_step == "a" and run.error == "step a failed: boom"
    batch = d.finish(run, "w")
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("late", "not run: step a failed")
    ]
    assert started(batch) == ["alert"]
    assert started(d.finish(run, "alert")) == ["clean"]
    batch = d.finish(run, "clean")
    assert d.ended[run.id]
    (end,) = events(batch, ev.RunFailed)
    assert (end.status, end.failed_step, end.error) == ("failed", "a", "step a failed: boom")


def test_on_failure_is_skipped_when_nothing_failed() -> None:
    d = Driver()
    run = new_run(playbook([step("a")], on_failure=[step("alert")], finally_=[step("clean")]))
    d.turn(run)
    batch = d.finish(run, "a")
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("alert", "not needed: no step failed")
    ]
    assert started(batch) == ["clean"]
    batch = d.finish(run, "clean")
    (end,) = events(batch, ev.RunSucceeded)
    assert end.error is None and run.status is RunStatus.SUCCEEDED


def test_a_broken_finally_step_fails_a_run_that_succeeded() -> None:
    d = Driver()
    run = new_run(playbook([step("a")], finally_=[step("clean")]))
    d.turn(run)
    d.finish(run, "a")
    batch = d.finish(run, "clean", "failed", error="disk")
    (end,) = events(batch, ev.RunFailed)
    assert (end.failed_step, end.error) == ("clean", "step clean failed: disk")
    ended = [op for op in batch.ops if getattr(op, "table", None) is t.runs]
    assert statement_values(ended[-1])["status"] == "failed"


def test_when_false_skips_and_its_dependents_run() -> None:
    d = Driver()
    run = new_run(playbook([step("s", when="1 == 2"), step("after", "s")]))
    batch = d.turn(run)
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("s", "when: 1 == 2 is false")
    ]
    assert started(batch) == ["after"]  # a skipped step is not broken
    (row, _) = [r for op in batch.ops if getattr(op, "kind", "") == "step" for r in op.rows]
    assert (row["step_id"], row["status"], row["error"], row["finished_at"]) == (
        "s",
        "skipped",
        None,
        T0,
    )


def test_a_when_that_raises_fails_its_step_with_an_attempt() -> None:
    d = Driver()
    run = new_run(playbook([step("s", when="params.x.y", retry={"attempts": 3}), step("b", "s")]))
    batch = d.turn(run)
    s = run.steps["s"]
    assert s.status is StepStatus.FAILED and s.attempts == 1
    assert s.error is not None and s.error.startswith("when: template 'params.x.y'")
    (failed,) = events(batch, ev.StepFailed)
    assert failed.will_retry is False  # a broken condition is not retried
    kinds = [getattr(op, "kind", None) for op in batch.ops]
    assert kinds.count("attempt_new") == 1 and kinds.count("attempt_end") == 1
    assert run.steps["b"].status is StepStatus.SKIPPED
    assert run.failed_step == "s" and d.ended[run.id]


def test_the_run_waits_only_when_every_live_step_waits() -> None:
    d = Driver()
    run = new_run(playbook([step("gate"), step("work")]))
    d.turn(run)
    d.wait_at_gate(run, "gate")
    assert run.status is RunStatus.RUNNING  # work still runs
    batch = d.finish(run, "work")
    assert run.status is RunStatus.WAITING
    (waiting,) = events(batch, ev.RunWaiting)
    assert waiting.reason == "approval"
    assert statement_values(batch.ops[-1]) == {"status": "waiting"}


def test_nothing_starts_while_the_node_stops() -> None:
    d = Driver(stopping=True)
    run = new_run(playbook([step("a")]))
    batch = d.turn(run)
    assert started(batch) == [] and not d.ended[run.id]
    assert run.steps["a"].status is StepStatus.PENDING


def test_a_skipped_need_is_not_broken_but_a_failing_run_starts_nothing() -> None:
    d = Driver()
    run = new_run(playbook([step("a"), step("b", "a"), step("c", "b"), step("w")]))
    d.turn(run)
    batch = d.finish(run, "a", "failed")
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("b", "needs a, which did not succeed")
    ]
    assert run.steps["c"].status is StepStatus.PENDING and not d.ended[run.id]  # w runs
    batch = d.finish(run, "w")
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("c", "not run: step a failed")
    ]


def test_a_skip_then_a_start_in_one_pass_still_looks_at_the_skipped_step_s_dependents() -> None:
    d = Driver()
    run = new_run(playbook([step("s", when="false"), step("r"), step("d", "s")]))
    batch = d.turn(run)
    assert started(batch) == ["r", "d"]


def test_in_one_turn_a_broken_need_and_a_blocked_step_each_get_their_reason() -> None:
    d = Driver()
    run = new_run(playbook([step("a"), step("x"), step("b", "x"), step("c", "a")]))
    d.turn(run)
    batch = d.turn(run, msg.Finished("a", 1, "failed"), msg.Finished("x", 1, "succeeded"))
    assert [(e.step_id, e.reason) for e in events(batch, ev.StepSkipped)] == [
        ("c", "needs a, which did not succeed"),
        ("b", "not run: step a failed"),
    ]


def test_in_finally_a_broken_need_does_not_hold_up_a_ready_step() -> None:
    d = Driver()
    pb = playbook(
        [step("m")], finally_=[step("z1"), step("zx"), step("z2", "z1"), step("z3", "zx")]
    )
    run = new_run(pb)
    d.turn(run)
    d.finish(run, "m")
    batch = d.turn(run, msg.Finished("z1", 1, "failed"), msg.Finished("zx", 1, "succeeded"))
    assert [e.step_id for e in events(batch, ev.StepSkipped)] == ["z2"]
    assert started(batch) == ["z3"] and not d.ended[run.id]


def test_a_failed_run_cancelled_keeps_its_failure() -> None:
    d = Driver()
    run = new_run(playbook([step("a"), step("w")]))
    d.turn(run)
    d.finish(run, "a", "failed", error="boom")
    d.turn(run, msg.Stop(status="cancelled", by="dave"))
    batch = d.finish(run, "w", "cancelled")
    (end,) = events(batch, ev.RunCancelled)
    assert (end.error, end.failed_step, end.by) == ("step a failed: boom", "a", "dave")
    (update,) = updates_of(batch, t.runs)
    assert conditions(update) == {"id": run.id}
    assert statement_values(update) == {
        "status": "cancelled",
        "finished_at": T0,
        "error": "step a failed: boom",
        "failed_step": "a",
    }


def test_the_run_s_waiting_reasons_and_its_row() -> None:
    d = Driver()
    run = new_run(playbook([step("gate"), step("s", retry={"attempts": 2})]))
    d.turn(run)
    d.wait_at_gate(run, "gate")
    d.later(1)
    batch = d.finish(run, "s", "failed")
    (waiting,) = events(batch, ev.RunWaiting)
    assert (waiting.run_id, waiting.playbook, waiting.at) == ("r1", "pb", T0 + timedelta(seconds=1))
    assert waiting.reason == "approval, retry"
    (update,) = updates_of(batch, t.runs)
    assert conditions(update) == {"id": "r1"} and statement_values(update) == {"status": "waiting"}
    assert not d.ended[run.id]
