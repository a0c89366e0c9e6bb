"""`baton console` driven through standard input, as a script would: whole processes."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.acceptance.serve import Server, wait_until

BATON = str(Path(sys.executable).parent / "baton")

GREET = """
name: greet
description: Greet someone.
params:
  who: {type: string, default: world}
steps:
  - id: hello
    action: shell
    with: {argv: [echo, "hello {{ params.who }}"]}
"""

GATE = """
name: gate
steps:
  - id: ask
    action: approval
    with: {message: "Ship it?"}
  - id: after
    action: log
    needs: ask
    with: {message: shipped}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "greet.yaml").write_text(textwrap.dedent(GREET))
    (folder / "gate.yaml").write_text(textwrap.dedent(GATE))
    return {
        **os.environ,
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "USER": "carol",
    }


def console(env: dict[str, str], text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATON, "console", *args],
        env=env,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def runs(tmp_path: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(tmp_path / "baton.db") as db:
        rows = db.execute("SELECT playbook, status, trigger, requested_by FROM runs").fetchall()
    return [tuple(r) for r in rows]


def test_console_runs_a_playbook_with_live_progress(env: dict[str, str], tmp_path: Path) -> None:
    out = console(env, 'run greet who="ops team"\nstatus\nrnu\n')
    assert out.returncode == 0, out.stderr
    assert "baton> " not in out.stdout  # no prompt when stdin is not a terminal
    assert re.search(r"started greet as run \w+", out.stdout)
    assert "active runs of carol:" in out.stdout or "recent:" in out.stdout
    assert "✓ hello" in out.stdout
    assert re.search(r"run \w+: succeeded", out.stdout)
    assert "Did you mean `run`?" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert runs(tmp_path) == [("greet", "succeeded", "console", "carol")]


def test_approval_across_two_consoles(env: dict[str, str], tmp_path: Path) -> None:
    """A console drives only the runs it starts: bob's approval of alice's run is
    recorded, and the run goes on once a server adopts it (the console says so)."""
    first = console(env, "run gate\n", "--as", "alice")
    assert first.returncode == 0, first.stderr
    found = re.search(r"answer with `approve (\w+) \[comment\]`", first.stdout)
    assert found, first.stdout
    gate = found.group(1)
    assert "1 run is still active; `baton serve` will carry them on" in first.stderr
    assert runs(tmp_path) == [("gate", "waiting", "console", "alice")]
    own = console(env, f"approve {gate}\n", "--as", "alice")
    assert "cannot approve" in own.stdout
    second = console(env, f"approve {gate} ship it\nquit\nstatus\n", "--as", "bob")
    assert second.returncode == 0, second.stderr
    assert f"bob approved {gate}" in second.stdout
    assert "no live driver" in second.stdout and "`baton serve`" in second.stdout
    assert "active runs" not in second.stdout  # nothing is read after `quit`
    assert runs(tmp_path) == [("gate", "waiting", "console", "alice")]

    server = Server(tmp_path, env["BATON_DATABASE_URL"], {"gate": GATE})
    try:
        server.start()
        wait_until(
            lambda: runs(tmp_path) == [("gate", "succeeded", "console", "alice")],
            what="the server carries the approved run on",
        )
    finally:
        server.close()


def test_console_help(env: dict[str, str]) -> None:
    out = subprocess.run(
        [BATON, "console", "--help"], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert "usage: baton console" in out.stdout and "--as" in out.stdout


TICK = """
name: tick
triggers:
  - schedule: {cron: "* * * * * *"}
steps:
  - id: say
    action: log
    with: {message: tick}
"""

FAILS = """
name: fails
params:
  dir: {type: string}
steps:
  - id: boom
    action: shell
    with: {argv: [sh, -c, "echo 'no space left' >&2; exit 4"]}
"""


class Session:
    """A `baton console` whose input stays open: type a line, wait for what it prints."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [BATON, "console"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line.rstrip("\n"))

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def shown(self, pattern: str) -> list[str]:
        return [line for line in list(self.out) if re.search(pattern, line)]

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return rc


def test_console_announces_runs_started_elsewhere_and_failures(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A schedule fires in `baton serve`, a run fails there: another process's console
    tells of both, one line each; `quiet` toggles it."""
    server = Server(tmp_path, env["BATON_DATABASE_URL"], {"tick": TICK, "fails": FAILS})
    server.start()
    session = Session({**env, "BATON_PLAYBOOKS": str(server.playbooks)})
    try:
        session.type("history")  # the console is up once it answers
        wait_until(lambda: session.shown(r"run|no runs"), what="the console's answer")
        fired = wait_until(
            lambda: session.shown(r"^» run \w+: tick started by a schedule \(playbook:tick\)$"),
            what="a schedule's run announced",
        )
        run_id = server.start_run("fails")
        wait_until(
            lambda: session.shown(
                rf"^✗ run {run_id}: fails failed: step boom failed: exit status 4"
            ),
            what="the failure announced",
        )
        session.type("quiet")
        wait_until(lambda: session.shown("^quiet: "), what="quiet's answer")
        session.type("quiet")
        wait_until(lambda: session.shown("^announcing runs"), what="the news back on")
        session.type("help")
        wait_until(lambda: session.shown("`quiet`"), what="help naming `quiet`")
    finally:
        rc = session.close()
        server.close()
    assert rc == 0, session.out
    assert len(set(fired)) == len(fired), "each run told once"
    assert "Traceback" not in "\n".join(session.out)
