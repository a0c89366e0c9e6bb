"""Start-up and the console with what they may meet: an empty credential, a key file
that cannot be written, stored text the terminal cannot show. Whole processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.serve import Server

BATON = str(Path(sys.executable).parent / "baton")

GREET = """
name: greet
params:
  who: {type: string, default: world}
steps:
  - id: hello
    action: log
    with: {message: "hello {{ params.who }}"}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "greet.yaml").write_text(textwrap.dedent(GREET))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
    return {
        **inherited,
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "USER": "carol",
    }


def baton(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATON, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_console_shows_stored_text_the_terminal_cannot_encode(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A run whose params hold a lone surrogate (stored before such params were refused,
    or by another writer): `status` shows it escaped instead of crashing."""
    done = baton(env, "run", "greet", "who=x")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "baton.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        # JSON text may spell a lone surrogate as an escape: SQLite keeps it as it is
        db.execute("UPDATE runs SET params = ?", (json.dumps({"who": "a\ud800b"}),))
    out = baton(env, "console", stdin=f"status {run_id}\nhistory\n")
    assert out.returncode == 0, out.stderr
    assert "who=a\\ud800b" in out.stdout
    assert "Traceback" not in out.stderr and "UnicodeEncodeError" not in out.stderr
    assert out.stdout.count(run_id) >= 2, "history answered after status"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
def test_a_key_file_that_cannot_be_written_stops_the_start_with_what_to_do(
    env: dict[str, str],
) -> None:
    """Its folder is made at start; in a place nobody may write (/sys: not even root)
    the start stops with the path and the ways out, no traceback."""
    env["BATON_KEY_FILE"] = "/sys/baton-test/secret.key"
    out = baton(env, "run", "greet")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "baton: cannot create the secret key file /sys/baton-test/secret.key" in out.stderr
    assert "BATON_KEY_FILE" in out.stderr and "BATON_SECRET_KEY" in out.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", {"greet": GREET}, env={})
    yield s
    s.close()


def test_an_empty_api_token_is_warned_about_and_counts_as_unset(server: Server) -> None:
    server.extra_env["BATON_API_TOKEN"] = ""
    server.start()
    warned = [line for line in server.log if "BATON_API_TOKEN is set but empty" in line]
    assert warned and "WARNING" in warned[0]
    status, body = server.request("POST", "/api/runs", {"playbook": "greet"}, token="")
    assert status == 403 and "set BATON_API_TOKEN" in body["error"]
    assert server.terminate() == 0
