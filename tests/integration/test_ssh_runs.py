"""``ssh`` steps through a real engine (SQLite) and a real sshd: secrets masked in the
output and the log, one connection per run, closed when the run ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.actions.lifecycle import ActionLifecycle
from engine.actions.ssh import SshAction
from engine.runs.requests import RunRequest
from storage import tables as t
from tests.fakes.processes import alive, wait_until
from tests.fakes.sshd import Sshd
from tests.harness import Harness, open_harness

TOKEN = "tok-3f9a-secret"

REMOTE = """
    name: remote
    params:
      port: {type: int, required: true}
    steps:
      - id: one
        action: ssh
        with:
          host: 127.0.0.1
          port: "{{ params.port }}"
          script: 'echo "token=$TOKEN"'
          env: {TOKEN: "{{ secrets.token }}"}
      - id: two
        action: ssh
        needs: [one]
        with: {host: 127.0.0.1, port: "{{ params.port }}", argv: [echo, two]}
"""

SLOW = """
    name: slow
    params:
      port: {type: int, required: true}
      folder: {required: true}
    steps:
      - id: hang
        action: ssh
        timeout: 10s
        with:
          host: 127.0.0.1
          port: "{{ params.port }}"
          script: |
            sleep 301 & echo $! > "$PARAM_FOLDER/child.pid"
            echo $$ > "$PARAM_FOLDER/self.pid"
            echo started
            wait
"""


@pytest.fixture
def ssh(sshd: Sshd, tmp_path: Path) -> SshAction:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.host_key_line)
    return SshAction(known_hosts=known_hosts, key_file=sshd.client_key)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await open_harness(
        tmp_path,
        f"sqlite:///{tmp_path / 'baton.db'}",
        {"remote": REMOTE, "slow": SLOW},
        {"token": TOKEN},
    )
    yield h
    h.schedules.stop()
    await h.engine.stop(drain=0)
    h.events.close()
    await h.store.close()


async def test_a_run_shares_one_connection_masks_secrets_and_closes_at_its_end(
    harness: Harness, sshd: Sshd, ssh: SshAction
) -> None:
    harness.engine.registry.add("ssh", ssh)
    lifecycle = ActionLifecycle(harness.engine.bus, harness.engine.registry)
    lifecycle.start()
    before = sshd.connections()

    run_id = await harness.run("remote", {"port": sshd.port})

    steps = await harness.steps(run_id)
    assert (await harness.run_row(run_id)).status == "succeeded"
    assert steps["one"].output == {"rc": 0, "stdout": "token=***\n", "stderr": ""}
    assert steps["two"].output["stdout"] == "two\n"
    logged = await harness.store.all(
        sa.select(t.run_logs.c.message).where(t.run_logs.c.run_id == run_id)
    )
    assert [row.message for row in logged] == ["127.0.0.1: token=***", "127.0.0.1: two"]
    assert sshd.connections() - before == 1
    await wait_until(lambda: ssh.pool.open_connections(run_id) == 0)
    await lifecycle.close()


async def test_the_step_timeout_kills_the_remote_command(
    harness: Harness, sshd: Sshd, ssh: SshAction, tmp_path: Path
) -> None:
    harness.engine.registry.add("ssh", ssh)
    folder = tmp_path / "pids"
    folder.mkdir()
    request = RunRequest(
        playbook="slow", params={"port": sshd.port, "folder": str(folder)}, requested_by="al"
    )
    run_id = await harness.engine.start_run(request)
    pid_files = [folder / "self.pid", folder / "child.pid"]
    await wait_until(lambda: all(p.exists() and p.read_text().strip() for p in pid_files))
    pids = [int(p.read_text()) for p in pid_files]
    assert all(alive(pid) for pid in pids)

    await harness.advance(11)  # the step's timeout fires: the engine cancels the step

    step = (await harness.steps(run_id))["hang"]
    (attempt,) = await harness.attempts(run_id)
    assert attempt.status == step.status == "failed"
    assert attempt.error == step.error == "timed out after 0:00:10"
    assert step.output == {"rc": -15, "stdout": "started\n", "stderr": ""}  # killed by TERM
    await wait_until(lambda: not any(alive(pid) for pid in pids))
    await ssh.close()
