"""A real ``baton serve`` with its credentials in its environment: a step that prints
its whole environment finds none of them, nor does anything Baton writes (step output,
the run's log lines, the API, the database, Baton's own log); the variables
``BATON_STEP_ENV`` allows and the ``PARAM_*`` ones do get through. Bound to 0.0.0.0 with
open reads, Baton warns at start; with ``BATON_API_READ_TOKEN=required`` reads need the
token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import tables as t
from tests.acceptance.serve import TOKEN, Server

ALERT_TOKEN = "alert-token-7c41"
SECRET_KEY = "Yq5u6hJ3rQm0n9XkVvZ8b2W4c1T7sE6dA0fG3hJ5kL8="  # a Fernet key (44 characters)
PAGERDUTY = "pd-secret-old-31,pd-secret-new-32"
SLACK_BOT = "xoxb-slack-bot-token-55"  # Slack stays off: neither app token nor signing secret
DB_PASSWORD = "db-password-9f2e"
TEMPLATE_SECRET = "template-secret-1a"

DUMP = {
    "dump-env": """
        name: dump-env
        params:
          dir: {required: true}
          note: {required: true}
        steps:
          - id: env
            action: shell
            with:
              script: |
                env
                env >&2
          - id: note
            action: log
            needs: [env]
            with: {message: "asked: {{ params.note }}"}
    """
}


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    if db_url.startswith("postgresql"):  # trust auth: the password is sent, and must not leak
        db_url = db_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
    env = {
        "BATON_HOST": "0.0.0.0",
        "BATON_DASHBOARD": "false",  # no `users:` here: only the API is served
        "BATON_ALERT_TOKEN": ALERT_TOKEN,
        "BATON_SECRET_KEY": SECRET_KEY,
        "BATON_PAGERDUTY_SECRET": PAGERDUTY,
        "SLACK_BOT_TOKEN": SLACK_BOT,
        "SECRET_UPSTREAM": TEMPLATE_SECRET,
        "BATON_STEP_ENV": "WORK_DIR,KUBECONFIG,AWS_*,*TOKEN*",
        "KUBECONFIG": "/etc/kube/acceptance",
        "AWS_REGION": "eu-west-1",
        "UNLISTED": "not-for-steps",
    }
    server = Server(tmp_path, db_url, DUMP, env=env)
    yield server
    server.close()


def credentials(db_url: str) -> list[str]:
    found = [TOKEN, ALERT_TOKEN, SECRET_KEY, *PAGERDUTY.split(","), SLACK_BOT, TEMPLATE_SECRET]
    return found + ([DB_PASSWORD] if db_url.startswith("postgresql") else [])


def test_steps_see_none_of_batons_credentials(server: Server) -> None:
    server.start()
    run_id = server.start_run("dump-env", note=f"is {TOKEN} still {SLACK_BOT}?")
    assert server.wait_run(run_id).status == "succeeded"

    env = server.step(run_id, "env").output
    printed = dict(line.split("=", 1) for line in env["stdout"].splitlines() if "=" in line)
    # `*TOKEN*` matches no credential variable: Baton's are never passed
    leaked = sorted(k for k in printed if k.startswith(("BATON_", "SLACK_", "SECRET_")))
    assert leaked == []
    assert "PATH" in printed and "UNLISTED" not in printed
    assert printed["KUBECONFIG"] == "/etc/kube/acceptance"  # allowed by name
    assert printed["AWS_REGION"] == "eu-west-1"  # allowed by a glob
    assert printed["PARAM_DIR"] == str(server.work)
    assert printed["PARAM_NOTE"] == "is *** still ***?"  # the value holds them: masked
    assert env["stderr"] == env["stdout"]

    status, answer = server.request("GET", f"/api/runs/{run_id}")
    assert status == 200
    assert answer["params"]["note"] == "is *** still ***?"
    _, listed = server.request("GET", "/api/runs")
    logs = server._all(sa.select(t.run_logs).where(t.run_logs.c.run_id == run_id))
    assert [row.message for row in logs] == ["asked: is *** still ***?"]
    rows = [
        repr(list(map(tuple, server._all(sa.select(table)))))
        for table in (t.runs, t.steps, t.attempts, t.run_logs, t.audit)
    ]
    assert server.terminate() == 0
    written = {
        "the API": json.dumps(answer) + json.dumps(listed),
        "the database": "\n".join(rows),
        "Baton's log": "\n".join(server.log),
    }
    for where, text in written.items():
        for value in credentials(server.db_url):
            assert value not in text, f"{value!r} in {where}"
    assert any(
        "BATON_HOST=0.0.0.0 is not a loopback address and API reads are open" in line
        for line in server.log
    ), server.log


def test_reads_closed_by_the_read_token_setting(server: Server) -> None:
    server.extra_env["BATON_API_READ_TOKEN"] = "required"
    server.start()
    run_id = server.start_run("dump-env", note="hello")
    server.wait_run(run_id)
    assert server.request("GET", "/api/runs", token=None)[0] == 401
    assert server.request("GET", f"/api/runs/{run_id}", token="wrong")[0] == 401
    status, runs = server.request("GET", "/api/runs")
    assert status == 200 and [r["id"] for r in runs] == [run_id]
    assert server.request("GET", "/healthz", token=None)[0] == 200
    assert server.terminate() == 0
    assert not any("not a loopback address" in line for line in server.log)
