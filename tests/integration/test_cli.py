"""The `baton` command as a user runs it: whole processes, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

BATON = str(Path(sys.executable).parent / "baton")

GOOD = """
name: greet
description: Greet someone.
params:
  who: {type: string, default: world, help: who to greet}
  fail: {type: bool, default: false}
steps:
  - id: hello
    action: shell
    with: {argv: [echo, "hello {{ params.who }}"]}
  - id: left
    action: log
    needs: [hello]
    with: {message: left}
  - id: right
    action: log
    needs: [hello]
    with: {message: right}
  - id: maybe-fail
    action: shell
    needs: [left, right]
    when: params.fail
    with: {script: "echo 'disk full on /var' >&2; exit 3"}
"""

BAD = """
name: broken
steps:
  - id: a
    action: shel
  - id: b
    action: log
    needs: [zz]
    with: {message: "{{ params.nope }}"}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "greet.yaml").write_text(textwrap.dedent(GOOD))
    return {
        **os.environ,
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "USER": "carol",
    }


def baton(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATON, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_command(env: dict[str, str]) -> None:
    out = baton(env, "--help")
    assert out.returncode == 0
    for command in ("serve", "run", "validate", "playbooks", "runs"):
        assert command in out.stdout
    for command in ("serve", "run", "validate", "playbooks", "runs"):
        sub = baton(env, command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "usage: baton " + command in sub.stdout


def test_run_succeeds_with_live_progress_and_is_listed(env: dict[str, str]) -> None:
    out = baton(env, "run", "greet", "who=ops team")
    assert out.returncode == 0, out.stderr
    assert "✓ hello" in out.stdout
    assert "maybe-fail skipped" in out.stdout
    assert "succeeded" in out.stdout
    runs = baton(env, "runs")
    assert "greet" in runs.stdout and "succeeded" in runs.stdout and "carol" in runs.stdout


def test_runs_pages_with_the_cursor_its_last_line_names(env: dict[str, str]) -> None:
    for who in ("one", "two", "three"):
        assert baton(env, "run", "greet", f"who={who}").returncode == 0
    first = baton(env, "runs", "--limit=2", "--status=succeeded")
    *table, more = first.stdout.splitlines()
    assert len(table) == 3 and more.startswith("older runs: baton runs ")
    command = more.removeprefix("older runs: baton ").split()
    assert command[:3] == ["runs", "--limit=2", "--status=succeeded"]

    second = baton(env, *command)

    assert second.returncode == 0, second.stderr
    lines = second.stdout.splitlines()
    assert len(lines) == 2 and "older runs" not in second.stdout  # header + the oldest run
    shown = {line.split()[0] for line in [*table[1:], *lines[1:]]}
    assert len(shown) == 3
    bad = baton(env, "runs", "--cursor=nonsense")
    assert bad.returncode == 2
    assert "leave it out to start again from the newest" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_failed_run_prints_error_and_output_tail_and_exits_1(env: dict[str, str]) -> None:
    out = baton(env, "run", "greet", "fail=true")
    assert out.returncode == 1
    assert "step maybe-fail failed: exit status 3" in out.stdout
    assert "disk full on /var" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "gret"], "Did you mean 'greet'"),
        (["run", "greet", "fail=maybe"], "fail"),
        (["run", "greet", "whom=x"], "who"),
        (["run", "greet", "noequals"], "key=value"),
    ],
    ids=["unknown-playbook", "bad-bool", "unknown-param", "not-an-assignment"],
)
def test_user_mistakes_get_a_message_not_a_traceback(
    env: dict[str, str], args: list[str], needle: str
) -> None:
    out = baton(env, *args)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert "no runs yet" in baton(env, "runs").stdout


def test_dry_run_prints_the_plan_and_runs_nothing(env: dict[str, str]) -> None:
    out = baton(env, "run", "greet", "who=x", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "1. hello" in out.stdout
    assert "2. left | right  (in parallel)" in out.stdout
    assert "who=x" in out.stdout
    assert "no runs yet" in baton(env, "runs").stdout


FANOUT = """
name: fanout
params:
  hosts: {type: list, required: true}
  out: {type: string, required: true}
steps:
  - id: note
    action: shell
    with: {script: 'printf "%s" "$PARAM_HOSTS" > "$PARAM_OUT"'}
"""


def test_run_takes_a_list_param_as_commas(env: dict[str, str], tmp_path: Path) -> None:
    (Path(env["BATON_PLAYBOOKS"]) / "fanout.yaml").write_text(FANOUT)
    out = tmp_path / "hosts.json"
    done = baton(env, "run", "fanout", "hosts=web-1, web-2", f"out={out}")
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == ["web-1", "web-2"]
    assert "hosts=web-1,web-2" in done.stdout
    plan = baton(env, "run", "fanout", 'hosts=["a,b"]', f"out={out}", "--dry-run")
    assert plan.returncode == 0 and 'hosts=["a,b"]' in plan.stdout
    bad = baton(env, "run", "fanout", "hosts=a,,b", f"out={out}")
    assert bad.returncode == 2
    assert "hosts: item 2 is empty" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_reports_every_problem_with_file_and_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert baton(env, "validate").returncode == 0
    bad = tmp_path / "broken.yaml"
    bad.write_text(textwrap.dedent(BAD))
    out = baton(env, "validate", str(bad))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert any(f"{bad}:5" in ln and "shel" in ln for ln in lines), out.stdout
    assert any("zz" in ln for ln in lines), out.stdout
    assert any("nope" in ln for ln in lines), out.stdout


BOMB = "name: bomb\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10)
)  # a billion values in 600 bytes


def test_validate_refuses_hostile_files_and_checks_the_rest(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = Path(env["BATON_PLAYBOOKS"])
    (folder / "bomb.yaml").write_text(BOMB + "steps: [{id: a, action: log}]\n")
    (folder / "twice.yaml").write_text("name: twice\nsteps: []\nsteps: [{id: a, action: log}]\n")
    (folder / "huge.yaml").write_text("#" * (2 * 1024 * 1024))
    (folder / "zero.yaml").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.yaml")
    out = baton(env, "validate")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    for needle in (
        f"{folder / 'bomb.yaml'}:6: YAML aliases expand too far",
        f"{folder / 'twice.yaml'}:3: duplicate key 'steps' (first on line 2)",
        f"{folder / 'huge.yaml'}: file too large (2,097,152 bytes",
        f"{folder / 'zero.yaml'}: not a regular file: it is a symlink to /dev/zero",
        f"{folder / 'pipe.yaml'}: not a regular file: it is a FIFO",
    ):
        assert any(ln.startswith(needle) for ln in lines), (needle, out.stdout)
    assert "greet" not in out.stdout  # the good playbook has no problem
    assert "Traceback" not in out.stdout + out.stderr


def test_playbooks_lists_names_and_descriptions(env: dict[str, str]) -> None:
    out = baton(env, "playbooks")
    assert out.returncode == 0
    assert "greet" in out.stdout and "Greet someone." in out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_health_and_stops_cleanly_on_sigterm(env: dict[str, str]) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [BATON, "serve"],
        env={**env, "BATON_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the "serving" log line, not for a clock
            if "serving on" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.load(resp) == {"status": "ok", "active_runs": 0, "playbooks": 1}
        folder = Path(env["BATON_PLAYBOOKS"])
        (folder / "second.yaml").write_text(textwrap.dedent(GOOD).replace("greet", "second"))
        (folder / "greet.yaml").write_text("name: greet\nsteps: [oops\n")  # a broken edit
        proc.send_signal(signal.SIGHUP)
        for line in proc.stdout:
            if "playbooks reloaded" in line:
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.load(resp)["playbooks"] == 2  # second added, greet kept as it was
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_starts_and_reloads_past_hostile_files(env: dict[str, str]) -> None:
    folder = Path(env["BATON_PLAYBOOKS"])
    os.mkfifo(folder / "pipe.yaml")  # a plain open() would wait for a writer forever
    (folder / "bomb.yaml").write_text(BOMB + "steps: [{id: a, action: log}]\n")
    port = _free_port()
    proc = subprocess.Popen(
        [BATON, "serve"],
        env={**env, "BATON_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "serving on" in line:
                break
        assert any("bomb.yaml:6: YAML aliases expand too far" in ln for ln in seen), seen
        assert any("pipe.yaml: not a regular file" in ln for ln in seen), seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.load(resp)["playbooks"] == 1
        (folder / "greet.yaml").write_text(BOMB.replace("bomb", "greet"))  # a hostile edit
        (folder / "second.yaml").write_text(textwrap.dedent(GOOD).replace("greet", "second"))
        proc.send_signal(signal.SIGHUP)
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "playbooks reloaded" in line:
                break
        assert any("greet.yaml:6: YAML aliases expand too far" in ln for ln in seen), seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert json.load(resp)["playbooks"] == 2  # greet kept as it was, second added
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_schedule_list_and_unschedule(env: dict[str, str]) -> None:
    made = baton(env, "schedule", "greet", "0 9 * * 1-5", "who=team", "--timezone", "Europe/Paris")
    assert made.returncode == 0, made.stderr
    assert "scheduled greet as " in made.stdout
    sid = made.stdout.split(" as ")[1].split(":")[0]
    later = baton(env, "schedule", "greet", "in", "30m")
    assert later.returncode == 0, later.stderr
    listed = baton(env, "schedules")
    assert sid in listed.stdout and "0 9 * * 1-5" in listed.stdout
    assert "Europe/Paris" in listed.stdout and "carol" in listed.stdout
    assert baton(env, "unschedule", sid).returncode == 0
    assert sid not in baton(env, "schedules").stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["schedule", "greet", "0 2 * *"], "fields"),
        (["schedule", "greet", "in", "soon"], "duration"),
        (["schedule", "greet", "at", "25:00"], "time of day"),
        (["schedule", "gret", "0 2 * * *"], "Did you mean 'greet'"),
        (["schedule", "greet", "0 2 * * *", "whom=x"], "who"),
        (["unschedule", "nope"], "nope"),
        (["schedule", "greet", "in"], "say when"),
        (["runs", "--limit", "0"], "1 to 1000"),
    ],
    ids=[
        "cron-fields",
        "bad-duration",
        "bad-time",
        "unknown-playbook",
        "bad-param",
        "unknown",
        "no-when",
        "bad-limit",
    ],
)
def test_schedule_mistakes_get_a_message(env: dict[str, str], args: list[str], needle: str) -> None:
    out = baton(env, *args)
    assert out.returncode == 2
    assert needle in out.stderr
    assert "Traceback" not in out.stderr


def test_run_shows_the_progress_of_child_runs(env: dict[str, str]) -> None:
    folder = Path(env["BATON_PLAYBOOKS"])
    (folder / "child.yaml").write_text(
        "name: child\nsteps:\n  - {id: inner, action: log, with: {message: inside the child}}\n"
    )
    (folder / "parent.yaml").write_text(
        "name: parent\nsteps:\n  - {id: call, action: playbook, with: {name: child}}\n"
    )
    out = baton(env, "run", "parent")
    assert out.returncode == 0, out.stderr
    assert "child by carol" in out.stdout
    assert "inside the child" in out.stdout
    assert out.stdout.index("inside the child") < out.stdout.index("✓ call")


def test_serve_on_a_port_in_use_says_so(env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [BATON, "serve"],
            env={**env, "BATON_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        (
            {"BATON_API_READ_TOKEN": "required"},
            "baton: BATON_API_READ_TOKEN=required but BATON_API_TOKEN is not set",
        ),
        (
            {"BATON_API_READ_TOKEN": "closed"},
            "baton: bad setting BATON_API_READ_TOKEN='closed': give 'required'",
        ),
        (
            {"BATON_STEP_ENV": "PATH HOME"},
            "baton: bad setting BATON_STEP_ENV='PATH HOME': 'PATH HOME' is not a variable name",
        ),
    ],
    ids=["read-token-without-token", "read-token-value", "step-env"],
)
def test_serve_refuses_security_settings_it_cannot_honour(
    env: dict[str, str], settings: dict[str, str], needle: str
) -> None:
    env = {k: v for k, v in env.items() if k != "BATON_API_TOKEN"}
    out = subprocess.run(
        [BATON, "serve"],
        env={**env, **settings, "BATON_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith(needle), out.stderr
    assert "Traceback" not in out.stderr


def test_access_rules_hold_for_the_command_line_and_the_console(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text(
        "console_as: [carol]\n"  # the login user here may act as alice and bob
        "access:\n  rules:\n    - playbooks: greet\n      users: [alice]\n"
        "      channels: [console]\n"
    )
    env = {**env, "BATON_CONFIG": str(config)}
    refused = baton(env, "run", "greet", "--as", "bob")
    assert refused.returncode == 2  # a user's mistake, as for an unknown playbook
    assert "`greet` can be run by alice, from the console" in refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    # alice is allowed, but only from the console: the CLI is another place
    assert baton(env, "run", "greet", "--as", "alice").returncode == 2
    chat = subprocess.run(
        [BATON, "console", "--as", "alice"],
        input="run greet\nhelp\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "started greet" in chat.stdout, chat.stdout + chat.stderr
    other = subprocess.run(
        [BATON, "console", "--as", "bob"],
        input="help\nrun greet\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "you may run no playbook here" in other.stdout
    assert "can be run by alice" in other.stdout
    broken = tmp_path / "broken.yaml"
    broken.write_text("access:\n  rules:\n    - playbooks: greet\n      actions: [launch]\n")
    bad = baton({**env, "BATON_CONFIG": str(broken)}, "run", "greet")
    assert bad.returncode != 0 and "broken.yaml:4" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_as_is_allowed_only_where_console_as_says(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "LOGNAME": "carol"}  # getpass reads LOGNAME before USER
    open_run = baton(env, "run", "greet", "--as", "alice")  # no BATON_CONFIG: as before
    assert open_run.returncode == 0, open_run.stderr
    config = tmp_path / "baton.yaml"
    config.write_text("access:\n  rules:\n    - playbooks: '*'\n")
    env = {**env, "BATON_CONFIG": str(config)}
    refusal = (
        f"baton: --as alice is refused: carol may not act as someone else. BATON_CONFIG "
        f"({config}) allows --as only for the users and groups in `console_as:` (now nobody: "
        "the key is not there); add carol or one of their groups there, or leave --as out\n"
    )
    for args in (
        ["run", "greet", "--as", "alice"],
        ["console", "--as", "alice"],
        ["schedule", "greet", "in", "30m", "--as", "alice"],
        ["unschedule", "nope", "--as", "alice"],
    ):
        out = subprocess.run(
            [BATON, *args],
            input="run greet\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (out.returncode, out.stderr) == (2, refusal), args
    assert baton(env, "schedules").stdout == "no schedules\n"
    assert baton(env, "run", "greet", "--as", "carol").returncode == 0  # oneself: fine
    assert baton(env, "run", "greet").returncode == 0

    config.write_text(
        "console_as: [admins]\nusers:\n  carol: {groups: [admins]}\n"
        "access:\n  rules:\n    - playbooks: '*'\n"
    )
    allowed = baton(env, "run", "greet", "--as", "alice")
    assert allowed.returncode == 0, allowed.stderr
    runs = baton(env, "runs").stdout.splitlines()[1:]
    assert sorted(line.split()[3] for line in runs) == ["alice", "alice", "carol", "carol"]


def test_serve_takes_peoples_tokens_without_a_service_token(
    env: dict[str, str], tmp_path: Path
) -> None:
    import hashlib

    digest = hashlib.sha256(b"alice-token").hexdigest()
    config = tmp_path / "baton.yaml"
    config.write_text(f"users:\n  alice: {{token_sha256: {digest}}}\n")
    env = {k: v for k, v in env.items() if k != "BATON_API_TOKEN"}
    port = _free_port()
    proc = subprocess.Popen(
        [BATON, "serve"],
        env={
            **env,
            "BATON_PORT": str(port),
            "BATON_CONFIG": str(config),
            "BATON_API_READ_TOKEN": "required",
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def call(path: str, token: str | None, body: bytes | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code

    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # wait for the "serving" log line, not for a clock
            seen.append(line)
            if "serving on" in line:
                break
        assert "serving on" in seen[-1], "".join(seen)
        assert call("/api/runs", None) == 401
        assert call("/api/runs", "alice-token") == 200
        started = call("/api/runs", "alice-token", b'{"playbook": "greet", "dry_run": true}')
        assert started == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_bad_person_stops_every_command_with_the_line_and_the_fix(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "baton.yaml"
    config.write_text("users:\n  alice:\n    token_sha256: s3cret\n    role: boss\n")
    out = baton({**env, "BATON_CONFIG": str(config)}, "run", "greet")
    assert out.returncode == 2
    assert f"{config}:3: users.alice.token_sha256: not a SHA-256 hash" in out.stderr
    assert 'printf %s "$TOKEN" | sha256sum' in out.stderr
    assert f"{config}:4: users.alice.role: unknown role 'boss'" in out.stderr
    assert "Traceback" not in out.stderr


PROBE = """
import subprocess, sys
if sys.argv[1] == "hide":
    from bot.hardening import hide_environment
    assert hide_environment()
step = 'tr "\\\\0" "\\\\n" < /proc/$PPID/environ | grep ^BATON_API_TOKEN= || echo unreadable'
print(subprocess.run(["/bin/sh", "-c", step], capture_output=True, text=True).stdout.strip())
"""


@pytest.mark.parametrize("mode", ["show", "hide"])
def test_a_step_cannot_read_batons_environment_from_proc(mode: str) -> None:
    """Steps run as Baton's user. A hidden (non-dumpable) Baton keeps its
    /proc/PID/environ, its credentials, from them; without it a step reads them."""
    as_user: list[str] = []
    if os.geteuid() == 0:  # root reads any /proc/PID/environ: probe as an ordinary user
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    out = subprocess.run(
        [*as_user, sys.executable, "-c", PROBE, mode],
        env={"PATH": os.environ["PATH"], "BATON_API_TOKEN": "tok-in-baton"},
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    expected = "unreadable" if mode == "hide" else "BATON_API_TOKEN=tok-in-baton"
    assert out.stdout.strip() == expected, out.stderr


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
    with: {argv: [sh, -c, "exit 4"]}
"""


def test_serve_logs_one_json_object_a_line_and_no_library_chatter(tmp_path: Path) -> None:
    """BATON_LOG_FORMAT=json: every line of `baton serve` is a JSON object; a schedule
    firing every second and its timers make APScheduler busy, yet it writes nothing."""
    from tests.acceptance.serve import Server, wait_until

    server = Server(
        tmp_path,
        f"sqlite:///{tmp_path / 'baton.db'}",
        {"tick": TICK, "fails": FAILS},
        env={"BATON_LOG_FORMAT": "json", "BATON_SCHEDULE_POLL": "0.1"},
    )
    try:
        server.start()
        run_id = server.start_run("fails")
        server.wait_run(run_id)
        wait_until(lambda: len(server.runs_of("tick")) >= 2, what="two fires of the schedule")
        assert server.terminate() == 0
    finally:
        server.close()
    lines = [json.loads(line) for line in server.log if not line.startswith("--- ")]
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert not [line for line in lines if not line["logger"].startswith(("baton", "engine"))]
    about = [line for line in lines if line.get("run_id") == run_id]
    assert len(about) == 2, about
    assert about[0]["message"] == f"run {run_id} of fails started: trigger api, by api"
    assert re.fullmatch(
        rf"run {run_id} of fails failed after \S+: step boom failed: exit status 4",
        about[1]["message"],
    )
    assert about[0]["playbook"] == "fails" and about[1]["level"] == "WARNING"
    fired = [line for line in lines if " fired (due " in line["message"]]
    assert fired and all(line["playbook"] == "tick" and line["run_id"] for line in fired)


QUORUM = """\
name: quorum
steps:
  - id: gate
    action: approval
    with: {approvers: {groups: [sre]}, min_approvals: 3}
  - id: pause
    action: wait
    needs: gate
    with: {for: 10 minutes}
"""


def test_validate_counts_config_groups_for_a_quorum(env: dict[str, str], tmp_path: Path) -> None:
    """`baton validate` reads BATON_CONFIG's groups: two members cannot give three
    approvals; with a third member the playbook (and its `10 minutes`) is valid."""
    path = tmp_path / "quorum.yaml"
    path.write_text(QUORUM)
    config = tmp_path / "baton.yaml"
    config.write_text("groups:\n  sre: [alice, bob]\n")
    out = baton({**env, "BATON_CONFIG": str(config)}, "validate", str(path))
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"{path}:5: step 'gate': min_approvals is 3 but the gate lists only 2 approvers "
        "(alice, bob): list more approvers or lower min_approvals"
    ]
    config.write_text("groups:\n  sre: [alice, bob, carol]\n")
    out = baton({**env, "BATON_CONFIG": str(config)}, "validate", str(path))
    assert (out.returncode, out.stdout) == (0, "1 playbook(s) valid\n"), out


def test_a_broken_playbook_is_one_warning_per_command_not_its_whole_list(
    env: dict[str, str],
) -> None:
    folder = Path(env["BATON_PLAYBOOKS"])
    broken = folder / "broken.yaml"
    broken.write_text("name: broken\nstepz: []\nretyr: 3\nsteps:\n  - {id: a, action: nope}\n")
    out = baton(env, "run", "greet")  # another playbook, which runs
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "WARNING" in line]
    assert len(warned) == 1, out.stderr
    assert f"playbook file not loaded: {broken}:" in warned[0]
    assert f"more: `baton validate {broken}` lists them)" in warned[0]


def test_without_config_a_gate_only_a_group_may_approve_is_refused_everywhere(
    env: dict[str, str],
) -> None:
    """Without BATON_CONFIG there are no Baton groups: `baton validate` refuses the gate
    at its line, and a run (which loads the playbooks as `baton serve` does) says the
    playbook is invalid instead of opening a gate that would wait its whole timeout."""
    assert "BATON_CONFIG" not in env
    path = Path(env["BATON_PLAYBOOKS"]) / "gated.yaml"
    path.write_text(
        "name: gated\nsteps:\n  - id: gate\n    action: approval\n"
        "    with: {approvers: {groups: [leads]}, timeout: 1h}\n"
    )
    out = baton(env, "validate", str(path))
    assert out.returncode == 1
    assert out.stdout.startswith(f"{path}:5: step 'gate': approvers group 'leads' is not a Baton")
    assert out.stdout.rstrip().endswith("the gate names nobody else: nobody could ever approve it")
    out = baton(env, "run", "gated")
    assert out.returncode == 2
    assert "Playbook 'gated' is invalid, so it cannot run" in out.stderr
    assert "nobody could ever approve it" in out.stderr
