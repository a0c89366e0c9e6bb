"""One Baton across processes (issue: leases and a command inbox), with real processes:
``baton serve``, ``baton console`` and ``baton run`` on one database (SQLite file and
PostgreSQL). Each test checks the end state from outside: the API, the rows, and marker
files the steps write. Nothing sleeps a fixed time: every wait polls a condition up to
a deadline.
"""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.serve import BATON, Server, lines, pid_written, wait_until
from tests.fakes.processes import alive

MakeServer = Callable[..., Server]

DIR = "params: {dir: {type: string, required: true}}"

PLAYBOOKS = {
    "gate": f"""
        name: gate
        {DIR}
        steps:
          - id: ask
            action: approval
            with: {{message: "go?"}}
          - id: after
            action: shell
            needs: [ask]
            with: {{script: 'echo after >> "$PARAM_DIR/after.log"'}}
    """,
    "slow": f"""
        name: slow
        {DIR}
        steps:
          - id: work
            action: shell
            idempotent: true
            with:
              script: 'echo run >> "$PARAM_DIR/work.log"; echo $$ > "$PARAM_DIR/work.pid";
                [ -e "$PARAM_DIR/go" ] && exit 0; exec sleep 30'
        finally:
          - id: tidy
            action: shell
            with: {{script: 'echo tidy >> "$PARAM_DIR/finally.log"'}}
    """,
    "stubborn": f"""
        name: stubborn
        {DIR}
        steps:
          - id: work
            action: shell
            idempotent: true
            with:
              script: 'echo $$ > "$PARAM_DIR/work.pid"; trap "" TERM; exec sleep 30'
        finally:
          - id: tidy
            action: shell
            with: {{script: 'echo tidy >> "$PARAM_DIR/finally.log"'}}
    """,
    "quick": f"""
        name: quick
        {DIR}
        steps:
          - id: mark
            action: shell
            with: {{script: 'echo done >> "$PARAM_DIR/quick.log"'}}
    """,
    "odd": """
        name: odd
        params:
          dir: {type: string, required: true}
          url: {type: string, default: "http://127.0.0.1:1/"}
          text: {type: string, default: plain}
        steps:
          - id: bytes
            action: shell
            with: {script: 'printf "bad \\377 byte and a NUL \\000 here"'}
          - id: fetch
            action: http
            with: {url: "{{ params.url }}"}
          - id: reuse
            action: shell
            needs: [fetch]
            with:
              env: {V: "{{ steps.fetch.output.json.v }}"}
              script: 'printf "%s" "$V" > "$PARAM_DIR/reused.txt"'
    """,
}


@pytest.fixture
def make_server(tmp_path: Path, db_url: str) -> Iterator[MakeServer]:
    servers: list[Server] = []

    def make(**kw: Any) -> Server:
        server = Server(tmp_path, db_url, PLAYBOOKS, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def baton(
    server: Server, *args: str, stdin: str = "", within: float = 60
) -> subprocess.CompletedProcess[str]:
    """A whole ``baton`` command on the server's database and playbooks."""
    return subprocess.run(
        [BATON, *args],
        env=server.env(),
        cwd=server.root,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=within,
        check=False,
    )


def spawn(server: Server, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BATON, *args],
        env=server.env(),
        cwd=server.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], within: float = 30) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=within)
    return proc.returncode, out, err


def run_of(server: Server, playbook: str) -> Any:
    return wait_until(lambda: server.runs_of(playbook), what=f"a run of {playbook}")[-1]


def test_a_console_opened_during_a_waiting_run_takes_nothing(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("gate")
    server.wait_step(run_id, "ask", "waiting")
    before = server.run(run_id)

    out = baton(server, "console", "--as", "carol", stdin="history\n")
    assert out.returncode == 0, out.stderr
    assert run_id in out.stdout
    after = server.run(run_id)
    assert (after.owner, after.epoch) == (before.owner, before.epoch)  # still the server's

    gate = server.approvals(run_id)[0].id
    decided = server.decide(gate, "bob")
    assert decided["status"] == "approved", decided
    assert server.wait_run(run_id).status == "succeeded"
    assert lines(server.work / "after.log") == ["after"]

    second = server.start_run("gate")
    server.wait_step(second, "ask", "waiting")
    assert baton(server, "console", "--as", "carol", stdin="history\n").returncode == 0
    status, body = server.request("POST", f"/api/runs/{second}/cancel")
    assert status == 202, body
    assert server.wait_run(second).status == "cancelled"


def test_an_approval_from_another_process_is_applied_by_the_server(
    make_server: MakeServer,
) -> None:
    server = make_server()
    server.start()
    run_id = server.start_run("gate")
    server.wait_step(run_id, "ask", "waiting")
    gate = server.approvals(run_id)[0].id

    out = baton(server, "console", "--as", "bob", stdin=f"approve {gate} ship it\n")
    assert out.returncode == 0, out.stderr
    assert f"bob approved {gate}" in out.stdout
    assert "no live driver" not in out.stdout
    assert f"approval {gate} is approved; run {run_id} goes on" in out.stdout
    assert server.wait_run(run_id).status == "succeeded"
    assert server.run(run_id).owner != "console"


def test_a_cli_run_is_cancelled_from_the_api(make_server: MakeServer) -> None:
    server = make_server()
    server.start()
    cli = spawn(server, "run", "slow", f"dir={server.work}", "--as", "alice")
    try:
        wait_until(lambda: pid_written(server.work / "work.pid"), what="the step started")
        run_id = run_of(server, "slow").id
        status, body = server.request("POST", f"/api/runs/{run_id}/cancel")
        assert status == 202, body
        assert body["message"] == f"cancelling run {run_id}"
        code, out, err = finish(cli)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert code == 1, err
    assert "cancelled" in out + err
    row = server.run(run_id)
    assert (row.status, row.stopped_by) == ("cancelled", "api")
    assert lines(server.work / "finally.log") == ["tidy"]  # `finally` ran, once
    assert server.step(run_id, "work").status == "cancelled"


def test_ctrl_c_cancels_a_cli_run_and_exits_130(make_server: MakeServer) -> None:
    server = make_server()
    cli = spawn(server, "run", "slow", f"dir={server.work}")
    try:
        wait_until(lambda: pid_written(server.work / "work.pid"), what="the step started")
        run_id = run_of(server, "slow").id
        cli.send_signal(signal.SIGINT)
        code, _, err = finish(cli)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert code == 130, err
    assert f"cancelling run {run_id} (Ctrl-C again to leave it running for a server)" in err
    assert "Traceback" not in err
    assert server.run(run_id).status == "cancelled"
    assert lines(server.work / "finally.log") == ["tidy"]
    assert lines(server.work / "work.log") == ["run"]


def test_a_second_ctrl_c_leaves_the_run_to_a_server(make_server: MakeServer) -> None:
    server = make_server()
    cli = spawn(server, "run", "stubborn", f"dir={server.work}")
    said: list[str] = []
    cancelling = threading.Event()

    def read() -> None:
        assert cli.stderr is not None
        for line in cli.stderr:
            said.append(line)
            if "cancelling run" in line:
                cancelling.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: pid_written(server.work / "work.pid"), what="the step started")
        run_id = run_of(server, "stubborn").id
        cli.send_signal(signal.SIGINT)  # the step ignores SIGTERM: the cancel takes a while
        assert cancelling.wait(30), "".join(said)
        cli.send_signal(signal.SIGINT)
        code = cli.wait(timeout=30)
        reader.join(10)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for pipe in (cli.stdout, cli.stderr):
            if pipe is not None:
                pipe.close()
        server.kill_steps()
    err = "".join(said)
    assert code == 130, err
    assert f"left run {run_id} to a server" in err
    row = server.run(run_id)
    assert row.owner is None and row.status in ("running", "waiting"), row

    server.start()  # adopts it at once (released): the cancel goes on, `finally` runs
    assert server.wait_run(run_id).status == "cancelled"
    assert lines(server.work / "finally.log") == ["tidy"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["term", "hup"])
def test_sigterm_or_sighup_on_baton_run_leaves_no_step_behind(
    make_server: MakeServer, sig: signal.Signals
) -> None:
    """A closed terminal or a cancelled CI job: the step is stopped (never left running
    on its own), the run is left to a server, which carries it on."""
    server = make_server()
    cli = spawn(server, "run", "slow", f"dir={server.work}")
    try:
        pid = wait_until(lambda: pid_written(server.work / "work.pid"), what="the step started")
        run_id = run_of(server, "slow").id
        (server.work / "go").touch()  # a re-run of the step ends at once
        cli.send_signal(sig)
        code, _, err = finish(cli)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert code == 128 + sig, err
    assert f"{sig.name}: left run {run_id} to a server" in err
    assert not alive(pid), "the step's process was left running"
    row = server.run(run_id)
    assert row.owner is None and row.status in ("running", "waiting")

    server.start()
    assert server.wait_run(run_id).status == "succeeded"
    assert lines(server.work / "work.log") == ["run", "run"]  # idempotent: run again
    assert lines(server.work / "finally.log") == ["tidy"]


def test_detach_starts_the_run_and_a_server_carries_it_out(make_server: MakeServer) -> None:
    server = make_server()
    out = baton(server, "run", "quick", f"dir={server.work}", "--detach")
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert "no `baton serve` is running" in out.stderr
    row = server.run(run_id)
    assert (row.status, row.owner) == ("queued", None)
    assert not (server.work / "quick.log").exists()

    server.start()
    assert server.wait_run(run_id).status == "succeeded"
    assert lines(server.work / "quick.log") == ["done"]


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers JSON that holds a lone surrogate, as some APIs do."""

    def do_GET(self) -> None:
        body = b'{"v": "bad \\ud800 value"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_bad_values_in_params_and_outputs_never_stop_a_driver(make_server: MakeServer) -> None:
    answers = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    server = make_server()
    server.start()
    try:
        for bad in ("a\ud800b", "a\x00b"):
            raw = json.dumps({"playbook": "odd", "params": {"dir": "x", "text": bad}})
            status, body = server.request("POST", "/api/runs", json.loads(raw))
            assert status == 400, body
            assert "params.text:" in body["error"], body  # the field, then why
            assert "NUL" in body["error"] or "lone surrogate" in body["error"], body
        url = f"http://127.0.0.1:{answers.server_address[1]}/"
        run_id = server.start_run("odd", url=url)
        row = server.wait_run(run_id)
        assert row.status == "succeeded", row.error
        out = server.api_run(run_id)
        steps = {s["id"]: s for s in out["steps"]}
        assert steps["bytes"]["output"]["stdout"] == "bad \ufffd byte and a NUL \ufffd here"
        assert steps["fetch"]["output"]["json"] == {"v": "bad \ufffd value"}
        assert (server.work / "reused.txt").read_text() == "bad \ufffd value"
        health = server.request("GET", "/healthz")
        assert health[0] == 200 and health[1]["active_runs"] == 0
        for method, path in [
            ("GET", "/api/runs/a%00b"),
            ("GET", "/api/runs?playbook=%00"),
            ("POST", "/api/runs/a%00b/cancel"),
        ]:
            status, body = server.request(method, path)
            assert status == 400 and "NUL" in body["error"], (path, status, body)
        out = baton(server, "console", "--as", "carol", stdin="status a\x00b\nhistory odd\n")
        assert "cannot be read" in out.stdout and run_id in out.stdout, out.stdout
        assert "Traceback" not in out.stdout + out.stderr
    finally:
        answers.shutdown()
        answers.server_close()
