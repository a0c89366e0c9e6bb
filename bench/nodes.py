"""One Baton across processes: what leases and the command inbox cost and give.

- decision latency from another node: a gate waits on one engine; another engine (its
  own store, as another process would have) decides, and the figure is the time until
  the owner has applied it (SQLite: the owner reads its inbox every 250 ms; PostgreSQL:
  LISTEN/NOTIFY);
- takeover after ``kill -9``: two real ``baton serve`` replicas, one killed mid-step;
  the time until the other drives the run. On one host a dead owner is seen at once; an
  owner on another host is waited out for the rest of its lease (simulated here by
  moving the run's owner to another host name right after the kill);
- two replicas on PostgreSQL: 100 runs of 10 steps at once, split between them, beside
  one replica.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import figure, heading, new_engine, write_playbooks
from engine.runs.requests import RunRequest
from storage import tables as t
from storage.db import normalize_url
from storage.store import Store

PG = "postgresql://postgres@127.0.0.1:5432/test"
BATON = str(Path(sys.executable).parent / "baton")
TOKEN = "bench-token"
GATES = 20

PLAYBOOKS = {
    "gate": """\
name: gate
steps:
  - id: ask
    action: approval
    with: {message: "bench gate"}
  - id: after
    action: log
    needs: ask
    with: {message: done}
""",
    "long": """\
name: long
steps:
  - id: work
    action: shell
    idempotent: true
    with: {argv: [sleep, "30.0017"]}
""",
    "ten": "name: ten\nsteps:\n"
    + "".join(
        f"  - id: s{i}\n    action: log\n"
        + (f"    needs: s{i - 1}\n" if i else "")
        + "    with: {message: step}\n"
        for i in range(10)
    ),
}


@contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    """A fresh database: a SQLite file, or a PostgreSQL database created and dropped."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'nodes.db'}"
        return
    name = f"bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(normalize_url(PG), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield PG.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


# --- decision latency ---------------------------------------------------------------


async def _decisions(url: str, root: Path) -> list[float]:
    owner_store, other_store = Store(url), Store(url)
    await owner_store.open()
    await other_store.open()
    owner = new_engine(root, owner_store)
    other = new_engine(root, other_store)
    other.kind, other.adopts = "console", False
    await owner.start()
    await other.start()
    try:
        ids = [
            await owner.start_run(RunRequest(playbook="gate", requested_by="bench"))
            for _ in range(GATES)
        ]
        await owner.wait_idle()
        gates = {
            r.run_id: r.id
            for r in await owner_store.all(sa.select(t.approvals.c.run_id, t.approvals.c.id))
        }
        took = []
        for run_id in ids:
            t0 = time.perf_counter()
            result = await other.decide(gates[run_id], "approver", "approve")
            took.append((time.perf_counter() - t0) * 1000)
            assert result.status == "approved" and "no live driver" not in result.message
            assert await owner.wait_for(run_id) == "succeeded"
        return took
    finally:
        await other.stop(drain=0)
        await owner.stop(drain=0)
        await other_store.close()
        await owner_store.close()


# --- real replicas ------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, root: Path, url: str, **env: str) -> None:
        self.port = _port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))},
            "BATON_DATABASE_URL": url,
            "BATON_PLAYBOOKS": str(root / "playbooks"),
            "BATON_PORT": str(self.port),
            "BATON_API_TOKEN": TOKEN,
            "BATON_KEY_FILE": str(root / "key"),
            "BATON_LOG_LEVEL": "WARNING",
            **env,
        }
        self.proc = subprocess.Popen(
            [BATON, "serve"],
            env=self.env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("baton serve did not start")

    def start_run(self, playbook: str) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/runs",
            data=json.dumps({"playbook": playbook}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(json.load(resp)["id"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _owner(db: sa.Engine, run_id: str) -> str | None:
    with db.connect() as conn:
        return conn.execute(sa.select(t.runs.c.owner).where(t.runs.c.id == run_id)).scalar()


def _wait(condition: Any, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not met")
        time.sleep(0.01)


def _elsewhere(db: sa.Engine, run_id: str) -> bool:
    return (_owner(db, run_id) or "").startswith("elsewhere:")


def _takeover(root: Path, url: str, lease: float, elsewhere: bool) -> float:
    """Seconds from ``kill -9`` of the replica driving a run to the other driving it."""
    env = {"BATON_LEASE": str(lease), "BATON_LEASE_RENEW": str(lease / 3)}
    a, b = Replica(root, url, **env), Replica(root, url, **env)
    db = sa.create_engine(normalize_url(url))
    try:
        run_id = a.start_run("long")
        _wait(lambda: _owner(db, run_id) is not None)
        first = _owner(db, run_id)
        a.proc.kill()
        killed = time.perf_counter()
        a.proc.wait()
        if elsewhere:  # as if the dead owner had been on another machine
            with db.begin() as conn:
                conn.execute(
                    t.runs.update()
                    .where(t.runs.c.id == run_id)
                    .values(owner=f"elsewhere:1:{(first or '').rsplit(':', 1)[-1]}")
                )
        _wait(lambda: _owner(db, run_id) not in (None, first) and not _elsewhere(db, run_id))
        return time.perf_counter() - killed
    finally:
        for r in (a, b):
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()
        subprocess.run(["pkill", "-f", "sleep 30.0017"], check=False)
        db.dispose()


def _throughput(root: Path, url: str, replicas: int, runs: int = 100) -> float:
    """Steps per second of ``runs`` runs of 10 steps started at once across replicas."""
    nodes = [Replica(root, url) for _ in range(replicas)]
    db = sa.create_engine(normalize_url(url))
    try:
        t0 = time.perf_counter()
        ids = [nodes[i % replicas].start_run("ten") for i in range(runs)]
        done = (
            sa.select(sa.func.count())
            .select_from(t.runs)
            .where(t.runs.c.id.in_(ids), t.runs.c.status == "succeeded")
        )

        def finished() -> bool:
            with db.connect() as conn:
                return int(conn.execute(done).scalar() or 0) == runs

        _wait(finished, within=300)
        return runs * 10 / (time.perf_counter() - t0)
    finally:
        for n in nodes:
            n.stop()
        db.dispose()


def main() -> None:
    heading("nodes: one Baton across processes (leases, command inbox)")
    for kind in ("sqlite", "postgresql"):
        with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
            root = Path(tmp)
            write_playbooks(root / "playbooks", PLAYBOOKS)
            with database(kind, root) as url:
                took = asyncio.run(_decisions(url, root))
            target = "< 300 ms" if kind == "postgresql" else "< 500 ms"
            figure(f"{kind}: decision from another node, median", statistics.median(took), "ms")
            figure(f"{kind}: decision from another node, max", max(took), "ms", target)
    for kind in ("sqlite", "postgresql"):
        with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
            root = Path(tmp)
            write_playbooks(root / "playbooks", PLAYBOOKS)
            with database(kind, root) as url:
                took = _takeover(root, url, 15.0, elsewhere=False)
            figure(f"{kind}: takeover after kill -9, same host", took, "s", "< 5 s")
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        for lease in (15.0, 6.0):
            with database("postgresql", root) as url:
                took = _takeover(root, url, lease, elsewhere=True)
            figure(f"takeover, owner on another host, lease {lease:.0f} s", took, "s")
        for count in (1, 2):
            with database("postgresql", root) as url:
                rate = _throughput(root, url, count)
            figure(f"postgresql: {count} replica(s), 100 runs x 10 steps", rate, "steps/s")
