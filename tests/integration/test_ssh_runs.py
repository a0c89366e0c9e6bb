"""``ssh`` steps through a real engine (SQLite) and a real sshd: secrets masked in the
output and the log, one connection per run, closed when the run ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.actions.lifecycle import ActionLifecycle
from engine.actions.ssh import SshAction
from storage import tables as t
from tests.fakes.processes import wait_until
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


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = await open_harness(
        tmp_path, f"sqlite:///{tmp_path / 'baton.db'}", {"remote": REMOTE}, {"token": TOKEN}
    )
    yield h
    h.schedules.stop()
    await h.engine.stop(drain=0)
    h.events.close()
    await h.store.close()


async def test_a_run_shares_one_connection_masks_secrets_and_closes_at_its_end(
    harness: Harness, sshd: Sshd, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.host_key_line)
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
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
