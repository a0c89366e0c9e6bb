"""Steps on workers (``runs_on``), with real ``baton worker`` processes on the real
PostgreSQL server: a run driven by an engine in this process sends steps to workers
started as subprocesses, which run them and report back through the run's inbox. Every
wait is a condition polled up to a deadline; the workers beat every 0.2 s, so one killed
is taken for dead after a second."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.commands import Actor, Commands
from bot.slack import blocks
from engine import events as ev
from engine.runs import inbox
from engine.runs.requests import RunRequest
from engine.views import queries
from storage import tables as t
from tests.conftest import PG_URL, HarnessFactory
from tests.fakes.processes import alive, wait_until
from tests.fakes.sshd import Sshd
from tests.harness import Harness

pytestmark = pytest.mark.postgres

BATON = str(Path(sys.executable).with_name("baton"))
HEARTBEAT = 0.2
WITHIN = 30.0  # seconds a worker process may take to start and run a step (busy machine)


class Workers:
    """``baton worker`` processes on the test's database, stopped at the end."""

    def __init__(self, db_url: str, root: Path) -> None:
        self.db_url = db_url
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, labels: str, **env: str) -> subprocess.Popen[bytes]:
        with (self.root / f"worker-{len(self.procs)}.log").open("wb") as log:
            proc = self._popen(labels, log, env)
        self.procs.append(proc)
        return proc

    def _popen(self, labels: str, log: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [BATON, "worker", "--labels", labels],
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(self.root),
                "BATON_DATABASE_URL": self.db_url,
                "BATON_WORKER_HEARTBEAT": str(HEARTBEAT),
                "BATON_DRAIN_TIMEOUT": "5",
                **env,
            },
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.root / f"worker-{self.procs.index(proc)}.log").read_text()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def module_db() -> Iterator[str]:
    """One PostgreSQL schema for the module: its workers serve every test."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def db_url(module_db: str) -> str:
    return module_db


@pytest.fixture(scope="module")
def shared(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    """Workers for the tests that do not stop them: one labelled dc1, one dc2 and gpu
    (neither has the engine's key)."""
    made = Workers(module_db, tmp_path_factory.mktemp("shared"))
    made.start("dc1")
    made.start("dc2,gpu")
    yield made
    made.stop()


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
    """Workers of a test's own (to kill, to stop), on labels nobody else serves."""
    made = Workers(db_url, tmp_path)
    yield made
    made.stop()


@pytest.fixture
async def opened(harness: HarnessFactory) -> AsyncIterator[Callable[..., Any]]:
    """A harness whose engine looks at the workers' heartbeats every 0.2 s."""

    async def make(playbooks: dict[str, str], **kw: Any) -> Harness:
        h = await harness(playbooks, **kw)
        h.engine.remote.heartbeat = HEARTBEAT
        return h

    yield make


async def start(h: Harness, playbook: str, params: dict[str, Any] | None = None) -> str:
    """Start a run without waiting for the engine to be idle: its steps on workers keep
    it busy until they report."""
    request = RunRequest(playbook=playbook, params=params or {}, requested_by="alice")
    return await h.engine.start_run(request)


async def jobs_of(h: Harness, run_id: str) -> list[sa.Row[Any]]:
    """The jobs (procrastinate's rows) of a run's steps, oldest first."""
    query = sa.text(
        "SELECT status::text AS status, args::text AS args FROM procrastinate_jobs "
        "WHERE args->'spec'->>'run_id' = :run ORDER BY id"
    )
    return await h.store.all(query.bindparams(run=run_id))


async def step_row(h: Harness, run_id: str, step: str) -> sa.Row[Any]:
    return (await h.steps(run_id))[step]


async def until_step(h: Harness, run_id: str, step: str, test: Callable[[Any], bool]) -> Any:
    """Poll the step's row until ``test`` holds (up to WITHIN seconds)."""
    found: list[Any] = []

    async def look() -> bool:
        found[:] = [await step_row(h, run_id, step)]
        return test(found[0])

    await _until(look)
    return found[0]


async def until_run(h: Harness, run_id: str, *statuses: str) -> sa.Row[Any]:
    async def ended() -> bool:
        return (await h.run_row(run_id)).status in statuses

    await _until(ended)
    return await h.run_row(run_id)


async def _until(check: Callable[[], Any], within: float = WITHIN) -> None:
    """Await ``check()`` every 50 ms until it is true, failing after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_step_runs_on_a_worker_and_its_output_lands_on_the_run(
    opened: Callable[..., Any], shared: Workers
) -> None:
    h = await opened(
        {
            "remote": """
            name: remote
            params:
              who: {default: world}
            steps:
              - id: there
                action: shell
                runs_on: dc1
                with: {script: 'echo "$PPID hello $PARAM_WHO"'}
              - id: here
                action: log
                needs: [there]
                with: {message: "{{ steps.there.output.stdout }}"}
            """
        }
    )
    worker = shared.procs[0]
    run_id = await start(h, "remote", {"who": "baton"})
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded", row.error
    there = await step_row(h, run_id, "there")
    assert there.output["stdout"] == f"{worker.pid} hello baton\n"  # its parent: the worker
    assert there.output["rc"] == 0
    logs = await h.store.all(sa.select(t.run_logs.c.message).where(t.run_logs.c.run_id == run_id))
    assert [r.message for r in logs] == [f"{worker.pid} hello baton\n"]
    assert f"run {run_id} step there (attempt 1): succeeded" in shared.log(worker)


async def test_an_ssh_step_on_a_worker_finds_its_host_in_the_inventory_and_lets_go(
    opened: Callable[..., Any], workers: Workers, sshd: Sshd, tmp_path: Path
) -> None:
    """The worker reads BATON_CONFIG's inventory (``web1`` is no name DNS knows) and the
    ssh settings, and closes a run's connections once it holds no step of the run."""
    where = f"ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user={sshd.user}"
    (tmp_path / "hosts.ini").write_text(f"[web]\nweb1 {where}\n")
    (tmp_path / "baton.yml").write_text("inventory: hosts.ini\n")
    (tmp_path / "known_hosts").write_text(sshd.host_key_line)
    worker = workers.start(
        "ssh1",
        BATON_WORKER_HEARTBEAT="0.5",  # dead after 2.5 s silent: a busy machine stalls it a second
        BATON_CONFIG=str(tmp_path / "baton.yml"),
        BATON_SSH_KNOWN_HOSTS=str(tmp_path / "known_hosts"),
        BATON_SSH_KEY=str(sshd.client_key),
    )
    h = await opened(
        {
            "remote": """
            name: remote
            steps:
              - {id: one, action: ssh, runs_on: ssh1, with: {host: web1, script: echo one}}
              - id: two
                action: ssh
                runs_on: ssh1
                needs: [one]
                with: {host: web1, script: echo two}
            """
        }
    )
    h.engine.remote.heartbeat = 0.5
    before = sshd.connections()
    run_id = await start(h, "remote")
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded", (row.error, workers.log(worker))
    steps = await h.steps(run_id)
    assert (steps["one"].output["stdout"], steps["two"].output["stdout"]) == ("one\n", "two\n")
    assert sshd.connections() - before == 2  # a step of its own each: one after the other
    await wait_until(lambda: not sshd.sessions(), within=WITHIN)  # none left open


async def test_a_steps_log_lines_reach_the_run_while_it_runs_on_a_worker(
    opened: Callable[..., Any], shared: Workers, tmp_path: Path
) -> None:
    h = await opened(
        {
            "follow": """
            name: follow
            params:
              dir: {type: string}
            steps:
              - id: hold
                action: python
                runs_on: dc1
                with:
                  call: "tests.fakes.pyfuncs:wait_for_file"
                  args: {path: "{{ params.dir }}/go"}
            """
        }
    )
    run_id = await start(h, "follow", {"dir": str(tmp_path)})

    async def lines() -> list[str]:
        rows = await h.store.all(
            sa.select(t.run_logs.c.message)
            .where(t.run_logs.c.run_id == run_id)
            .order_by(t.run_logs.c.id)
        )
        return [r.message for r in rows]

    async def first_line() -> bool:
        return await lines() == ["waiting for go"]

    await _until(first_line)  # while the step still waits for its file
    assert (await step_row(h, run_id, "hold")).status == "running"
    (tmp_path / "go").touch()
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded", row.error
    assert await lines() == ["waiting for go", "go appeared"]  # each once


async def test_a_shell_steps_lines_reach_the_run_while_it_runs_on_a_worker(
    opened: Callable[..., Any], shared: Workers, tmp_path: Path
) -> None:
    h = await opened(
        {
            "talk": """
            name: talk
            params:
              fifo: {type: string}
            steps:
              - id: talk
                action: shell
                runs_on: dc1
                with:
                  script: |
                    echo "first line"
                    cat "$PARAM_FIFO"
                    echo "last line"
            """
        }
    )
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    run_id = await start(h, "talk", {"fifo": str(fifo)})

    async def lines() -> list[str]:
        rows = await h.store.all(
            sa.select(t.run_logs.c.message)
            .where(t.run_logs.c.run_id == run_id)
            .order_by(t.run_logs.c.id)
        )
        return [r.message for r in rows]

    async def first_line() -> bool:
        return await lines() == ["first line"]

    await _until(first_line)  # written by the worker while the step waits on the fifo
    assert (await step_row(h, run_id, "talk")).status == "running"
    fd: list[int] = []

    async def reader_there() -> bool:  # the step opened the fifo: it can be written
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True

    await _until(reader_there)
    os.write(fd[0], b"from the test\n")
    os.close(fd[0])
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded", row.error
    assert (await step_row(h, run_id, "talk")).output["stdout"] == (
        "first line\nfrom the test\nlast line\n"
    )
    assert await lines() == ["first line", "from the test", "last line"]  # each once


async def test_steps_go_to_the_workers_of_their_own_labels(
    opened: Callable[..., Any], shared: Workers
) -> None:
    h = await opened(
        {
            "spread": """
            name: spread
            steps:
              - {id: a, action: shell, runs_on: dc1, with: {argv: [sh, -c, 'echo $PPID']}}
              - {id: b, action: shell, runs_on: dc2, with: {argv: [sh, -c, 'echo $PPID']}}
              - {id: c, action: shell, runs_on: gpu, with: {argv: [sh, -c, 'echo $PPID']}}
              - {id: d, action: shell, with: {argv: [sh, -c, 'echo $PPID']}}
            """
        }
    )
    one, two = shared.procs
    run_id = await start(h, "spread")
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded", row.error
    ran = {k: int(v.output["stdout"]) for k, v in (await h.steps(run_id)).items()}
    assert ran == {"a": one.pid, "b": two.pid, "c": two.pid, "d": os.getpid()}


async def test_with_no_worker_for_its_label_a_step_says_so_then_times_out(
    opened: Callable[..., Any], shared: Workers
) -> None:
    h = await opened(
        {
            "lonely": """
            name: lonely
            steps:
              - {id: far, action: shell, runs_on: dc9, timeout: 30s, with: {argv: [echo, hi]}}
            """
        }
    )
    # workers run, but none labelled dc9
    run_id = await start(h, "lonely")
    row = await until_step(h, run_id, "far", lambda r: r.output is not None)
    assert (row.status, row.output) == ("running", {"waiting_for": "a worker labelled dc9"})
    run = await queries.get_run(h.store, run_id)
    assert run["steps"][0]["output"] == {"waiting_for": "a worker labelled dc9"}
    commands = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")
    status = await commands.handle(Actor(id="alice", via="console"), f"status {run_id}", {})
    assert "  far: running\n    waiting for a worker labelled dc9" in status.text
    line = blocks.step_line(run["steps"][0], h.clock.now())
    assert line.startswith(":arrows_counterclockwise: `far` running")
    assert line.endswith(" · waiting for a worker labelled dc9")
    _, card = blocks.run_card(run, h.clock.now())
    assert line in json.dumps(card, ensure_ascii=False)
    waiting = [e for e in h.seen() if isinstance(e, ev.StepWaiting)]
    assert [(e.step_id, e.reason) for e in waiting] == [("far", "a worker labelled dc9")]

    await h.advance(30)
    row = await until_run(h, run_id, "failed")
    far = await step_row(h, run_id, "far")
    assert far.status == "failed"
    assert far.error.startswith("timed out after")
    assert far.output == {"waiting_for": "a worker labelled dc9"}
    jobs = await jobs_of(h, run_id)
    assert [j.status for j in jobs] == ["cancelled"]  # taken back: no worker starts it later


def _slow_step(flag: Path, pidfile: Path, *, idempotent: bool, label: str) -> str:
    """A step that, the first time, leaves a flag and its pid and waits (for the test to
    kill its worker); run again, it ends at once."""
    script = (
        f"if [ -e {flag} ]; then echo again; else touch {flag}; echo waiting; "
        f"echo $$ > {pidfile}; exec sleep 60; fi"
    )
    return f"""
            name: slow
            steps:
              - id: long
                action: shell
                runs_on: {label}
                idempotent: {str(idempotent).lower()}
                with: {{script: {json.dumps(script)}}}
            """


def _kill_step_process(pidfile: Path) -> None:
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def test_a_killed_workers_idempotent_step_is_redelivered_to_another_worker(
    opened: Callable[..., Any], workers: Workers, tmp_path: Path
) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    h = await opened({"slow": _slow_step(flag, pidfile, idempotent=True, label="k1")})
    first = workers.start("k1")
    run_id = await start(h, "slow")
    try:
        await wait_until(pidfile.exists, WITHIN)
        first.kill()  # SIGKILL: no goodbye, its heartbeat just stops
        first.wait()
        second = workers.start("k1")
        row = await until_run(h, run_id, "succeeded", "failed")
    finally:
        _kill_step_process(pidfile)
    assert row.status == "succeeded", row.error
    long = await step_row(h, run_id, "long")
    assert (long.output["stdout"], long.attempts) == ("again\n", 1)
    logs = await h.store.all(sa.select(t.run_logs.c.message).where(t.run_logs.c.run_id == run_id))
    assert [r.message for r in logs] == [
        "re-delivered to the workers labelled k1: the worker running it stopped answering "
        "(the step is idempotent)"
    ]
    assert f"run {run_id} step long (attempt 1): succeeded" in workers.log(second)
    second.send_signal(signal.SIGTERM)  # a worker stops cleanly, and says so
    assert second.wait(timeout=WITHIN) == 0
    assert workers.log(second).splitlines()[-1].endswith(" stopped")


async def test_a_killed_workers_step_that_is_not_idempotent_is_interrupted(
    opened: Callable[..., Any], workers: Workers, tmp_path: Path
) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    h = await opened({"slow": _slow_step(flag, pidfile, idempotent=False, label="k2")})
    worker = workers.start("k2")
    run_id = await start(h, "slow")
    try:
        await wait_until(pidfile.exists, WITHIN)
        worker.kill()
        worker.wait()
        row = await until_run(h, run_id, "succeeded", "failed")
    finally:
        _kill_step_process(pidfile)
    long = await step_row(h, run_id, "long")
    assert long.status == "interrupted"
    assert long.error.startswith(
        "interrupted: the worker running it stopped answering, and the step is not idempotent"
    )
    assert (row.status, row.failed_step) == ("failed", "long")
    assert row.error == f"step long {long.error}"
    interrupted = [e for e in h.seen() if isinstance(e, ev.StepInterrupted)]
    assert [(e.step_id, e.rerun) for e in interrupted] == [("long", False)]


async def test_a_report_of_another_epoch_or_attempt_is_dropped(
    opened: Callable[..., Any],
) -> None:
    """No worker at all: the test writes the reports a worker would, into the inbox."""
    h = await opened(
        {
            "fenced": """
            name: fenced
            steps:
              - {id: far, action: shell, runs_on: fence, with: {argv: [echo, hi]}}
            """
        }
    )
    run_id = await start(h, "fenced")
    await until_step(h, run_id, "far", lambda r: r.output is not None)
    epoch = (await h.run_row(run_id)).epoch

    async def report(epoch: int, attempt: int, stdout: str) -> inbox.Answer:
        payload = {
            "step_id": "far",
            "attempt": attempt,
            "epoch": epoch,
            "worker": "test",
            "outcome": "succeeded",
            "output": {"rc": 0, "stdout": stdout, "stderr": ""},
        }
        put = inbox.put(
            run_id, inbox.RESULT, payload, "test", datetime.now(UTC), postgres=True, box=[]
        )
        command_id = (await h.store.write(put))[0]
        row: list[Any] = []

        async def answered() -> bool:
            found = await h.store.one(inbox.state_of(command_id, run_id))
            row[:] = [found]
            return found.state != inbox.PENDING

        await _until(answered)
        return inbox.Answer(row[0].state, row[0].answer)

    stale = await report(epoch - 1, 1, "from an older driver\n")
    assert stale.state == inbox.REFUSED
    assert stale.message.startswith("dropped a stale report of step far from worker test")
    late = await report(epoch, 0, "from an earlier attempt\n")
    assert late.state == inbox.REFUSED
    assert (await step_row(h, run_id, "far")).status == "running"

    good = await report(epoch, 1, "hi\n")
    assert good.state == inbox.APPLIED
    row = await until_run(h, run_id, "succeeded", "failed")
    assert row.status == "succeeded"
    assert (await step_row(h, run_id, "far")).output["stdout"] == "hi\n"


async def test_cancelling_the_run_kills_its_step_on_the_worker(
    opened: Callable[..., Any], shared: Workers, tmp_path: Path
) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    h = await opened({"slow": _slow_step(flag, pidfile, idempotent=False, label="dc1")})
    worker = shared.procs[0]
    run_id = await start(h, "slow")
    try:
        await wait_until(pidfile.exists, WITHIN)
        pid = int(pidfile.read_text())
        answer = await h.engine.cancel(run_id, "alice")
        assert answer.applied
        row = await until_run(h, run_id, "cancelled")
        await wait_until(lambda: not alive(pid), WITHIN)  # the worker killed the step
    finally:
        _kill_step_process(pidfile)
    long = await step_row(h, run_id, "long")
    assert long.status == "cancelled"
    assert long.output["stdout"] == "waiting\n"  # what it printed, from its worker
    assert row.error == "cancelled by alice"
    assert worker.poll() is None  # the worker goes on, ready for the next step
    assert f"run {run_id} step long (attempt 1): cancelled by its run" in shared.log(worker)


SECRETIVE = """
            name: {name}
            params:
              token: {{type: secret, required: true}}
            steps:
              - id: use
                action: shell
                runs_on: {label}
                with: {{script: 'echo "token=$PARAM_TOKEN"'}}
            """


async def test_secrets_travel_sealed_and_come_back_masked(
    opened: Callable[..., Any], shared: Workers, workers: Workers
) -> None:
    h = await opened(
        {
            "secretive": SECRETIVE.format(name="secretive", label="dc1"),
            "secretive-keyed": SECRETIVE.format(name="secretive-keyed", label="keyed"),
        }
    )
    run_id = await start(h, "secretive", {"token": "hunter22"})  # to dc1: no key there
    row = await until_run(h, run_id, "failed", "succeeded")
    assert "has no key: give it the servers' BATON_SECRET_KEY" in row.error

    keyed = await start(h, "secretive-keyed", {"token": "hunter22"})
    await until_step(h, keyed, "use", lambda r: r.output is not None)  # waits for a worker
    jobs = await jobs_of(h, keyed)
    assert len(jobs) == 1 and "hunter22" not in jobs[0].args and '"sealed"' in jobs[0].args
    workers.start("keyed", BATON_KEY_FILE=str(h.root / "key"))  # the engine's key file
    row = await until_run(h, keyed, "failed", "succeeded")
    assert row.status == "succeeded", row.error
    assert (await step_row(h, keyed, "use")).output["stdout"] == "token=***\n"
    reports = await h.store.all(
        sa.select(t.run_commands.c.payload).where(
            t.run_commands.c.kind == inbox.RESULT, t.run_commands.c.run_id.in_([run_id, keyed])
        )
    )
    assert len(reports) == 2 and all("hunter22" not in json.dumps(r.payload) for r in reports)


async def test_a_worker_stopped_past_its_drain_gives_its_step_up(
    opened: Callable[..., Any], workers: Workers, tmp_path: Path
) -> None:
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    h = await opened({"slow": _slow_step(flag, pidfile, idempotent=False, label="k3")})
    worker = workers.start("k3", BATON_DRAIN_TIMEOUT="0")
    run_id = await start(h, "slow")
    try:
        await wait_until(pidfile.exists, WITHIN)
        pid = int(pidfile.read_text())
        worker.send_signal(signal.SIGTERM)  # no time to finish: the step is given up
        assert worker.wait(timeout=WITHIN) == 0
        row = await until_run(h, run_id, "succeeded", "failed")
        await wait_until(lambda: not alive(pid), WITHIN)  # and its process killed
    finally:
        _kill_step_process(pidfile)
    long = await step_row(h, run_id, "long")
    assert long.status == "interrupted"
    assert long.error.startswith(
        f"interrupted: worker {socket.gethostname()}:{worker.pid} stopped before the step "
        "ended, and the step is not idempotent"
    )
    assert (row.status, row.failed_step) == ("failed", "long")
    assert "stopping; running steps get 0.0 s to finish" in workers.log(worker)


def _baton_run(playbook: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """`baton run PLAYBOOK` in a process of its own (its driver)."""
    quiet = subprocess.DEVNULL
    return subprocess.Popen([BATON, "run", playbook], env=env, cwd=cwd, stdout=quiet, stderr=quiet)


async def test_a_run_adopted_from_a_dead_driver_takes_its_step_back_from_the_worker(
    opened: Callable[..., Any], shared: Workers, tmp_path: Path
) -> None:
    """`baton run` drives the run in its own process and dies (kill -9) while its step
    runs on a worker: this process's engine adopts the run, marks the step interrupted
    (the crash rules), and takes its job back, so it does not run on unseen."""
    flag, pidfile = tmp_path / "flag", tmp_path / "pid"
    h = await opened({"slow": _slow_step(flag, pidfile, idempotent=False, label="dc1")})
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BATON_DATABASE_URL": h.db_url,
        "BATON_PLAYBOOKS": str(h.root / "playbooks"),
        "BATON_KEY_FILE": str(h.root / "key"),
    }
    driver = _baton_run("slow", env, tmp_path)
    try:
        await wait_until(pidfile.exists, WITHIN)
        pid = int(pidfile.read_text())
        owned = sa.select(t.runs.c.id).where(t.runs.c.owner.like(f"%:{driver.pid}:%"))
        run_id = (await h.store.one(owned)).id
        driver.kill()
        driver.wait()
        row = await until_run(h, run_id, "failed", "succeeded")
        await wait_until(lambda: not alive(pid), WITHIN)  # the worker killed the step
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        _kill_step_process(pidfile)
    long = await step_row(h, run_id, "long")
    assert long.status == "interrupted"
    assert long.error.startswith("interrupted: Baton stopped while this step ran")
    assert row.failed_step == "long"

    async def aborted() -> bool:  # its worker marks it so once the step is killed
        return [j.status for j in await jobs_of(h, run_id)] == ["aborted"]

    await _until(aborted)
