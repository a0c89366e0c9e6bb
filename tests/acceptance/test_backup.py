"""``baton db backup`` of a live SQLite database: taken while a real ``baton serve`` is in
the middle of a burst of runs, the copy passes ``PRAGMA integrity_check``, holds every run
created before it began, and every run in it is whole (a run's row and its steps commit
together, so a torn copy would show a run without its steps)."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.serve import BATON, Server, wait_until

STEPS = 6
BURST = """
name: burst
params: {dir: {type: string, required: true}}
steps:
  - {id: s1, action: log, with: {message: one}}
  - {id: s2, action: shell, needs: s1, with: {argv: ["true"]}}
  - {id: s3, action: log, needs: s2, with: {message: three}}
  - {id: s4, action: shell, needs: s3, with: {argv: ["true"]}}
  - {id: s5, action: log, needs: s4, with: {message: five}}
  - {id: s6, action: log, needs: s5, with: {message: six}}
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", {"burst": BURST})
    server.start()
    yield server
    server.close()


def test_a_backup_during_a_burst_of_runs_is_whole(server: Server, tmp_path: Path) -> None:
    first = [server.start_run("burst") for _ in range(20)]
    more: list[str] = []
    stop = threading.Event()

    def keep_starting() -> None:  # runs keep coming while the backup copies
        while not stop.is_set() and len(more) < 200:
            more.append(server.start_run("burst"))

    starter = threading.Thread(target=keep_starting)
    starter.start()
    try:
        wait_until(lambda: len(more) >= 5, what="runs started during the burst")
        copy = tmp_path / "backup.db"
        out = subprocess.run(
            [BATON, "db", "backup", str(copy)],
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stop.set()
        starter.join()
    assert out.returncode == 0, out.stderr
    assert server.running

    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        runs = dict(conn.execute("SELECT id, status FROM runs").fetchall())
        steps = dict(conn.execute("SELECT run_id, count(*) FROM steps GROUP BY run_id").fetchall())
    conn.close()
    assert set(first) <= set(runs)
    assert {run: steps.get(run) for run in runs} == dict.fromkeys(runs, STEPS)
    assert f"({len(runs)} runs) to {copy}" in out.stdout
    # the server went on: every run started, before or during the backup, finishes
    started = first + more
    wait_until(
        lambda: all(server.run(r).status == "succeeded" for r in started),
        what="every run of the burst succeeded",
    )
