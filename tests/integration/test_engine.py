"""Engine + storage contract: runs driven by a real Engine on SQLite and PostgreSQL.

Every test runs once per backend (the ``harness`` fixture is parametrized by ``db_url``).
Assertions are on rows (runs, steps, attempts, ...) and on published events. Time is a
ManualClock the test moves; shell steps really run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import events as ev
from engine.errors import ConcurrencyLimit, InvalidTransition, ParamError, PlaybookNotFound
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.integration import support as s

# --- a sequential chain -------------------------------------------------------------

CHAIN = {
    "chain": """
        name: chain
        steps:
          - id: first
            action: shell
            with: {script: "echo one"}
          - id: second
            action: shell
            needs: first
            with: {script: "echo {{ steps.first.output.stdout | trim | quote }}-two"}
          - id: third
            action: log
            needs: second
            with: {message: "got {{ steps.second.output.stdout | trim }}"}
    """
}


async def test_sequential_chain_persists_every_transition(harness: HarnessFactory) -> None:
    h = await harness(CHAIN)

    run_id = await h.run("chain", requested_by="alice")

    run = await h.run_row(run_id)
    assert (run.status, run.attempt, run.error, run.requested_by) == (
        "succeeded",
        1,
        None,
        "alice",
    )
    assert run.started_at is not None and run.finished_at is not None
    steps = await h.steps(run_id)
    assert {k: (v.status, v.attempts) for k, v in steps.items()} == {
        "first": ("succeeded", 1),
        "second": ("succeeded", 1),
        "third": ("succeeded", 1),
    }
    await s.assert_settled(h, run_id)
    assert steps["second"].output["stdout"] == "one-two\n"
    assert steps["third"].output == {"message": "got one-two", "level": "info"}
    assert all(r.started_at is not None and r.finished_at is not None for r in steps.values())

    attempts = await h.attempts(run_id)
    assert [(a.step_id, a.number, a.run_attempt, a.status) for a in attempts] == [
        ("first", 1, 1, "succeeded"),
        ("second", 1, 1, "succeeded"),
        ("third", 1, 1, "succeeded"),
    ]
    assert all(a.started_at is not None and a.finished_at is not None for a in attempts)
    assert attempts[0].output == {"rc": 0, "stdout": "one\n", "stderr": ""}

    logs = await h.store.all(sa.select(t.run_logs).where(t.run_logs.c.run_id == run_id))
    assert [(r.step_id, r.message) for r in logs] == [("third", "got one-two")]

    assert s.trace(h.seen(), run_id) == [
        ("RunStarted", None),
        ("StepStarted", "first"),
        ("StepSucceeded", "first"),
        ("StepStarted", "second"),
        ("StepSucceeded", "second"),
        ("StepStarted", "third"),
        ("RunLogged", "third"),
        ("StepSucceeded", "third"),
        ("RunSucceeded", None),
    ]


async def test_run_start_is_audited(harness: HarnessFactory) -> None:
    h = await harness(CHAIN)

    run_id = await h.run("chain", requested_by="alice")

    rows = await h.store.all(sa.select(t.audit).where(t.audit.c.action == "run"))
    assert [(r.actor, r.target, r.detail["run_id"]) for r in rows] == [("alice", "chain", run_id)]


# --- fan-out / fan-in ---------------------------------------------------------------

# Each branch waits (up to 5 s) for the other's file: they only both finish if they
# really run at the same time.
FAN = {
    "fan": """
        name: fan
        params:
          dir: {type: string, required: true}
        steps:
          - id: prepare
            action: shell
            with: {script: "echo ready"}
          - id: left
            action: shell
            needs: prepare
            with:
              script: |
                touch "$PARAM_DIR/left"
                i=0
                while [ ! -f "$PARAM_DIR/right" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
                test -f "$PARAM_DIR/right"
          - id: right
            action: shell
            needs: prepare
            with:
              script: |
                touch "$PARAM_DIR/right"
                i=0
                while [ ! -f "$PARAM_DIR/left" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
                test -f "$PARAM_DIR/left"
          - id: join
            action: shell
            needs: [left, right]
            with: {script: "echo joined"}
    """
}


async def test_parallel_branches_fan_out_and_join(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(FAN)

    run_id = await h.run("fan", {"dir": str(tmp_path)})

    assert (await h.run_row(run_id)).status == "succeeded"
    assert await h.statuses(run_id) == dict.fromkeys(
        ("prepare", "left", "right", "join"), "succeeded"
    )
    seq = s.trace(h.seen(), run_id)
    join_started = seq.index(("StepStarted", "join"))
    for branch in ("left", "right"):
        assert seq.index(("StepStarted", branch)) < seq.index(("StepSucceeded", "left"))
        assert seq.index(("StepStarted", branch)) < seq.index(("StepSucceeded", "right"))
        assert seq.index(("StepSucceeded", branch)) < join_started


# --- conditions ---------------------------------------------------------------------

WHEN = {
    "when": """
        name: when
        params:
          answer: {type: string, default: "yes"}
        steps:
          - id: check
            action: shell
            with: {script: "echo {{ params.answer | quote }}"}
          - id: never
            action: shell
            when: "false"
            with: {script: "echo never"}
          - id: after_never
            action: shell
            needs: never
            with: {script: "echo still"}
          - id: on_yes
            action: shell
            needs: check
            when: "steps.check.output.stdout | trim == 'yes'"
            with: {script: "echo yes-branch"}
          - id: on_no
            action: shell
            needs: check
            when: "steps.check.output.stdout | trim == 'no'"
            with: {script: "echo no-branch"}
    """
}


@pytest.mark.parametrize(
    ("answer", "ran", "skipped"),
    [("yes", "on_yes", "on_no"), ("no", "on_no", "on_yes")],
    ids=["yes", "no"],
)
async def test_when_skips_and_dependents_of_skipped_steps_still_run(
    harness: HarnessFactory, answer: str, ran: str, skipped: str
) -> None:
    h = await harness(WHEN)

    run_id = await h.run("when", {"answer": answer})

    assert (await h.run_row(run_id)).status == "succeeded"
    statuses = await h.statuses(run_id)
    assert statuses == {
        "check": "succeeded",
        "never": "skipped",
        "after_never": "succeeded",
        ran: "succeeded",
        skipped: "skipped",
    }
    events = h.seen()
    reasons = {e.step_id: e.reason for e in s.of_type(events, ev.StepSkipped)}
    assert reasons["never"] == "when: false is false"
    assert "is false" in reasons[skipped]
    assert not [a for a in await h.attempts(run_id) if a.step_id in ("never", skipped)]


# --- failure paths ------------------------------------------------------------------

FAILING = {
    "failing": """
        name: failing
        params:
          dir: {type: string, required: true}
        steps:
          - id: prepare
            action: shell
            with: {script: "echo ok"}
          - id: bad
            action: shell
            needs: prepare
            with: {script: "echo partial; echo 'disk full' >&2; exit 3"}
          - id: after_bad
            action: shell
            needs: bad
            with: {script: "touch \\"$PARAM_DIR/after_bad\\""}
          - id: slow
            action: wait
            needs: prepare
            with: {for: 10s}
          - id: after_slow
            action: shell
            needs: slow
            with: {script: "touch \\"$PARAM_DIR/after_slow\\""}
        on_failure:
          - id: notify
            action: shell
            with: {script: "echo failed at {{ failure.step | quote }}"}
        finally:
          - id: cleanup
            action: shell
            with: {script: "echo cleaned"}
    """
}


async def test_failing_step_stops_new_steps_and_takes_the_failure_path(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(FAILING)

    run_id = await h.run("failing", {"dir": str(tmp_path)})

    # `bad` failed while `slow` was parked; nothing new starts, the run is not over yet
    assert await h.statuses(run_id) == {
        "prepare": "succeeded",
        "bad": "failed",
        "after_bad": "skipped",
        "slow": "waiting",
        "after_slow": "pending",
        "notify": "pending",
        "cleanup": "pending",
    }
    await h.advance(10)

    run = await h.run_row(run_id)
    assert run.status == "failed"
    assert run.failed_step == "bad"
    assert run.error == "step bad failed: exit status 3: disk full"
    await s.assert_settled(h, run_id)
    steps = await h.steps(run_id)
    assert {k: v.status for k, v in steps.items()} == {
        "prepare": "succeeded",
        "bad": "failed",
        "after_bad": "skipped",
        "slow": "succeeded",
        "after_slow": "skipped",
        "notify": "succeeded",
        "cleanup": "succeeded",
    }
    assert steps["bad"].error == "exit status 3: disk full"
    assert steps["bad"].output == {"rc": 3, "stdout": "partial\n", "stderr": "disk full\n"}
    assert steps["notify"].output["stdout"] == "failed at bad\n"
    assert not (tmp_path / "after_bad").exists()
    assert not (tmp_path / "after_slow").exists()

    bad = [a for a in await h.attempts(run_id) if a.step_id == "bad"]
    assert [(a.status, a.error) for a in bad] == [("failed", "exit status 3: disk full")]

    events = h.seen()
    seq = s.trace(events, run_id)
    assert seq.index(("StepSucceeded", "notify")) < seq.index(("StepStarted", "cleanup"))
    assert seq[-1] == ("RunFailed", None)
    failed = s.of_type(events, ev.RunFailed)[0]
    assert (failed.failed_step, failed.status) == ("bad", "failed")
    assert "bad" in (failed.error or "")
    skipped = {e.step_id: e.reason for e in s.of_type(events, ev.StepSkipped)}
    assert skipped["after_slow"] == "not run: step bad failed"


CONTINUE = {
    "tolerant": """
        name: tolerant
        steps:
          - id: flaky
            action: shell
            continue_on_error: true
            with: {script: "exit 1"}
          - id: next
            action: shell
            needs: flaky
            with: {script: "echo {{ steps.flaky.status | quote }}"}
        on_failure:
          - id: notify
            action: shell
            with: {script: "echo should not run"}
    """
}


async def test_continue_on_error_does_not_fail_the_run(harness: HarnessFactory) -> None:
    h = await harness(CONTINUE)

    run_id = await h.run("tolerant")

    run = await h.run_row(run_id)
    assert (run.status, run.failed_step, run.error) == ("succeeded", None, None)
    await s.assert_settled(h, run_id)
    steps = await h.steps(run_id)
    assert {k: v.status for k, v in steps.items()} == {
        "flaky": "failed",
        "next": "succeeded",
        "notify": "skipped",
    }
    assert steps["next"].output["stdout"] == "failed\n"
    skipped = s.of_type(h.seen(), ev.StepSkipped)
    assert [(e.step_id, e.phase, e.reason) for e in skipped] == [
        ("notify", "on_failure", "not needed: no step failed")
    ]


FINALLY_FAILS = {
    "finally-fails": """
        name: finally-fails
        steps:
          - id: work
            action: shell
            with: {script: "echo ok"}
        finally:
          - id: cleanup
            action: shell
            with: {script: "echo nope >&2; exit 1"}
    """
}


async def test_failing_finally_step_fails_the_run(harness: HarnessFactory) -> None:
    h = await harness(FINALLY_FAILS)

    run_id = await h.run("finally-fails")

    run = await h.run_row(run_id)
    assert (run.status, run.failed_step) == ("failed", "cleanup")
    assert run.error == "step cleanup failed: exit status 1: nope"


# --- retries with backoff -----------------------------------------------------------

RETRY = """
    name: {name}
    params:
      dir: {{type: string, required: true}}
      succeed_on: {{type: int, default: 2}}
    steps:
      - id: flaky
        action: shell
        retry: {{attempts: 4, delay: 10s, backoff: {backoff}}}
        with:
          script: |
            n=$(cat "$PARAM_DIR/count" 2>/dev/null || echo 0); n=$((n+1))
            echo $n > "$PARAM_DIR/count"
            echo "attempt $n"
            [ $n -ge $PARAM_SUCCEED_ON ] || {{ echo "not yet" >&2; exit 1; }}
      - id: after
        action: shell
        needs: flaky
        with: {{script: "echo after"}}
"""
RETRIES = {
    "retry-fixed": RETRY.format(name="retry-fixed", backoff="fixed"),
    "retry-exponential": RETRY.format(name="retry-exponential", backoff="exponential"),
}


@pytest.mark.parametrize(
    ("playbook", "delays"),
    [("retry-fixed", [10, 10, 10]), ("retry-exponential", [10, 20, 40])],
    ids=["fixed", "exponential"],
)
async def test_retry_waits_for_its_backoff(
    harness: HarnessFactory, tmp_path: Path, playbook: str, delays: list[int]
) -> None:
    h = await harness(RETRIES)

    run_id = await h.run(playbook, {"dir": str(tmp_path), "succeed_on": 4})

    for done, delay in enumerate(delays, start=1):
        assert len(await h.attempts(run_id)) == done
        step = (await h.steps(run_id))["flaky"]
        assert (step.status, step.wake_reason) == ("waiting", "retry")
        assert step.wake_at == h.clock.now() + timedelta(seconds=delay)
        assert (await h.run_row(run_id)).status == "waiting"
        await h.advance(delay - 1)
        assert len(await h.attempts(run_id)) == done, "retried before its delay"
        await h.advance(1)

    assert (await h.run_row(run_id)).status == "succeeded"
    attempts = await h.attempts(run_id)
    assert [(a.step_id, a.number, a.status) for a in attempts] == [
        ("flaky", 1, "failed"),
        ("flaky", 2, "failed"),
        ("flaky", 3, "failed"),
        ("flaky", 4, "succeeded"),
        ("after", 1, "succeeded"),
    ]
    assert attempts[0].error == "exit status 1: not yet"
    assert (await h.steps(run_id))["flaky"].attempts == 4
    await s.assert_settled(h, run_id)
    failed = s.of_type(h.seen(), ev.StepFailed)
    assert [e.will_retry for e in failed] == [True, True, True]


async def test_retry_succeeds_on_second_attempt(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(RETRIES)

    run_id = await h.run("retry-fixed", {"dir": str(tmp_path)})
    await h.advance(10)

    assert (await h.run_row(run_id)).status == "succeeded"
    step = (await h.steps(run_id))["flaky"]
    assert (step.status, step.attempts, step.output["stdout"]) == ("succeeded", 2, "attempt 2\n")
    assert [a.status for a in await h.attempts(run_id) if a.step_id == "flaky"] == [
        "failed",
        "succeeded",
    ]


async def test_retries_exhausted_fail_the_step(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(RETRIES)

    run_id = await h.run("retry-fixed", {"dir": str(tmp_path), "succeed_on": 99})
    for _ in range(3):
        await h.advance(10)

    run = await h.run_row(run_id)
    assert (run.status, run.failed_step) == ("failed", "flaky")
    assert [a.status for a in await h.attempts(run_id)] == ["failed"] * 4
    failed = s.of_type(h.seen(), ev.StepFailed)
    assert [e.will_retry for e in failed] == [True, True, True, False]


# --- timeouts -----------------------------------------------------------------------

TIMEOUTS = {
    "step-timeout": f"""
        name: step-timeout
        params:
          dir: {{type: string, required: true}}
        steps:
          - id: hang
            action: shell
            timeout: 1s
            with: {{script: '{s.LONG_STEP}'}}
          - id: after
            action: shell
            needs: hang
            with: {{script: "echo after"}}
    """,
    "run-timeout": f"""
        name: run-timeout
        timeout: 5s
        params:
          dir: {{type: string, required: true}}
        steps:
          - id: hang
            action: shell
            with: {{script: '{s.LONG_STEP}'}}
          - id: after
            action: shell
            needs: hang
            with: {{script: "echo after"}}
        finally:
          - id: cleanup
            action: shell
            with: {{script: "echo cleaned"}}
    """,
}


async def test_step_timeout_kills_the_process_and_fails_the_step(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(TIMEOUTS)
    run_id = await s.start(h, "step-timeout", {"dir": str(tmp_path)})
    pid = await s.started_pid(tmp_path)

    await h.advance(1)

    await s.gone(pid)
    steps = await h.steps(run_id)
    assert (steps["hang"].status, steps["after"].status) == ("failed", "skipped")
    assert "timed out" in steps["hang"].error
    assert [(a.status, "timed out" in a.error) for a in await h.attempts(run_id)] == [
        ("failed", True)
    ]
    run = await h.run_row(run_id)
    assert (run.status, run.failed_step) == ("failed", "hang")


async def test_run_timeout_stops_the_run_and_runs_finally(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(TIMEOUTS)
    run_id = await s.start(h, "run-timeout", {"dir": str(tmp_path)})
    pid = await s.started_pid(tmp_path)

    h.timers.advance(timedelta(seconds=4))  # not h.advance: the step is still running
    assert s.alive(pid)
    await h.advance(1)

    await s.gone(pid)
    run = await h.run_row(run_id)
    assert run.status == "timed_out"
    await s.assert_settled(h, run_id)
    assert "timed out" in run.error
    assert await h.statuses(run_id) == {
        "hang": "cancelled",
        "after": "cancelled",
        "cleanup": "succeeded",
    }
    assert s.trace(h.seen(), run_id)[-1] == ("RunTimedOut", None)


# --- cancel -------------------------------------------------------------------------

CANCEL = {
    "cancellable": f"""
        name: cancellable
        params:
          dir: {{type: string, required: true}}
        steps:
          - id: hang
            action: shell
            with: {{script: '{s.LONG_STEP}'}}
          - id: parked
            action: wait
            with: {{for: 1h}}
          - id: after
            action: shell
            needs: [hang, parked]
            with: {{script: "echo after"}}
        finally:
          - id: cleanup
            action: shell
            with: {{script: "echo cleaned"}}
    """,
    "serial": """
        name: serial
        concurrency: {limit: 1}
        steps:
          - id: pause
            action: wait
            with: {for: 10s}
    """,
}


async def test_cancel_kills_running_steps_and_runs_finally(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(CANCEL)
    run_id = await s.start(h, "cancellable", {"dir": str(tmp_path)})
    pid = await s.started_pid(tmp_path)

    await h.engine.cancel(run_id, by="bob")
    await h.engine.wait_idle()

    await s.gone(pid)
    run = await h.run_row(run_id)
    assert (run.status, run.stopped_by, run.error) == ("cancelled", "bob", "cancelled by bob")
    await s.assert_settled(h, run_id)
    assert await h.statuses(run_id) == {
        "hang": "cancelled",
        "parked": "cancelled",
        "after": "cancelled",
        "cleanup": "succeeded",
    }
    attempts = {a.step_id: a.status for a in await h.attempts(run_id)}
    assert attempts == {"hang": "cancelled", "parked": "cancelled", "cleanup": "succeeded"}
    events = h.seen()
    cancelled = s.of_type(events, ev.RunCancelled)
    assert [(e.by, e.status) for e in cancelled] == [("bob", "cancelled")]
    assert s.trace(events, run_id)[-1] == ("RunCancelled", None)
    left = set(h.engine.timers.pending) - {"schedules:poll"}  # type: ignore[attr-defined]
    assert left == set()  # no timer of the run is left behind


async def test_cancel_a_queued_run(harness: HarnessFactory) -> None:
    h = await harness(CANCEL)
    first = await h.run("serial")
    queued = await h.run("serial")
    assert (await h.run_row(queued)).status == "queued"

    await h.engine.cancel(queued, by="bob")
    await h.advance(10)

    assert (await h.run_row(first)).status == "succeeded"
    row = await h.run_row(queued)
    assert (row.status, row.stopped_by, row.started_at) == ("cancelled", "bob", None)
    assert await h.statuses(queued) == {"pause": "cancelled"}
    await s.assert_settled(h, queued)
    assert [e.run_id for e in s.of_type(h.seen(), ev.RunCancelled)] == [queued]


async def test_cancel_a_finished_run_is_refused(harness: HarnessFactory) -> None:
    h = await harness(CANCEL)
    run_id = await h.run("serial")
    await h.advance(10)

    with pytest.raises(InvalidTransition, match="already succeeded"):
        await h.engine.cancel(run_id, by="bob")

    assert (await h.run_row(run_id)).status == "succeeded"


# --- retrying a finished run --------------------------------------------------------

RERUN = {
    "rerun": """
        name: rerun
        params:
          dir: {type: string, required: true}
        steps:
          - id: once
            action: shell
            with: {script: "echo once >> \\"$PARAM_DIR/once.log\\""}
          - id: fragile
            action: shell
            needs: once
            with:
              script: |
                echo fragile >> "$PARAM_DIR/fragile.log"
                test -f "$PARAM_DIR/fixed" || { echo "not fixed" >&2; exit 1; }
          - id: last
            action: shell
            needs: fragile
            with: {script: "echo last"}
    """
}


async def test_retry_of_a_failed_run_reruns_only_what_did_not_succeed(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(RERUN)
    run_id = await h.run("rerun", {"dir": str(tmp_path)})
    assert (await h.run_row(run_id)).status == "failed"
    (tmp_path / "fixed").touch()
    h.seen()

    await h.engine.retry(run_id, by="bob")
    await h.engine.wait_idle()

    run = await h.run_row(run_id)
    assert (run.id, run.status, run.attempt, run.error, run.failed_step) == (
        run_id,
        "succeeded",
        2,
        None,
        None,
    )
    await s.assert_settled(h, run_id)
    assert s.lines(tmp_path / "once.log") == ["once"]
    assert s.lines(tmp_path / "fragile.log") == ["fragile", "fragile"]
    assert await h.statuses(run_id) == dict.fromkeys(("once", "fragile", "last"), "succeeded")
    attempts = await h.attempts(run_id)
    assert [(a.step_id, a.run_attempt, a.number, a.status) for a in attempts] == [
        ("once", 1, 1, "succeeded"),
        ("fragile", 1, 1, "failed"),
        ("fragile", 2, 1, "succeeded"),
        ("last", 2, 1, "succeeded"),
    ]
    started = s.of_type(h.seen(), ev.RunStarted)
    assert [(e.run_id, e.attempt) for e in started] == [(run_id, 2)]
    audit = await h.store.all(sa.select(t.audit).where(t.audit.c.action == "retry"))
    assert [(r.actor, r.target) for r in audit] == [("bob", run_id)]


async def test_two_retries_at_once_make_one_new_attempt(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(RERUN)
    run_id = await h.run("rerun", {"dir": str(tmp_path)})
    (tmp_path / "fixed").touch()
    results = await asyncio.gather(
        h.engine.retry(run_id, by="alice"), h.engine.retry(run_id, by="bob"), return_exceptions=True
    )
    await h.engine.wait_idle()
    refused = [r for r in results if isinstance(r, InvalidTransition)]
    assert len(refused) == 1 and results.count(None) == 1
    run = await h.run_row(run_id)
    assert (run.status, run.attempt) == ("succeeded", 2)
    assert s.lines(tmp_path / "fragile.log") == ["fragile", "fragile"]


async def test_retry_of_a_succeeded_run_is_refused(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(RERUN)
    (tmp_path / "fixed").touch()
    run_id = await h.run("rerun", {"dir": str(tmp_path)})

    with pytest.raises(InvalidTransition, match="succeeded"):
        await h.engine.retry(run_id, by="bob")

    assert (await h.run_row(run_id)).attempt == 1
    assert s.lines(tmp_path / "once.log") == ["once"]


# --- wait ---------------------------------------------------------------------------

WAIT = {
    "pause": """
        name: pause
        steps:
          - id: before
            action: shell
            with: {script: "echo before"}
          - id: pause
            action: wait
            needs: before
            with: {for: 30s}
          - id: after
            action: shell
            needs: pause
            with: {script: "echo after"}
    """
}


async def test_wait_step_parks_the_run_until_its_time(harness: HarnessFactory) -> None:
    h = await harness(WAIT)
    began = h.clock.now()

    run_id = await h.run("pause")

    assert (await h.run_row(run_id)).status == "waiting"
    step = (await h.steps(run_id))["pause"]
    assert (step.status, step.wake_reason) == ("waiting", "wait")
    assert step.wake_at == began + timedelta(seconds=30)
    events = h.seen()
    assert [e.reason for e in s.of_type(events, ev.RunWaiting)] == ["wait"]
    assert [e.until for e in s.of_type(events, ev.StepWaiting)] == [step.wake_at]

    await h.advance(29)
    assert (await h.statuses(run_id))["pause"] == "waiting"
    await h.advance(1)

    assert (await h.run_row(run_id)).status == "succeeded"
    steps = await h.steps(run_id)
    assert (steps["pause"].status, steps["after"].status) == ("succeeded", "succeeded")
    assert steps["pause"].output == {"waited_until": step.wake_at.isoformat()}
    assert steps["pause"].finished_at == began + timedelta(seconds=30)


# --- child playbooks ----------------------------------------------------------------

CHILD = {
    "parent": """
        name: parent
        params:
          fail: {type: bool, default: false}
        steps:
          - id: call
            action: playbook
            with:
              name: child
              params: {who: world, fail: "{{ params.fail }}"}
          - id: after
            action: shell
            needs: call
            with: {script: "echo got {{ steps.call.output.steps.greet.stdout | trim | quote }}"}
    """,
    "child": """
        name: child
        params:
          who: {type: string, required: true}
          fail: {type: bool, default: false}
        steps:
          - id: greet
            action: shell
            with: {script: "echo hello $PARAM_WHO"}
          - id: maybe_fail
            action: shell
            needs: greet
            with: {script: "if [ \\"$PARAM_FAIL\\" = true ]; then echo broken >&2; exit 1; fi"}
    """,
}


async def test_child_playbook_output_reaches_the_parent(harness: HarnessFactory) -> None:
    h = await harness(CHILD)

    parent_id = await h.run("parent")

    kids = await s.children(h, parent_id)
    assert len(kids) == 1
    child = kids[0]
    assert (child.status, child.parent_step_id, child.trigger) == ("succeeded", "call", "playbook")
    assert child.params == {"who": "world", "fail": False}
    assert (await h.run_row(parent_id)).status == "succeeded"
    steps = await h.steps(parent_id)
    assert steps["call"].child_run_id == child.id
    output = steps["call"].output
    assert (output["run_id"], output["status"]) == (child.id, "succeeded")
    assert output["steps"]["greet"]["stdout"] == "hello world\n"
    assert steps["after"].output["stdout"] == "got hello world\n"
    await s.assert_settled(h, parent_id)
    await s.assert_settled(h, child.id)


async def test_failing_child_fails_the_parent_step(harness: HarnessFactory) -> None:
    h = await harness(CHILD)

    parent_id = await h.run("parent", {"fail": True})

    (child,) = await s.children(h, parent_id)
    assert (child.status, child.failed_step) == ("failed", "maybe_fail")
    parent = await h.run_row(parent_id)
    assert (parent.status, parent.failed_step) == ("failed", "call")
    steps = await h.steps(parent_id)
    assert (steps["call"].status, steps["after"].status) == ("failed", "skipped")
    assert steps["call"].error.startswith(f"child run {child.id} failed")
    assert "broken" in steps["call"].error


# --- concurrency --------------------------------------------------------------------

CONCURRENCY = {
    "one-at-a-time": """
        name: one-at-a-time
        concurrency: {limit: 1}
        steps:
          - id: pause
            action: wait
            with: {for: 10s}
    """,
    "refuse": """
        name: refuse
        concurrency: {limit: 1, on_limit: reject}
        steps:
          - id: pause
            action: wait
            with: {for: 10s}
    """,
    "per-env": """
        name: per-env
        params:
          env: {type: choice, choices: [prod, staging], required: true}
        concurrency: {key: "deploy-{{ params.env }}", limit: 1}
        steps:
          - id: pause
            action: wait
            with: {for: 10s}
    """,
}


async def test_concurrency_limit_queues_runs_in_order(harness: HarnessFactory) -> None:
    h = await harness(CONCURRENCY)
    first = await h.run("one-at-a-time")
    await h.advance(1)
    second = await h.run("one-at-a-time")
    await h.advance(1)
    third = await h.run("one-at-a-time")

    async def status() -> list[str]:
        return [(await h.run_row(r)).status for r in (first, second, third)]

    assert await status() == ["waiting", "queued", "queued"]
    queued = s.of_type(h.seen(), ev.RunQueued)
    assert [(e.run_id, e.key, e.ahead) for e in queued] == [
        (second, "one-at-a-time", 1),
        (third, "one-at-a-time", 2),
    ]

    await h.advance(8)
    assert await status() == ["succeeded", "waiting", "queued"]
    assert [e.run_id for e in s.of_type(h.seen(), ev.RunStarted)] == [second]
    await h.advance(10)
    assert await status() == ["succeeded", "succeeded", "waiting"]
    await h.advance(10)
    assert await status() == ["succeeded", "succeeded", "succeeded"]


async def test_concurrency_limit_with_reject(harness: HarnessFactory) -> None:
    h = await harness(CONCURRENCY)
    first = await h.run("refuse")

    with pytest.raises(ConcurrencyLimit, match="limit 1"):
        await h.run("refuse")

    rows = await h.store.all(sa.select(t.runs.c.id))
    assert [r.id for r in rows] == [first]
    await h.advance(10)
    assert (await h.run_row(await h.run("refuse"))).status == "waiting"


REFUSE_RETRY = {
    "refuse-retry": """
        name: refuse-retry
        concurrency: {limit: 1, on_limit: reject}
        params:
          fail: {type: bool, default: false}
        steps:
          - id: work
            action: shell
            with: {script: "[ $PARAM_FAIL = false ] || { echo broken >&2; exit 1; }"}
          - id: pause
            action: wait
            needs: work
            with: {for: 10s}
    """
}


async def test_retry_refused_by_the_limit_leaves_the_run_as_it_was(
    harness: HarnessFactory,
) -> None:
    h = await harness(REFUSE_RETRY)
    failed = await h.run("refuse-retry", {"fail": True})
    await h.run("refuse-retry")  # holds the key
    before = await h.run_row(failed)

    with pytest.raises(ConcurrencyLimit, match="limit 1"):
        await h.engine.retry(failed, by="bob")

    after = await h.run_row(failed)
    assert tuple(after) == tuple(before)
    assert await h.statuses(failed) == {"work": "failed", "pause": "skipped"}
    await h.advance(10)
    await h.engine.retry(failed, by="bob")  # the key is free again
    await h.engine.wait_idle()
    assert (await h.run_row(failed)).attempt == 2


async def test_concurrency_key_from_params(harness: HarnessFactory) -> None:
    h = await harness(CONCURRENCY)

    prod = await h.run("per-env", {"env": "prod"})
    staging = await h.run("per-env", {"env": "staging"})
    prod_again = await h.run("per-env", {"env": "prod"})

    rows = {r: await h.run_row(r) for r in (prod, staging, prod_again)}
    assert {r: (row.status, row.concurrency_key) for r, row in rows.items()} == {
        prod: ("waiting", "deploy-prod"),
        staging: ("waiting", "deploy-staging"),
        prod_again: ("queued", "deploy-prod"),
    }
    await h.advance(10)
    assert [(await h.run_row(r)).status for r in (prod, staging, prod_again)] == [
        "succeeded",
        "succeeded",
        "waiting",
    ]


# --- secrets ------------------------------------------------------------------------

SECRET = "s3cr3t-Value-42"

SECRETS = {
    "secretive": """
        name: secretive
        params:
          dir: {type: string, required: true}
          token: {type: secret, required: true}
        steps:
          - id: use
            action: shell
            with:
              script: |
                printf '%s' "$PARAM_TOKEN" > "$PARAM_DIR/token"
                echo "token is $PARAM_TOKEN"
                echo "warning: $PARAM_TOKEN" >&2
          - id: say
            action: log
            needs: use
            with: {message: "using {{ params.token }}"}
          - id: leak_in_error
            action: shell
            needs: say
            continue_on_error: true
            with: {script: "echo \\"bad token $PARAM_TOKEN\\" >&2; exit 1"}
    """
}


def _text(rows: list[Any]) -> str:
    return "\n".join(repr(tuple(r)) for r in rows)


async def test_secret_params_never_reach_rows_or_events(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(SECRETS)

    run_id = await h.run("secretive", {"dir": str(tmp_path), "token": SECRET})

    assert (tmp_path / "token").read_text() == SECRET  # the step got the real value
    run = await h.run_row(run_id)
    assert run.status == "succeeded"
    assert run.params == {"dir": str(tmp_path), "token": "***"}
    assert run.secret_params and SECRET not in run.secret_params
    assert h.engine.secret_box.decrypt(run.secret_params) == {"token": SECRET}
    steps = await h.steps(run_id)
    assert steps["use"].output["stdout"] == "token is ***\n"
    assert steps["leak_in_error"].error == "exit status 1: bad token ***"

    for table in (t.runs, t.steps, t.attempts, t.run_logs, t.audit, t.approvals):
        dump = _text(await h.store.all(sa.select(table)))
        assert SECRET not in dump, f"secret in table {table.name}"
    logs = await h.store.all(sa.select(t.run_logs.c.message))
    assert [r.message for r in logs] == ["using ***"]

    events = h.seen()
    assert events
    assert all(SECRET not in repr(e) for e in events)
    assert s.of_type(events, ev.RunStarted)[0].params["token"] == "***"


# --- bad input ----------------------------------------------------------------------


async def test_unknown_playbook_suggests_and_writes_nothing(harness: HarnessFactory) -> None:
    h = await harness(CHAIN)

    with pytest.raises(PlaybookNotFound, match="Did you mean 'chain'") as caught:
        await h.run("chian")

    assert caught.value.suggestions == ["chain"]
    assert await s.count_runs(h) == 0
    assert h.seen() == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "token"),
        (
            {"dir": "/tmp", "token": "abc", "tokn": "x"},
            "unknown param 'tokn' (did you mean token?)",
        ),
    ],
    ids=["missing-required", "unknown-name"],
)
async def test_bad_params_are_refused_and_write_nothing(
    harness: HarnessFactory, params: dict[str, Any], message: str
) -> None:
    h = await harness(SECRETS)

    with pytest.raises(ParamError, match="secretive") as caught:
        await h.run("secretive", params)

    assert any(message in e for e in caught.value.errors)
    assert await s.count_runs(h) == 0
    assert h.seen() == []


SECRET_TO_CHILD = {
    "hand-over": """
        name: hand-over
        params:
          token: {type: secret, required: true}
        steps:
          - id: call
            action: playbook
            with:
              name: receiver
              params: {key: "{{ params.token }}"}
    """,
    "receiver": """
        name: receiver
        params:
          key: {type: string, required: true}
        steps:
          - id: use
            action: shell
            with: {script: "echo key=$PARAM_KEY"}
          - id: pause
            action: wait
            needs: use
            with: {for: 10s}
          - id: again
            action: shell
            needs: pause
            with:
              script: |
                [ "$PARAM_KEY" != '***' ] && echo key=$PARAM_KEY
    """,
}


async def test_secret_handed_to_a_child_run_stays_masked(harness: HarnessFactory) -> None:
    h = await harness(SECRET_TO_CHILD)

    parent_id = await h.run("hand-over", {"token": SECRET})
    (child,) = await s.children(h, parent_id)
    assert child.params == {"key": "***"}
    await h.restart()  # the child gets the real value back from the encrypted column
    await h.advance(10)

    assert (await h.run_row(parent_id)).status == "succeeded"
    steps = await h.steps(child.id)
    assert steps["use"].output["stdout"] == "key=***\n"
    assert steps["again"].output["stdout"] == "key=***\n"
    for table in (t.runs, t.steps, t.attempts, t.audit):
        assert SECRET not in _text(await h.store.all(sa.select(table))), table.name
    assert all(SECRET not in repr(e) for e in h.seen())


ENGINE_SECRETS = {
    "uses-secret": """
        name: uses-secret
        params:
          dir: {type: string, required: true}
        steps:
          - id: call
            action: shell
            with:
              env: {API_KEY: "{{ secrets.api_key }}"}
              script: |
                printf '%s' "$API_KEY" > "$PARAM_DIR/key"
                echo "calling with $API_KEY"
          - id: gate
            action: approval
            needs: call
            with:
              approvers: [bob]
              message: "ok to use {{ secrets.api_key }}?"
              show: {key: "{{ secrets.api_key }}"}
    """
}


async def test_engine_secrets_are_masked_everywhere(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(ENGINE_SECRETS, secrets={"api_key": SECRET})

    run_id = await h.run("uses-secret", {"dir": str(tmp_path)})
    gate = await s.approval_id(h, run_id, "gate")
    await h.engine.decide(gate, "bob", "approve", f"fine, {SECRET}")
    await h.engine.wait_idle()

    assert (tmp_path / "key").read_text() == SECRET
    assert (await h.run_row(run_id)).status == "succeeded"
    assert (await h.steps(run_id))["call"].output["stdout"] == "calling with ***\n"
    approval = await s.approval_row(h, gate)
    assert (approval.spec["message"], approval.spec["show"]) == ("ok to use ***?", {"key": "***"})
    for table in (t.runs, t.steps, t.attempts, t.approvals, t.decisions, t.audit):
        assert SECRET not in _text(await h.store.all(sa.select(table))), table.name
    assert await s.decisions(h, gate) == [("bob", "approve", "fine, ***")]
    events = h.seen()
    assert all(SECRET not in repr(e) for e in events)


CHILD_WAITS = {
    "outer": """
        name: outer
        steps:
          - id: call
            action: playbook
            with: {name: inner}
        finally:
          - id: cleanup
            action: shell
            with: {script: "echo cleaned"}
    """,
    "inner": """
        name: inner
        steps:
          - id: pause
            action: wait
            with: {for: 1h}
    """,
}


async def test_cancel_reaches_the_child_run(harness: HarnessFactory) -> None:
    h = await harness(CHILD_WAITS)
    parent_id = await h.run("outer")
    (child,) = await s.children(h, parent_id)
    assert child.status == "waiting"

    await h.engine.cancel(parent_id, by="bob")
    await h.engine.wait_idle()

    assert (await h.run_row(parent_id)).status == "cancelled"
    child_row = await h.run_row(child.id)
    assert (child_row.status, child_row.stopped_by) == ("cancelled", "bob")
    assert await h.statuses(parent_id) == {"call": "cancelled", "cleanup": "succeeded"}
    await s.assert_settled(h, parent_id)
    await s.assert_settled(h, child.id)


async def test_log_levels_reach_the_run_log_and_events(harness: HarnessFactory) -> None:
    h = await harness(
        {
            "levels": """
                name: levels
                steps:
                  - id: warn
                    action: log
                    with: {message: "disk at 91%", level: warning}
            """
        }
    )
    run_id = await h.run("levels")
    rows = await h.store.all(
        sa.select(t.run_logs.c.level, t.run_logs.c.message).where(t.run_logs.c.run_id == run_id)
    )
    assert [tuple(r) for r in rows] == [("warning", "disk at 91%")]
    (logged,) = s.of_type(h.seen(), ev.RunLogged)
    assert logged.level == "warning"
