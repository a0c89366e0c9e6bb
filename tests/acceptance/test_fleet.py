"""A fleet end to end: the shipped ``restart-service-fleet`` over a real inventory file,
``for_each`` over ``hosts(...)``, one ``ssh`` step per host against a real sshd, host keys
checked, and the service manager a recording script of the test's.

Every inventory host is the same sshd on 127.0.0.1 under its own name; the recording
script tells them apart by ``TARGET_HOST``, which the playbook passes in ``env``.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.fleet import inventory
from engine.runs.requests import RunRequest
from engine.timing import ManualClock, ManualTimers
from engine.views import queries
from tests.fakes.sshd import Sshd

LIBRARY = Path(__file__).resolve().parents[2] / "playbooks"
FINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@dataclass
class Fleet:
    baton: Baton
    timers: ManualTimers
    folder: Path

    @property
    def tool(self) -> Path:
        return self.folder / "systemctl"

    def fail_restart_on(self, *hosts: str) -> None:
        (self.folder / "failing").write_text("".join(f"{h}\n" for h in hosts))

    @property
    def calls(self) -> list[str]:
        log = self.folder / "calls"
        return sorted(log.read_text().splitlines()) if log.exists() else []

    async def run(self, **params: str) -> dict[str, Any]:
        """Start a run, then let its retry delays pass until it ends."""
        engine = self.baton.engine
        run_id = await engine.start_run(
            RunRequest(
                playbook="restart-service-fleet",
                params={"command": str(self.tool), **params},
                requested_by="alice",
            )
        )
        for _ in range(20):
            await engine.wait_idle()
            done = await queries.get_run(self.baton.store, run_id)
            if done["status"] in FINAL:
                return done
            self.timers.advance(timedelta(seconds=10))
        raise AssertionError(f"run {run_id} did not end: {done['status']}")


@pytest.fixture
async def fleet(tmp_path: Path, sshd: Sshd) -> AsyncIterator[Fleet]:
    folder = tmp_path / "remote"
    folder.mkdir()
    tool = folder / "systemctl"
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "$TARGET_HOST $*" >> "{folder}/calls"\n'
        f'if [ "$1" = restart ] && grep -qx "$TARGET_HOST" "{folder}/failing"; then\n'
        '  echo "restart failed on $TARGET_HOST" >&2; exit 3\n'
        "fi\n"
    )
    tool.chmod(0o755)
    (folder / "failing").write_text("")
    where = f"ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user={sshd.user}"
    (tmp_path / "hosts.ini").write_text(
        "[web]\n" + "".join(f"web{i} {where}\n" for i in range(1, 5)) + f"[db]\ndb1 {where}\n"
    )
    (tmp_path / "baton.yml").write_text("inventory: hosts.ini\n")
    (tmp_path / "known_hosts").write_text(sshd.host_key_line)
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shutil.copy(LIBRARY / "restart-service-fleet.yaml", playbooks)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'baton.db'}",
        playbooks=playbooks,
        config=tmp_path / "baton.yml",
        key_file=tmp_path / "key",
        ssh_known_hosts=tmp_path / "known_hosts",
        ssh_key=sshd.client_key,
    )
    clock = ManualClock()
    timers = ManualTimers(clock)
    try:
        async with open_baton(settings, clock=clock, timers=timers) as baton:
            yield Fleet(baton, timers, folder)
    finally:
        inventory.activate(inventory.Inventory())  # the next test starts from none


def steps_of(done: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in done["steps"]}


async def test_a_rolling_restart_restarts_and_checks_every_host_of_the_group(
    fleet: Fleet,
) -> None:
    done = await fleet.run(hosts="web", service="api")

    assert done["status"] == "succeeded", done
    steps = steps_of(done)
    items = steps["restart"]["output"]["items"]
    assert [(i["item"], i["status"], i["attempts"]) for i in items] == [
        (f"web{n}", "succeeded", 1) for n in range(1, 5)
    ]
    assert fleet.calls == sorted(
        f"web{n} {verb} api" for n in range(1, 5) for verb in ("restart", "is-active")
    )  # db1 is not in the pattern
    assert steps["targets"]["output"]["message"] == (
        "restarting api on 4 hosts: web1, web2, web3, web4"
    )
    assert " ".join(steps["report"]["output"]["message"].split()) == (
        "api restarted on 4 of 4 hosts."
    )


async def test_more_failed_hosts_than_allowed_fail_the_step_naming_them(fleet: Fleet) -> None:
    fleet.fail_restart_on("web2", "web3")

    done = await fleet.run(hosts="web", service="api")

    assert done["status"] == "failed"
    steps = steps_of(done)
    restart = steps["restart"]
    assert restart["status"] == "failed"
    assert "web2" in restart["error"] and "web3" in restart["error"]
    by_host = {i["item"]: i for i in restart["output"]["items"]}
    assert by_host["web2"]["status"] == by_host["web3"]["status"] == "failed"
    assert by_host["web2"]["attempts"] == 2  # retried once on its own
    assert "restart failed on web2" in by_host["web2"]["error"]
    assert by_host["web1"]["status"] == "succeeded"
    restarts = [c for c in fleet.calls if c.endswith("restart api")]
    assert restarts.count("web2 restart api") == 2
    assert steps["report"]["status"] in ("pending", "skipped")  # needs a whole step


async def test_a_pattern_naming_no_host_changes_nothing(fleet: Fleet) -> None:
    done = await fleet.run(hosts="webb", service="api")

    assert done["status"] == "failed"
    targets = steps_of(done)["targets"]
    assert "no host matches 'webb'" in targets["error"]
    assert "did you mean 'web'" in targets["error"]
    assert fleet.calls == []
