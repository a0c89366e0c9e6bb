"""Resume: a new Engine on the same database picks up every run where the rows left it.

``h.restart()`` stops the engine (``drain=0``: running steps are killed and recorded as
interrupted by shutdown) and starts a new one; ``between`` changes the rows while no
engine is up, to leave them as a crash would have.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine import events as ev
from storage import definitions
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness
from tests.integration import support as s

PLAYBOOKS = {
    "pause": """
        name: pause
        timeout: 2h
        steps:
          - id: pause
            action: wait
            with: {for: 30s}
          - id: after
            action: shell
            needs: pause
            with: {script: "echo after"}
    """,
    "gate": """
        name: gate
        steps:
          - id: gate
            action: approval
            with: {approvers: [bob], timeout: 1h}
          - id: after
            action: shell
            needs: gate
            with: {script: "echo after"}
    """,
    "deadline": """
        name: deadline
        timeout: 1m
        steps:
          - id: pause
            action: wait
            with: {for: 1h}
        finally:
          - id: cleanup
            action: shell
            with: {script: "echo cleaned"}
    """,
    "flaky": """
        name: flaky
        params:
          dir: {type: string, required: true}
        steps:
          - id: flaky
            action: shell
            retry: {attempts: 2, delay: 10s}
            with:
              script: |
                echo try >> "$PARAM_DIR/tries.log"
                [ $(wc -l < "$PARAM_DIR/tries.log") -ge 2 ]
    """,
    "serial": """
        name: serial
        concurrency: {limit: 1}
        steps:
          - id: pause
            action: wait
            with: {for: 10s}
    """,
    "parent": """
        name: parent
        steps:
          - id: call
            action: playbook
            with: {name: pause}
    """,
}

# ``work`` records each time it runs; the first time it keeps running until killed.
WORK = """
    name: {name}
    params:
      dir: {{type: string, required: true}}
    steps:
      - id: work
        action: shell
        idempotent: {idempotent}
        retry: {{attempts: {attempts}}}
        with:
          script: |
            echo run >> "$PARAM_DIR/runs.log"
            [ -f "$PARAM_DIR/pid" ] && exit 0
            echo $$ > "$PARAM_DIR/pid"
            exec sleep 30
      - id: after
        action: shell
        needs: work
        with: {{script: "echo after"}}
    on_failure:
      - id: notify
        action: shell
        with: {{script: "echo failed at {{{{ failure.step | quote }}}}"}}
"""
PLAYBOOKS |= {
    "idempotent": WORK.format(name="idempotent", idempotent="true", attempts=1),
    "retries-left": WORK.format(name="retries-left", idempotent="false", attempts=2),
    "run-once": WORK.format(name="run-once", idempotent="false", attempts=1),
}


# --- timers and gates ---------------------------------------------------------------


@pytest.mark.parametrize("down_for", [0, 45], ids=["before-deadline", "deadline-passed-while-down"])
async def test_restart_while_a_wait_step_is_parked(harness: HarnessFactory, down_for: int) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("pause")
    assert (await h.run_row(run_id)).status == "waiting"

    async def downtime() -> None:
        h.clock.advance(timedelta(seconds=down_for))

    await h.restart(between=downtime)

    resumed = s.of_type(h.seen(), ev.RunStarted)
    assert [(e.run_id, e.resumed) for e in resumed] == [(run_id, True)]
    if down_for < 30:
        assert (await h.run_row(run_id)).status == "waiting"
        await h.advance(29 - down_for)
        assert (await h.statuses(run_id))["pause"] == "waiting"
        await h.advance(1)
    assert (await h.run_row(run_id)).status == "succeeded"
    assert await h.statuses(run_id) == {"pause": "succeeded", "after": "succeeded"}
    assert (await h.run_row(run_id)).epoch == 2  # one claim per engine that drove it
    await s.assert_settled(h, run_id)


async def test_restart_while_an_approval_is_pending(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    await h.restart()
    assert (await h.run_row(run_id)).status == "waiting"
    result = await h.engine.decide(gate, "bob", "approve")
    await h.engine.wait_idle()

    assert (result.recorded, result.status) == (True, "approved")
    assert (await h.run_row(run_id)).status == "succeeded"
    assert await h.statuses(run_id) == {"gate": "succeeded", "after": "succeeded"}
    await s.assert_settled(h, run_id)


async def test_approval_deadline_survives_a_restart(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")

    await h.restart()
    await h.advance(3600)

    assert (await s.approval_row(h, gate)).status == "timed_out"
    assert (await h.run_row(run_id)).status == "failed"


async def test_decision_committed_just_before_a_crash_is_acted_upon(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("gate", requested_by="alice")
    gate = await s.approval_id(h, run_id, "gate")
    old = h.engine

    async def decide_then_die() -> None:  # the decision is committed; nobody acts on it
        await old.decide(gate, "bob", "approve")

    await h.restart(between=decide_then_die)

    assert (await s.approval_row(h, gate)).status == "approved"
    assert (await h.run_row(run_id)).status == "succeeded"
    assert (await h.steps(run_id))["gate"].output == {"approval_id": gate, "approved_by": ["bob"]}


async def test_run_deadline_survives_a_restart(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("deadline")

    await h.restart()
    await h.advance(59)
    assert (await h.run_row(run_id)).status == "waiting"
    await h.advance(1)

    assert (await h.run_row(run_id)).status == "timed_out"
    assert await h.statuses(run_id) == {"pause": "cancelled", "cleanup": "succeeded"}


async def test_retry_backoff_survives_a_restart(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await h.run("flaky", {"dir": str(tmp_path)})
    assert (await h.steps(run_id))["flaky"].wake_reason == "retry"

    await h.restart()
    await h.advance(9)
    assert s.lines(tmp_path / "tries.log") == ["try"]
    await h.advance(1)

    assert s.lines(tmp_path / "tries.log") == ["try", "try"]
    assert (await h.run_row(run_id)).status == "succeeded"
    assert [a.status for a in await h.attempts(run_id)] == ["failed", "succeeded"]


async def test_parent_and_child_resume_together(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    parent_id = await h.run("parent")
    (child,) = await s.children(h, parent_id)
    assert child.status == "waiting"

    await h.restart()
    await h.advance(30)

    assert (await h.run_row(child.id)).status == "succeeded"
    assert (await h.run_row(parent_id)).status == "succeeded"
    output = (await h.steps(parent_id))["call"].output
    assert (output["run_id"], output["status"]) == (child.id, "succeeded")


# --- steps in flight ----------------------------------------------------------------


async def _start_work(h: Harness, playbook: str, folder: Path) -> tuple[str, int]:
    run_id = await s.start(h, playbook, {"dir": str(folder)})
    return run_id, await s.started_pid(folder)


async def _as_if_crashed(h: Harness, run_id: str) -> None:
    """Put back the rows a clean stop wrote: the step and its attempt still running."""
    await h.store.write(
        t.steps.update()
        .where(t.steps.c.run_id == run_id, t.steps.c.step_id == "work")
        .values(status="running", error=None, finished_at=None, wake_reason=None),
        t.attempts.update()
        .where(t.attempts.c.run_id == run_id, t.attempts.c.step_id == "work")
        .values(status="running", error=None, finished_at=None),
    )


@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "crash"])
@pytest.mark.parametrize("playbook", ["idempotent", "retries-left"])
async def test_step_in_flight_is_rerun_when_safe(
    harness: HarnessFactory, tmp_path: Path, playbook: str, crash: bool
) -> None:
    h = await harness(PLAYBOOKS)
    run_id, pid = await _start_work(h, playbook, tmp_path)

    async def crashed() -> None:
        await _as_if_crashed(h, run_id)

    await h.restart(between=crashed if crash else None)

    await s.gone(pid)
    assert s.lines(tmp_path / "runs.log") == ["run", "run"]
    run = await h.run_row(run_id)
    assert run.status == "succeeded"
    assert await h.statuses(run_id) == {
        "work": "succeeded",
        "after": "succeeded",
        "notify": "skipped",
    }
    attempts = [a for a in await h.attempts(run_id) if a.step_id == "work"]
    assert [(a.number, a.status) for a in attempts] == [(1, "interrupted"), (2, "succeeded")]
    interrupted = s.of_type(h.seen(), ev.StepInterrupted)
    assert [(e.step_id, e.attempt, e.rerun) for e in interrupted] == [("work", 1, True)]
    await s.assert_settled(h, run_id)


@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "crash"])
async def test_step_in_flight_is_never_silently_run_twice(
    harness: HarnessFactory, tmp_path: Path, crash: bool
) -> None:
    h = await harness(PLAYBOOKS)
    run_id, pid = await _start_work(h, "run-once", tmp_path)

    async def crashed() -> None:
        await _as_if_crashed(h, run_id)

    await h.restart(between=crashed if crash else None)

    await s.gone(pid)
    assert s.lines(tmp_path / "runs.log") == ["run"]
    run = await h.run_row(run_id)
    assert (run.status, run.failed_step) == ("failed", "work")
    assert "interrupted" in run.error
    steps = await h.steps(run_id)
    assert {k: v.status for k, v in steps.items()} == {
        "work": "interrupted",
        "after": "skipped",
        "notify": "succeeded",
    }
    assert steps["notify"].output["stdout"] == "failed at work\n"
    assert [a.status for a in await h.attempts(run_id) if a.step_id == "work"] == ["interrupted"]
    interrupted = s.of_type(h.seen(), ev.StepInterrupted)
    assert [(e.step_id, e.rerun) for e in interrupted] == [("work", False)]
    await s.assert_settled(h, run_id)


# --- queues -------------------------------------------------------------------------


async def test_queued_runs_stay_queued_and_start_when_the_slot_frees(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    first = await h.run("serial")
    await h.advance(1)
    second = await h.run("serial")

    await h.restart()

    assert (await h.run_row(second)).status == "queued"
    await h.advance(9)
    assert (await h.run_row(first)).status == "succeeded"
    assert (await h.run_row(second)).status == "waiting"
    started = s.of_type(h.seen(), ev.RunStarted)
    assert [(e.run_id, e.resumed) for e in started] == [(first, True), (second, False)]
    await h.advance(10)
    assert (await h.run_row(second)).status == "succeeded"


async def test_queued_run_starts_at_restart_when_its_slot_is_free(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    first = await h.run("serial")
    second = await h.run("serial")

    async def first_ended() -> None:  # the process died as the first run ended
        await h.store.write(
            t.runs.update().where(t.runs.c.id == first).values(status="succeeded"),
            t.steps.update().where(t.steps.c.run_id == first).values(status="succeeded"),
        )

    await h.restart(between=first_ended)

    assert (await h.run_row(second)).status == "waiting"
    rows = await h.store.all(sa.select(t.runs.c.id).where(t.runs.c.status == "queued"))
    assert rows == []


async def test_a_run_stored_by_an_older_baton_with_a_loose_alert_trigger_resumes(
    harness: HarnessFactory,
) -> None:
    h = await harness(
        {"nap": "name: nap\nsteps:\n  - id: a\n    action: wait\n    with: {for: 1h}\n"}
    )
    run_id = await h.run("nap")

    async def older_definition() -> None:
        row = await h.run_row(run_id)
        stored = await definitions.read(h.store, row.definition_digest)
        loose = {**stored, "triggers": [{"alert": {"anything": "goes"}}]}
        digest, put = definitions.put(loose, h.clock.now())
        await h.store.write(put)  # row writes go after a unit's statements: first
        await h.store.write(
            t.runs.update().where(t.runs.c.id == run_id).values(definition_digest=digest)
        )

    await h.restart(between=older_definition)
    await h.advance(3600)
    assert (await h.run_row(run_id)).status == "succeeded"
