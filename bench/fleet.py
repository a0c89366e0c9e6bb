"""A fleet over SSH: 50 inventory hosts, ``parallel: 20``, one trivial command each, by
Baton's ``ssh`` action against the same 50 commands by ``xargs -P 20 ssh`` (the OpenSSH
client). ``python -m bench fleet``; not in the default run (it starts an sshd and makes
about 500 SSH connections: some 30 s).

Both sides reach one real sshd (Debian's ``/usr/sbin/sshd`` on 127.0.0.1, started by
``tests.fakes.sshd``) with the same client key, the host key checked against the same
known_hosts file. The 50 hosts are inventory names for that one sshd; Baton pools one
connection per host per run, so each run opens 50 connections, as xargs does (one ``ssh``
process each, no ControlMaster). The sshd allows ``MaxStartups 100``: its default
(10:30:100) drops some of 20 connections being set up at once, which would time one side
on retries. Each side's figure is the median of ``ROUNDS`` runs of the whole fleet."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import figure, heading, write_playbooks
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.fleet import inventory
from engine.runs.requests import RunRequest
from engine.views import queries
from tests.fakes.sshd import Sshd, start_sshd

HOSTS = 50
PARALLEL = 20
ROUNDS = 5
COMMAND = "true"

PLAYBOOK = textwrap.dedent(f"""\
    name: fleet
    steps:
      - id: each
        action: ssh
        for_each: {{items: "{{{{ hosts('fleet') }}}}", as: host, parallel: {PARALLEL}}}
        with: {{host: "{{{{ host }}}}", argv: ["{COMMAND}"]}}
    """)


def _inventory(sshd: Sshd) -> str:
    """``HOSTS`` names in group ``fleet``, every one the bench's sshd."""
    where = f"ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user={sshd.user}"
    return "[fleet]\n" + "".join(f"host{i:02d} {where}\n" for i in range(HOSTS))


def _ssh_argv(sshd: Sshd, known_hosts: Path) -> list[str]:
    """One OpenSSH client call, as strict as Baton: checked host key, key only, no prompt."""
    return [
        "ssh",
        "-F",
        "/dev/null",  # no user or system ssh_config: the options below are all there is
        "-i",
        str(sshd.client_key),
        "-p",
        str(sshd.port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ControlMaster=no",
        f"{sshd.user}@127.0.0.1",
        COMMAND,
    ]


def xargs_round(sshd: Sshd, known_hosts: Path) -> float:
    """Seconds for ``xargs -P PARALLEL`` to run the command over ``HOSTS`` connections."""
    names = "".join(f"host{i:02d}\n" for i in range(HOSTS)).encode()
    before = sshd.connections()
    t0 = time.perf_counter()
    done = subprocess.run(
        ["xargs", "-P", str(PARALLEL), "-I", "{}", *_ssh_argv(sshd, known_hosts)],
        input=names,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # the login shell's own chatter; shown only on failure
    )
    elapsed = time.perf_counter() - t0
    if done.returncode:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"xargs ssh exited {done.returncode}: {' | '.join(last)}")
    _check_connections(sshd, before, "xargs")
    return elapsed


async def baton_round(baton: Baton, sshd: Sshd) -> float:
    """Seconds from starting the fleet run to its end (every item succeeded)."""
    before = sshd.connections()
    t0 = time.perf_counter()
    run_id = await baton.engine.start_run(
        RunRequest(playbook="fleet", params={}, requested_by="bench", trigger="cli")
    )
    status = await baton.engine.wait_for(run_id)
    elapsed = time.perf_counter() - t0
    if status.value != "succeeded":
        run = await queries.get_run(baton.store, run_id)
        errors = [s.get("error") for s in run["steps"]]
        raise RuntimeError(f"fleet run {run_id} ended {status.value}: {errors}")
    _check_connections(sshd, before, "Baton")
    return elapsed


def _check_connections(sshd: Sshd, before: int, side: str) -> None:
    """Each side must have logged in ``HOSTS`` times: a fair race, not a pooled one.

    sshd writes the line as it accepts a key, before the session runs the command, so by
    the time every command has answered every line is in the log."""
    made = sshd.connections() - before
    if made != HOSTS:
        raise RuntimeError(f"{side} made {made} SSH logins, expected {HOSTS}")


def _settings(root: Path, sshd: Sshd) -> Settings:
    write_playbooks(root / "playbooks", {"fleet": PLAYBOOK})
    (root / "hosts.ini").write_text(_inventory(sshd))
    (root / "baton.yml").write_text("inventory: hosts.ini\n")
    return Settings(
        database_url=f"sqlite:///{root / 'fleet.db'}",
        playbooks=root / "playbooks",
        config=root / "baton.yml",
        key_file=root / "key",
        ssh_known_hosts=root / "known_hosts",
        ssh_key=sshd.client_key,
    )


async def _baton_rounds(settings: Settings, sshd: Sshd) -> list[float]:
    try:
        async with open_baton(settings) as baton:
            await baton_round(baton, sshd)  # warm: templates compiled, tables touched
            return [await baton_round(baton, sshd) for _ in range(ROUNDS)]
    finally:
        inventory.activate(inventory.Inventory())


def _suite(root: Path) -> None:
    sshd = start_sshd(root / "sshd", extra_config=("MaxStartups 100",))
    try:
        known_hosts = root / "known_hosts"
        known_hosts.write_text(sshd.host_key_line)
        settings = _settings(root, sshd)
        xargs_round(sshd, known_hosts)  # warm: the page cache holds ssh and sshd
        xargs = [xargs_round(sshd, known_hosts) for _ in range(ROUNDS)]
        baton = asyncio.run(_baton_rounds(settings, sshd))
    finally:
        sshd.stop()
    x, b = statistics.median(xargs), statistics.median(baton)
    figure(f"xargs -P {PARALLEL} ssh ... {COMMAND}", x * 1000, "ms")
    figure(f"  xargs range of {ROUNDS}", f"{min(xargs) * 1000:.0f}-{max(xargs) * 1000:.0f}", "ms")
    figure(f"Baton for_each ssh, parallel {PARALLEL}", b * 1000, "ms")
    figure(f"  Baton range of {ROUNDS}", f"{min(baton) * 1000:.0f}-{max(baton) * 1000:.0f}", "ms")
    figure("Baton / xargs", b / x, "x", "<= 2x")


def main() -> None:
    heading(
        f"Fleet: {COMMAND!r} on {HOSTS} inventory hosts over SSH, {PARALLEL} at a time "
        f"(median of {ROUNDS} runs each, one connection per host)"
    )
    with tempfile.TemporaryDirectory(prefix="baton-bench-fleet-") as tmp:
        _suite(Path(tmp))


if __name__ == "__main__":
    main()
