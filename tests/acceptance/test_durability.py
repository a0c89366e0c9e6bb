"""Durability (issue 3): ``kill -9`` at any moment, start again, and every run continues.

Each test runs a real ``baton serve`` on SQLite and on PostgreSQL (``db_url``), kills it
at a chosen point (found by polling the rows, never by sleeping), starts it again on the
same database and asserts on the rows: final states, attempt counts, timer deadlines. Each
shell step appends a line to a file in the work folder, so running a step twice shows.

The rules checked (README, "Architecture" and "One Baton, many processes"):

- a step running when Baton died re-runs (as a new attempt) only if it is idempotent or
  has attempts left; otherwise it is ``interrupted`` and the run takes its failure path;
- retries, waits and approvals keep their original deadlines; one that passed while Baton
  was down fires at start;
- a graceful stop (SIGTERM) drains running steps up to ``BATON_DRAIN_TIMEOUT`` and leaves
  nothing ``running``;
- queued runs stay queued behind their concurrency key and start when it frees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.schedules import cron
from tests.acceptance.serve import Server, lines, now, wait_until

MakeServer = Callable[..., Server]

DIR_PARAM = "params: {dir: {type: string, required: true}, tag: {type: string, default: x}}"


def blocking(name: str, *, fast_second_time: bool = False) -> str:
    """A shell script that appends a line to ``<name>.log``, records its pid, then blocks.
    With ``fast_second_time`` it exits 0 at once when the log already had a line (so a
    re-run finishes)."""
    log = f'"$PARAM_DIR/{name}.log"'
    quick = f'[ "$(wc -l < {log})" -ge 2 ] && exit 0; ' if fast_second_time else ""
    return f'echo run >> {log}; {quick}echo $$ > "$PARAM_DIR/{name}.pid"; exec sleep 30'


def appends(name: str) -> str:
    return f'echo "$PARAM_TAG" >> "$PARAM_DIR/{name}.log"'


PLAYBOOKS = {
    # 1 and 6: a step that is neither idempotent nor retried
    "once": f"""
        name: once
        {DIR_PARAM}
        steps:
          - id: work
            action: shell
            with: {{script: '{blocking("work")}'}}
          - id: after
            action: shell
            needs: work
            with: {{script: '{appends("after")}'}}
        on_failure:
          - id: cleanup
            action: shell
            with: {{script: '{appends("cleanup")}'}}
    """,
    # 2: one idempotent step and one with attempts left, both mid-flight
    "rerun": f"""
        name: rerun
        {DIR_PARAM}
        steps:
          - id: idem
            action: shell
            idempotent: true
            with: {{script: '{blocking("idem", fast_second_time=True)}'}}
          - id: retried
            action: shell
            retry: {{attempts: 2, delay: 1s}}
            with: {{script: '{blocking("retried", fast_second_time=True)}'}}
          - id: after
            action: shell
            needs: [idem, retried]
            with: {{script: '{appends("after")}'}}
    """,
    # 3: fails once, succeeds on the retry, 3 s later
    "flaky": """
        name: flaky
        params:
          dir: {type: string, required: true}
        steps:
          - id: flaky
            action: shell
            retry: {attempts: 3, delay: 6s}
            with:
              script: |
                echo try >> "$PARAM_DIR/flaky.log"
                [ "$(wc -l < "$PARAM_DIR/flaky.log")" -ge 2 ]
    """,
    # 4: Baton comes back before the wait's deadline (3 s) or after it (1 s)
    **{
        name: f"""
        name: {name}
        {DIR_PARAM}
        steps:
          - id: pause
            action: wait
            with: {{for: {seconds}s}}
          - id: after
            action: shell
            needs: pause
            with: {{script: '{appends("after")}'}}
    """
        for name, seconds in (("pause", 6), ("pause-short", 1))
    },
    # 5
    "gate": f"""
        name: gate
        {DIR_PARAM}
        steps:
          - id: gate
            action: approval
            with: {{approvers: [bob], timeout: 1h}}
          - id: after
            action: shell
            needs: gate
            with: {{script: '{appends("after")}'}}
    """,
    # 6: a short step (drained) followed by another
    "drain": f"""
        name: drain
        {DIR_PARAM}
        steps:
          - id: short
            action: shell
            with:
              script: 'echo $$ > "$PARAM_DIR/short.pid"; sleep 1; {appends("short")}'
          - id: after
            action: shell
            needs: short
            with: {{script: '{appends("after")}'}}
    """,
    # 6: two long steps, one idempotent, cut short by the drain timeout
    "long": f"""
        name: long
        {DIR_PARAM}
        steps:
          - id: once
            action: shell
            with: {{script: '{blocking("once")}'}}
          - id: idem
            action: shell
            idempotent: true
            with: {{script: '{blocking("idem", fast_second_time=True)}'}}
        on_failure:
          - id: cleanup
            action: shell
            with: {{script: '{appends("cleanup")}'}}
    """,
    # 7
    "serial": f"""
        name: serial
        {DIR_PARAM}
        concurrency: {{limit: 1}}
        steps:
          - id: pause
            action: wait
            with: {{for: 1s}}
          - id: mark
            action: shell
            needs: pause
            with: {{script: '{appends("serial")}'}}
    """,
}


@pytest.fixture
def make_server(tmp_path: Path, db_url: str) -> Iterator[MakeServer]:
    servers: list[Server] = []

    def make(drain_timeout: float = 10.0, playbooks: dict[str, str] = PLAYBOOKS) -> Server:
        server = Server(tmp_path, db_url, playbooks, drain_timeout=drain_timeout)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def assert_settled(server: Server, run_id: str) -> None:
    """A finished run leaves no step or attempt open."""
    open_steps = {
        s.step_id: s.status
        for s in server.steps(run_id).values()
        if s.status in ("pending", "running", "waiting")
    }
    assert not open_steps, open_steps
    assert not server.open_rows()


# --- SIGKILL while a step runs ----------------------------------------------------------


def test_kill_during_a_step_that_may_not_rerun_interrupts_it(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("once")
    server.wait_running(run_id, "work", "work.pid")
    server.kill()
    assert server.step(run_id, "work").status == "running"  # as the crash left it

    server.start()
    run = server.wait_run(run_id)

    assert run.status == "failed"
    assert run.failed_step == "work"
    steps = server.steps(run_id)
    assert steps["work"].status == "interrupted"
    assert steps["work"].attempts == 1
    assert "interrupted" in (steps["work"].error or "")
    assert steps["after"].status == "skipped"
    assert steps["cleanup"].status == "succeeded"
    assert [a.status for a in server.attempts(run_id, "work")] == ["interrupted"]
    assert lines(server.work / "work.log") == ["run"]  # never run twice
    assert lines(server.work / "cleanup.log") == ["x"]
    assert not (server.work / "after.log").exists()
    assert_settled(server, run_id)
    assert server.api_run(run_id)["status"] == "failed"


def test_kill_during_idempotent_or_retried_steps_reruns_them(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("rerun")
    server.wait_running(run_id, "idem", "idem.pid")
    server.wait_running(run_id, "retried", "retried.pid")
    server.kill()

    server.start()
    run = server.wait_run(run_id)

    assert run.status == "succeeded", run.error
    steps = server.steps(run_id)
    for step in ("idem", "retried"):
        assert steps[step].status == "succeeded"
        assert steps[step].attempts == 2  # the interrupted attempt counts
        assert [a.status for a in server.attempts(run_id, step)] == ["interrupted", "succeeded"]
        assert lines(server.work / f"{step}.log") == ["run", "run"]
    assert lines(server.work / "after.log") == ["x"]
    assert_settled(server, run_id)


# --- SIGKILL while a timer is pending ---------------------------------------------------


def test_kill_while_a_retry_is_pending_keeps_its_deadline(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("flaky")
    waiting = server.wait_step(run_id, "flaky", "waiting", wake_reason="retry")
    server.kill()
    first = server.attempts(run_id, "flaky")[0]
    assert first.status == "failed"
    assert waiting.wake_at == first.finished_at + timedelta(seconds=6)

    restarted = server.start()
    assert restarted < waiting.wake_at, "restarted too late to show the timer was re-armed"
    run = server.wait_run(run_id)

    assert run.status == "succeeded", run.error
    attempts = server.attempts(run_id, "flaky")
    assert [a.status for a in attempts] == ["failed", "succeeded"]
    assert attempts[1].started_at >= waiting.wake_at  # not a moment early
    assert server.step(run_id, "flaky").attempts == 2
    assert lines(server.work / "flaky.log") == ["try", "try"]
    assert_settled(server, run_id)


@pytest.mark.parametrize("down_past_deadline", [False, True], ids=["back-before", "back-after"])
def test_kill_during_a_wait_keeps_its_deadline(
    make_server: MakeServer, down_past_deadline: bool
) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("pause-short" if down_past_deadline else "pause")
    waiting = server.wait_step(run_id, "pause", "waiting", wake_reason="wait")
    deadline = waiting.wake_at
    assert deadline is not None
    server.kill()
    if down_past_deadline:
        wait_until(lambda: now() > deadline, what="the wait's deadline passing")

    restarted = server.start()
    if not down_past_deadline:
        assert restarted < deadline, "restarted too late to show the timer was re-armed"
    run = server.wait_run(run_id)

    assert run.status == "succeeded", run.error
    pause = server.step(run_id, "pause")
    assert pause.status == "succeeded"
    assert pause.finished_at >= deadline
    if down_past_deadline:  # fired at start, not a full wait later
        assert pause.finished_at - restarted < timedelta(seconds=5)
    assert pause.output["waited_until"] == deadline.isoformat()
    assert [a.status for a in server.attempts(run_id, "pause")] == ["succeeded"]
    assert lines(server.work / "after.log") == ["x"]
    assert_settled(server, run_id)


def test_kill_while_an_approval_waits_then_decide_after_restart(
    make_server: MakeServer,
) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("gate")
    server.wait_step(run_id, "gate", "waiting", wake_reason="approval")
    (approval,) = server.approvals(run_id)
    assert approval.status == "pending"
    server.kill()

    server.start()
    assert server.run(run_id).status == "waiting"
    answer = server.decide(approval.id, "bob")
    assert answer["recorded"] is True and answer["status"] == "approved", answer
    run = server.wait_run(run_id)
    again = server.decide(approval.id, "bob")  # a second click changes nothing

    assert run.status == "succeeded", run.error
    assert again["recorded"] is False
    (closed,) = server.approvals(run_id)
    assert closed.status == "approved"
    assert closed.deadline_at == approval.deadline_at  # the original deadline, kept
    assert [(d.user, d.decision) for d in server.decisions(approval.id)] == [("bob", "approve")]
    assert server.step(run_id, "gate").status == "succeeded"
    assert lines(server.work / "after.log") == ["x"]
    assert_settled(server, run_id)


# --- graceful stop ----------------------------------------------------------------------


def test_sigterm_lets_a_running_step_finish_within_the_drain_timeout(
    make_server: MakeServer,
) -> None:
    server = make_server(drain_timeout=15)
    server.start()
    run_id = server.start_run("drain")
    server.wait_running(run_id, "short", "short.pid")

    assert server.terminate() == 0
    assert not server.open_rows()
    steps = server.steps(run_id)
    assert steps["short"].status == "succeeded"
    assert steps["after"].status == "pending"  # nothing new starts while stopping
    assert server.run(run_id).status == "running"
    assert lines(server.work / "short.log") == ["x"]

    server.start()
    run = server.wait_run(run_id)
    assert run.status == "succeeded", run.error
    assert server.step(run_id, "short").attempts == 1
    assert lines(server.work / "short.log") == ["x"]
    assert lines(server.work / "after.log") == ["x"]
    assert_settled(server, run_id)


def test_sigterm_past_the_drain_timeout_interrupts_steps_then_resume_decides(
    make_server: MakeServer,
) -> None:
    server = make_server(drain_timeout=0.5)
    server.start()
    run_id = server.start_run("long")
    server.wait_running(run_id, "once", "once.pid")
    server.wait_running(run_id, "idem", "idem.pid")

    assert server.terminate() == 0
    assert not server.open_rows()
    steps = server.steps(run_id)
    for step in ("once", "idem"):
        assert steps[step].status == "interrupted"
        assert steps[step].wake_reason == "shutdown"
        assert [a.status for a in server.attempts(run_id, step)] == ["interrupted"]
    assert server.run(run_id).status in ("running", "waiting")  # still active

    server.start()
    run = server.wait_run(run_id)

    assert run.status == "failed"
    assert run.failed_step == "once"
    steps = server.steps(run_id)
    assert steps["once"].status == "interrupted" and steps["once"].attempts == 1
    assert steps["idem"].status == "succeeded" and steps["idem"].attempts == 2
    assert [a.status for a in server.attempts(run_id, "idem")] == ["interrupted", "succeeded"]
    assert steps["cleanup"].status == "succeeded"
    assert lines(server.work / "once.log") == ["run"]
    assert lines(server.work / "idem.log") == ["run", "run"]
    assert lines(server.work / "cleanup.log") == ["x"]
    assert_settled(server, run_id)


# --- queued runs ------------------------------------------------------------------------


def test_a_queued_run_survives_a_kill_and_starts_when_the_first_ends(
    make_server: MakeServer,
) -> None:
    server = make_server()
    server.start()
    first = server.start_run("serial", tag="first")
    second = server.start_run("serial", tag="second")
    server.wait_step(first, "pause", "waiting", wake_reason="wait")
    assert server.run(second).status == "queued"
    server.kill()

    server.start()
    runs = [server.wait_run(first), server.wait_run(second)]

    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[1].started_at >= runs[0].finished_at  # one at a time, in order
    assert lines(server.work / "serial.log") == ["first", "second"]
    for run_id in (first, second):
        assert_settled(server, run_id)


# --- cron schedules ---------------------------------------------------------------------

TICKER = """
    name: ticker
    triggers:
      - schedule: {cron: "*/10 * * * * *"}
    steps:
      - id: tick
        action: shell
        with: {script: 'echo tick >> "$WORK_DIR/ticks.log"'}
"""


def fire_time(run: Any) -> datetime:
    return datetime.fromisoformat(run.source["fire_time"])


def test_a_kill_between_two_cron_fires_runs_each_fire_once(make_server: MakeServer) -> None:
    server = make_server(playbooks={"ticker": TICKER})
    server.start()
    (first,) = wait_until(lambda: server.runs_of("ticker"), what="the first fire")
    first = server.wait_run(first.id)
    server.kill()
    first_fire = fire_time(first)
    second_fire = cron.next_fire("*/10 * * * * *", "UTC", first_fire)
    assert second_fire == first_fire + timedelta(seconds=10)

    restarted = server.start()
    assert restarted < second_fire, "restarted too late: the test wants a restart between fires"
    second = wait_until(lambda: server.runs_of("ticker")[1:], what="the next fire")[0]
    server.wait_run(second.id)
    assert server.terminate() == 0

    runs = server.runs_of("ticker")
    fires = [fire_time(r) for r in runs]
    assert len(set(fires)) == len(fires), f"a fire ran twice: {fires}"
    assert fires[:2] == [first_fire, second_fire], fires  # none lost, none repeated
    assert all(r.trigger == "schedule" for r in runs)
    assert [r.status for r in runs[:2]] == ["succeeded", "succeeded"]
    ticked = [r for r in runs if server.step(r.id, "tick").status == "succeeded"]
    assert lines(server.work / "ticks.log") == ["tick"] * len(ticked)  # one line a fire
    assert not server.open_rows()
