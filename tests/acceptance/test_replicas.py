"""Several ``baton serve`` replicas on one database (issue 10, "one system across
processes"), with real processes: replicas killed with ``kill -9``, frozen with SIGSTOP
past their lease, restarted in a loop under a 1-second cron, and a PostgreSQL server of
the test's own stopped and started again under a running step and under a cron.

Every check is on an end state seen from outside: the rows, the API, marker files the
steps write, and the calls the fake Slack Web API recorded. Nothing sleeps a fixed time:
every wait polls a condition up to a deadline. Leases are short (3 s, renewed every
second) where a scenario waits for one to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage import tables as t
from tests.acceptance.serve import TERMINAL, Server, lines, wait_until
from tests.fakes import slack as fake

DIR = "params: {dir: {type: string, required: true}, tag: {type: string, default: x}}"
RUNS_CHANNEL = "C0OPS"
SHORT_LEASE = {"BATON_LEASE": "3", "BATON_LEASE_RENEW": "1"}


def wait_for_file(name: str, then: str) -> str:
    """A step script that records its pid, waits until ``$PARAM_DIR/<name>`` exists (the
    test creates it), then runs ``then``."""
    return (
        f'echo $$ > "$PARAM_DIR/{name}.pid"; '
        f'while [ ! -e "$PARAM_DIR/{name}.go" ]; do sleep 0.05; done; {then}'
    )


PLAYBOOKS = {
    # scenario 1: a non-idempotent step done before the kill, an idempotent one in flight
    "mixed": f"""
        name: mixed
        {DIR}
        steps:
          - id: first
            action: shell
            with: {{script: 'echo "$PARAM_TAG" >> "$PARAM_DIR/first.log"'}}
          - id: idem
            action: shell
            idempotent: true
            needs: [first]
            with:
              script: 'log="$PARAM_DIR/idem-$PARAM_TAG.log"; echo run >> "$log";
                [ "$(wc -l < "$log")" -ge 2 ] && exit 0;
                echo $$ > "$PARAM_DIR/idem-$PARAM_TAG.pid"; exec sleep 30'
          - id: after
            action: shell
            needs: [idem]
            with: {{script: 'echo "$PARAM_TAG" >> "$PARAM_DIR/after.log"'}}
    """,
    # scenario 1: a non-idempotent step in flight; scenario 2: its step ends late
    "fragile": f"""
        name: fragile
        {DIR}
        steps:
          - id: once
            action: shell
            with:
              script: 'echo run >> "$PARAM_DIR/once.log";
                {wait_for_file("once", 'echo done >> "$PARAM_DIR/once-done.log"')}'
          - id: after
            action: shell
            needs: [once]
            with: {{script: 'echo after >> "$PARAM_DIR/fragile-after.log"'}}
        on_failure:
          - id: cleanup
            action: shell
            with: {{script: 'echo cleanup >> "$PARAM_DIR/cleanup.log"'}}
    """,
    "quick": f"""
        name: quick
        {DIR}
        steps:
          - id: mark
            action: shell
            with: {{script: 'echo "$PARAM_TAG" >> "$PARAM_DIR/quick.log"'}}
    """,
}


class SlackThread:
    """The fake Slack Web API, served by its own event loop in a thread (the servers
    under test are other processes; the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = self._call(self._open())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _open(self) -> fake.FakeSlack:
        slack = fake.FakeSlack()
        await slack.start()
        return slack

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": self.fake.bot_token,
            "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
            "SLACK_API_URL": self.fake.url,
            "BATON_SLACK_RUNS_CHANNEL": RUNS_CHANNEL,
        }

    def card_posts(self, run_id: str) -> list[fake.Call]:
        """``chat.postMessage`` calls that posted ``run_id``'s card (top level, in the
        runs channel, naming the run)."""
        return [
            c
            for c in list(self.fake.calls)
            if c.method == "chat.postMessage"
            and c.args.get("channel") == RUNS_CHANNEL
            and not c.args.get("thread_ts")
            and f" run {run_id}: " in str(c.args.get("text", ""))
        ]

    def cards(self, run_id: str) -> list[dict[str, Any]]:
        """The top-level messages of the runs channel about ``run_id``, as edited."""
        return [
            m
            for m in list(self.fake.messages(RUNS_CHANNEL))
            if not m.get("thread_ts") and f" run {run_id}: " in m["text"]
        ]

    def card_showing(self, run_id: str, status: str) -> bool:
        return any(m["text"].endswith(f": {status}") for m in self.cards(run_id))

    def close(self) -> None:
        self._call(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def slack() -> Iterator[SlackThread]:
    s = SlackThread()
    yield s
    s.close()


Replicas = Callable[..., Server]


@pytest.fixture
def replica(tmp_path: Path, db_url: str) -> Iterator[Replicas]:
    """Replicas of one installation: the same database, playbooks and work folder; each
    its own process and port."""
    made: list[Server] = []

    def make(playbooks: dict[str, str] = PLAYBOOKS, **env: str) -> Server:
        server = Server(tmp_path, db_url, playbooks, env=env)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def node_prefix(server: Server) -> str:
    """The start of the node id of the server's current process (``host:pid:``)."""
    assert server.proc is not None
    return f"{socket.gethostname()}:{server.proc.pid}:"


def driven_by(server: Server, run_id: str) -> bool:
    return str(server.run(run_id).owner or "").startswith(node_prefix(server))


def logged(server: Server, ending: str, times: int = 1) -> int:
    """How many lines of the server's log end with ``ending``, if ``times`` or more."""
    count = sum(line.endswith(ending) for line in list(server.log))
    return count if count >= times else 0


def card_stored(server: Server, run_id: str) -> bool:
    """Whether the outbox records ``run_id``'s card as posted (with its ts)."""
    with server.db.connect() as conn:
        ts = conn.execute(
            sa.select(t.chat_posts.c.ts).where(
                t.chat_posts.c.run_id == run_id, t.chat_posts.c.kind == "card"
            )
        ).scalar()
    return ts is not None


def snapshot(server: Server, run_id: str) -> tuple[Any, ...]:
    """Everything the driver of ``run_id`` wrote: the run, its steps and attempts."""
    with server.db.connect() as conn:
        run = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id)).one()
        steps = conn.execute(
            sa.select(t.steps).where(t.steps.c.run_id == run_id).order_by(t.steps.c.step_id)
        ).all()
        attempts = conn.execute(
            sa.select(t.attempts)
            .where(t.attempts.c.run_id == run_id)
            .order_by(t.attempts.c.step_id, t.attempts.c.run_attempt, t.attempts.c.number)
        ).all()
    return tuple(run), [tuple(s) for s in steps], [tuple(a) for a in attempts]


# --- 1. kill -9 of the replica that drives the runs ---------------------------------------


def test_a_replica_killed_mid_step_is_taken_over_by_the_other(
    replica: Replicas, slack: SlackThread
) -> None:
    a = replica(**SHORT_LEASE, **slack.env())
    b = replica(**SHORT_LEASE, **slack.env())
    a.start()
    b.start()
    mixed = {tag: a.start_run("mixed", tag=tag) for tag in ("a", "b")}
    fragile = a.start_run("fragile")
    runs = [*mixed.values(), fragile]
    for tag, run_id in mixed.items():
        a.wait_running(run_id, "idem", f"idem-{tag}.pid")
    a.wait_running(fragile, "once", "once.pid")
    for run_id in runs:
        assert driven_by(a, run_id), a.run(run_id).owner
    # every card is posted (and recorded as such in the outbox) before the kill
    wait_until(lambda: all(len(slack.card_posts(r)) == 1 for r in runs), what="the cards posted")
    wait_until(lambda: all(card_stored(a, r) for r in runs), what="the cards in the outbox")
    epochs = {r: a.run(r).epoch for r in runs}

    a.kill()  # and the steps it started, as when its host goes down

    for tag, run_id in mixed.items():
        row = b.wait_run(run_id)
        assert row.status == "succeeded", (row.status, row.error)
        assert lines(a.work / f"idem-{tag}.log") == ["run", "run"]  # idempotent: re-run
        assert [x.status for x in b.attempts(run_id, "idem")] == ["interrupted", "succeeded"]
    row = b.wait_run(fragile)
    assert row.status == "failed", row.status
    assert "interrupted" in (row.error or ""), row.error
    assert b.step(fragile, "once").status == "interrupted"
    assert b.step(fragile, "after").status == "skipped"
    for run_id in runs:
        assert b.run(run_id).epoch > epochs[run_id]  # adopted under a new epoch
    assert any("adopted" in line for line in b.log), "\n".join(b.log)

    # non-idempotent steps never ran twice; what ends a run ran once
    assert sorted(lines(a.work / "first.log")) == ["a", "b"]
    assert sorted(lines(a.work / "after.log")) == ["a", "b"]
    assert lines(a.work / "once.log") == ["run"]
    assert not (a.work / "once-done.log").exists()
    assert lines(a.work / "cleanup.log") == ["cleanup"]
    assert not b.open_rows()

    # one card per run, edited by the adopter up to the run's end
    final = {**{r: "succeeded" for r in mixed.values()}, fragile: "failed"}
    for run_id, status in final.items():
        wait_until(
            partial(slack.card_showing, run_id, status),
            what=f"the card of {run_id} showing {status}",
        )
        posts = slack.card_posts(run_id)
        assert len(posts) == 1, [(c.args.get("text"), c.args.get("thread_ts")) for c in posts]
        assert len(slack.cards(run_id)) == 1


# --- 2. a replica frozen past its lease -----------------------------------------------------


def test_a_frozen_replica_is_fenced_when_it_wakes(replica: Replicas) -> None:
    a = replica(**SHORT_LEASE)
    b = replica(**SHORT_LEASE)
    a.start()
    b.start()
    run_id = a.start_run("fragile")
    a.wait_running(run_id, "once", "once.pid")
    assert driven_by(a, run_id)
    frozen_epoch = a.run(run_id).epoch
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)  # Baton only: its step runs on (its own session)
    try:
        # the lease runs out; b adopts the run, finds its step interrupted, fails the run
        wait_until(lambda: driven_by(b, run_id), what="b adopting the run")
        row = b.wait_run(run_id)
        assert row.status == "failed", row.status
        assert b.step(run_id, "once").status == "interrupted"
        assert lines(b.work / "cleanup.log") == ["cleanup"]
        decided = snapshot(b, run_id)
        assert decided[0] == tuple(b.run(run_id))
        assert b.run(run_id).epoch == frozen_epoch + 1

        # the step a started ends while a is still frozen; then a wakes up
        (b.work / "once.go").touch()
        wait_until(lambda: lines(b.work / "once-done.log") == ["done"], what="the step ends")
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)

    wait_until(
        lambda: any(
            f"run {run_id}" in line and "this node stops driving it" in line for line in a.log
        ),
        what="a saying it lost the run",
    )
    assert snapshot(b, run_id) == decided  # a's late result changed nothing
    assert lines(b.work / "fragile-after.log") == []
    assert lines(b.work / "cleanup.log") == ["cleanup"]

    # a goes on serving: a new run through it is its own and ends normally
    assert a.request("GET", "/healthz")[0] == 200
    fresh = a.start_run("quick", tag="fresh")
    assert a.wait_run(fresh).status == "succeeded"
    assert lines(a.work / "quick.log") == ["fresh"]
    assert not b.open_rows()


# --- 3. a 1-second cron across replicas restarted in turn -------------------------------

TICKER = """
    name: ticker
    triggers:
      - schedule: {cron: "* * * * * *"}
    steps:
      - id: tick
        action: shell
        idempotent: true
        with: {script: 'echo tick >> "$WORK_DIR/ticks.log"'}
"""


def fire_times(server: Server) -> list[datetime]:
    return [datetime.fromisoformat(r.source["fire_time"]) for r in server.runs_of("ticker")]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_one_second_cron_fires_once_per_tick_across_restarted_replicas(
    replica: Replicas,
) -> None:
    a = replica({"ticker": TICKER}, **SHORT_LEASE)
    b = replica({"ticker": TICKER}, **SHORT_LEASE)
    a.start()
    b.start()

    def more_fires(count: int) -> None:
        start = len(fire_times(a))
        wait_until(lambda: len(fire_times(a)) >= start + count, what=f"{count} more fires")

    # Each round: a few fires with both replicas up, then one is killed; the other must
    # fire alone (not wait for the dead one's restart), then the dead one comes back. The
    # replica started again in one round is the survivor of the next: a fresh process
    # tends to lose its first fire to the other, the case where it used to stop firing.
    for victim in (a, b, a):
        more_fires(5)
        victim.kill()
        more_fires(3)
        victim.start()
    more_fires(3)
    fired = {r.id for r in a.runs_of("ticker")}  # each ends, driven by one replica or another
    wait_until(lambda: all(a.run(r).status in TERMINAL for r in fired), what="the runs ending")
    assert a.terminate() == 0
    assert b.terminate() == 0

    runs = a.runs_of("ticker")
    fires = sorted(fire_times(a))
    assert len(set(fires)) == len(fires), f"a tick fired twice: {fires}"
    gaps = [
        (x.isoformat(), y.isoformat())
        for x, y in itertools.pairwise(fires)
        if y - x != timedelta(seconds=1)
    ]
    with a.db.connect() as conn:
        (schedule,) = conn.execute(sa.select(t.schedules)).all()
    # a replica was up all along: no tick was missed, so none may be missing
    assert not gaps, f"ticks missing between {gaps} (counted missed: {schedule.missed})"
    assert schedule.missed == 0
    assert all(r.trigger == "schedule" for r in runs)
    assert {r.status for r in runs if r.id in fired} == {"succeeded"}
    # a run fired while both stopped is left to the next `baton serve`, released
    late = [(r.id, r.status, r.owner) for r in runs if r.status != "succeeded"]
    assert all(owner is None and status == "running" for _, status, owner in late), late


# --- 4. PostgreSQL restarted under a running step --------------------------------------


class OwnPostgres:
    """A PostgreSQL cluster of the test's own, in a temporary folder, on a free port
    (never the shared server's). Run as the ``postgres`` user when the test runs as
    root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        assert bins, "no PostgreSQL binaries under /usr/lib/postgresql"
        self.bin = Path(bins[-1])
        self.base = Path(tempfile.mkdtemp(prefix="baton-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.port = 0
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _pg(self, tool: str, *args: str) -> None:
        out = subprocess.run(
            [*self.as_user, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, f"{tool} {args}: {out.stdout}{out.stderr}"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.base / "log"),
            "-o",
            options,
        )

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.data))

    def close(self) -> None:
        with contextlib.suppress(AssertionError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    pg.start()
    yield pg
    pg.close()


OUTAGE = f"""
    name: outage
    {DIR}
    steps:
      - id: work
        action: shell
        with: {{script: '{wait_for_file("work", 'echo done >> "$PARAM_DIR/work.log"')}'}}
      - id: after
        action: shell
        needs: [work]
        with: {{script: 'echo after >> "$PARAM_DIR/after.log"'}}
"""


@pytest.mark.postgres
def test_a_run_survives_a_postgresql_restart(tmp_path: Path, own_postgres: OwnPostgres) -> None:
    server = Server(tmp_path, own_postgres.url, {"outage": OUTAGE}, env=SHORT_LEASE)
    try:
        server.start()
        run_id = server.start_run("outage")
        server.wait_running(run_id, "work", "work.pid")

        own_postgres.stop("fast")
        wait_until(lambda: server.request("GET", "/healthz")[0] == 503, what="/healthz 503")
        (server.work / "work.go").touch()  # the step ends while its result cannot be stored
        wait_until(lambda: lines(server.work / "work.log") == ["done"], what="the step ends")
        wait_until(
            lambda: any("cannot write to the database" in line for line in server.log),
            what="the driver saying it cannot write",
        )
        assert server.request("GET", "/healthz")[0] == 503

        own_postgres.start()
        server.db.dispose()  # the test's own pooled connections died with the server
        wait_until(lambda: server.request("GET", "/healthz")[0] == 200, what="/healthz 200")
        row = server.wait_run(run_id)
        assert row.status == "succeeded", (row.status, row.error)
        assert [x.status for x in server.attempts(run_id, "work")] == ["succeeded"]
        assert lines(server.work / "work.log") == ["done"]
        assert lines(server.work / "after.log") == ["after"]
        assert not server.open_rows()
        assert server.terminate() == 0
    finally:
        server.close()


@pytest.mark.postgres
def test_a_cron_fires_on_after_a_postgresql_outage(
    tmp_path: Path, own_postgres: OwnPostgres
) -> None:
    env = {**SHORT_LEASE, "BATON_SCHEDULE_POLL": "1"}
    server = Server(tmp_path, own_postgres.url, {"ticker": TICKER}, env=env)
    try:
        server.start()
        wait_until(lambda: len(fire_times(server)) >= 2, what="two fires")

        own_postgres.stop("fast")
        wait_until(lambda: server.request("GET", "/healthz")[0] == 503, what="/healthz 503")
        # the database stays down across a fire and two looks at the schedules table after
        # it (one a second): over a tick is lost (the frames of their tracebacks, logged)
        wait_until(partial(logged, server, ", in fire"), what="a fire failing")
        looks = logged(server, ", in refresh", 0)
        wait_until(
            partial(logged, server, ", in refresh", looks + 2), what="two looks failing after it"
        )
        own_postgres.start()
        server.db.dispose()
        wait_until(lambda: server.request("GET", "/healthz")[0] == 200, what="/healthz 200")
        back = len(fire_times(server))
        wait_until(lambda: len(fire_times(server)) >= back + 3, what="fires after the outage")
        assert server.terminate() == 0

        fires = sorted(fire_times(server))
        assert len(set(fires)) == len(fires), f"a tick fired twice: {fires}"
        skipped = sum(int((y - x).total_seconds()) - 1 for x, y in itertools.pairwise(fires))
        with server.db.connect() as conn:
            (schedule,) = conn.execute(sa.select(t.schedules)).all()
        # the ticks the outage cost are counted as missed, none silently dropped
        assert skipped > 0, fires
        assert schedule.missed == skipped, (schedule.missed, [f.isoformat() for f in fires])
    finally:
        server.close()
