"""What the run machine writes: the rows of a step and of its attempts as it moves, the
events' fields, a fan-out's news, masking, and a resume after a shutdown (no asyncio, no
database)."""

from __future__ import annotations

from datetime import timedelta

from engine import events as ev
from engine.playbooks.foreach import Item, Tally
from engine.runs import items
from engine.runs import messages as msg
from engine.runs.batch import Batch, Settle
from engine.runs.state import StepStatus
from engine.secrets import Masker
from tests.fakes.machine import T0, Driver, events, gate_spec, new_run, playbook, rows, step


def test_a_step_s_rows_and_events_from_start_to_end() -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 2, "delay": "3s"})]))
    run.attempt = 2
    batch = d.turn(run)
    (new,) = rows(batch, "attempt_new")
    assert new == {
        "run_id": "r1",
        "step_id": "s",
        "number": 1,
        "run_attempt": 2,
        "status": "running",
        "started_at": T0,
    }
    (row,) = rows(batch, "step")
    assert (row["run_id"], row["step_id"], row["status"], row["attempts"]) == (
        "r1",
        "s",
        "running",
        1,
    )
    assert (row["started_at"], row["finished_at"], row["wake_at"]) == (T0, None, None)
    (start,) = events(batch, ev.StepStarted)
    assert (start.run_id, start.playbook, start.at, start.phase, start.attempt) == (
        "r1",
        "pb",
        T0,
        "main",
        1,
    )
    d.later(2)
    batch = d.finish(run, "s", "failed", error="boom", output={"o": 1}, attachments={"a": "x"})
    (end,) = rows(batch, "attempt_end")
    assert end == {
        "run_id": "r1",
        "step_id": "s",
        "run_attempt": 2,
        "number": 1,
        "status": "failed",
        "finished_at": T0 + timedelta(seconds=2),
        "output": {"o": 1},
        "error": "boom",
        "attachments": {"a": "x"},
    }
    (row,) = rows(batch, "step")
    assert (row["status"], row["wake_reason"]) == ("waiting", "retry")
    assert row["wake_at"] == T0 + timedelta(seconds=5) and row["finished_at"] is None
    (failed,) = events(batch, ev.StepFailed)
    assert (failed.duration, failed.output, failed.attempt) == (2.0, {"o": 1}, 1)
    d.fire(run, "s", "retry")
    d.later(4)
    batch = d.finish(run, "s", output={"ok": True})
    (end,) = rows(batch, "attempt_end")
    assert (end["number"], end["status"], end["output"], end["error"]) == (
        2,
        "succeeded",
        {"ok": True},
        None,
    )
    assert end["attachments"] is None
    (row,) = rows(batch, "step")
    assert (row["status"], row["attempts"], row["error"], row["output"]) == (
        "succeeded",
        2,
        None,
        {"ok": True},
    )
    assert (row["started_at"], row["finished_at"]) == (T0, T0 + timedelta(seconds=9))
    (done,) = events(batch, ev.StepSucceeded)
    assert (done.duration, done.output, done.attempt) == (4.0, {"ok": True}, 2)
    (finished,) = events(batch, ev.RunSucceeded)
    assert (finished.duration, finished.status, finished.at) == (
        9.0,
        "succeeded",
        T0 + timedelta(seconds=9),
    )


def test_what_an_action_returns_is_masked_and_made_storable() -> None:
    d = Driver()
    run = new_run(playbook([step("s"), step("t")]))
    run.masker = Masker(["hunter22"])
    d.turn(run)
    batch = d.finish(
        run, "s", output={"pw": "hunter22", "bad": "a\x00b"}, attachments={"f": "hunter22"}
    )
    (end,) = rows(batch, "attempt_end")
    assert end["output"] == {"pw": "***", "bad": "a\ufffdb"}
    assert end["attachments"] == {"f": "***"}
    batch = d.finish(run, "t", "failed", error="login hunter22 refused")
    assert run.steps["t"].error == "login *** refused"
    assert "hunter22" not in str(rows(batch, "attempt_end"))


def test_a_gate_s_message_and_shown_values_are_masked() -> None:
    d = Driver()
    run = new_run(playbook([step("gate")]))
    run.masker = Masker(["hunter22"])
    d.turn(run)
    batch = d.suspend(
        run, "gate", approval=gate_spec(message="use hunter22?", show={"pw": "hunter22"})
    )
    (asked,) = events(batch, ev.ApprovalRequested)
    assert (asked.message, asked.show) == ("use ***?", {"pw": "***"})
    assert asked.requested_by == "alice" and asked.min_approvals == 1


def test_a_fan_out_s_news_in_one_turn_is_one_progress_event_per_step() -> None:
    d = Driver()
    run = new_run(playbook([step("fan"), step("other")]))
    d.turn(run)
    planned = tuple(Item(i, f"h{i}") for i in range(3))
    one = items.ItemNews("fan", "item_new", planned, Tally(total=3), committed="first")
    two = items.ItemNews("fan", "item", (Item(0, "h0", "succeeded", 1),), Tally(3, done=1))
    three = items.ItemNews("other", "item", (Item(0, "x", "running", 1),), Tally(1, running=1))
    batch = d.turn(run, one, two, three)
    progress = events(batch, ev.ItemsProgressed)
    assert [(e.step_id, e.done, e.total) for e in progress] == [("fan", 1, 3), ("other", 0, 1)]
    assert [op.kind for op in batch.ops] == ["item_new", "item", "item"]
    assert [e for e in batch.effects if isinstance(e, Settle)] == [Settle("first")]


def test_a_step_interrupted_by_a_shutdown_is_decided_at_resume() -> None:
    d = Driver()
    run = new_run(playbook([step("s", idempotent=True)]))
    d.turn(run)
    run.steps["s"].cancel_reason = "shutdown"
    d.finish(run, "s", "interrupted", error="interrupted by shutdown")
    assert run.steps["s"].wake_reason == "shutdown" and not run.failing
    batch = Batch()
    d.machine.recover_running(run, batch)
    assert run.steps["s"].status is StepStatus.RUNNING and run.steps["s"].attempts == 2
    assert rows(batch, "attempt_end") == []  # its attempt ended already
    (interrupted,) = events(batch, ev.StepInterrupted)
    assert interrupted.rerun


def test_resume_leaves_steps_that_did_not_die_alone() -> None:
    d = Driver()
    run = new_run(playbook([step("a"), step("b", "a"), step("w")]))
    d.turn(run)
    d.finish(run, "a", "interrupted", error="worker died")
    assert run.steps["a"].status is StepStatus.INTERRUPTED
    d.running.clear()
    batch = Batch()
    d.machine.recover_running(run, batch)
    died = [e.step_id for e in events(batch, ev.StepInterrupted)]
    assert died == ["w"]  # a (interrupted for good) and b (pending) stay as they are
    assert run.steps["a"].status is StepStatus.INTERRUPTED
    assert (
        run.steps["b"].status is StepStatus.SKIPPED or run.steps["b"].status is StepStatus.PENDING
    )


def test_the_run_goes_back_to_running_when_a_waiting_step_wakes() -> None:
    d = Driver()
    run = new_run(playbook([step("s", retry={"attempts": 2})]))
    d.turn(run)
    d.finish(run, "s", "failed")
    assert run.status.value == "waiting"
    batch = d.fire(run, "s", "retry")
    assert run.status.value == "running" and events(batch, ev.RunWaiting) == []


def test_an_unknown_step_s_message_changes_nothing() -> None:
    d = Driver()
    run = new_run(playbook([step("s")]))
    d.turn(run)
    batch = d.turn(run, msg.Finished("nope", 1, "succeeded"), msg.Wake("nope", "retry"))
    assert batch.ops == [] and batch.events == []
