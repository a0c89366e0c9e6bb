"""The inventory from the command line, as whole ``baton`` processes: ``baton hosts``
lists a pattern's hosts, ``baton validate`` and ``baton serve`` refuse a bad inventory
with its file and line, and SIGHUP makes a serving Baton read an edited one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BATON = str(Path(sys.executable).parent / "baton")

INI = """\
bastion ansible_host=203.0.113.7

[web]
web[01:02].example.com ansible_user=deploy
canary:2200 ansible_host=10.0.0.9

[db]
db1 ansible_port=5022

[prod:children]
web
db
"""

PLAYBOOK = """\
name: fleet
steps:
  - id: list
    action: log
    with: {message: "{{ hosts('web') | join(',') }} at {{ hostvars.canary.ansible_host }}"}
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "fleet.yaml").write_text(PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(INI)
    (tmp_path / "baton.yml").write_text("inventory: hosts.ini\n")
    return {
        **os.environ,
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "BATON_CONFIG": str(tmp_path / "baton.yml"),
    }


def baton(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATON, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_hosts_lists_a_patterns_hosts_as_a_table(env: dict[str, str]) -> None:
    out = baton(env, "hosts", "prod:!db")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "HOST               ADDRESS            PORT  USER    GROUPS",
        "web01.example.com  web01.example.com  22    deploy  prod,web",
        "web02.example.com  web02.example.com  22    deploy  prod,web",
        "canary             10.0.0.9           2200  -       prod,web",
    ]
    every = baton(env, "hosts")
    assert [line.split()[0] for line in every.stdout.splitlines()[1:]] == [
        "bastion",
        "web01.example.com",
        "web02.example.com",
        "canary",
        "db1",
    ]


def test_hosts_says_when_nothing_matches_and_when_there_is_no_inventory(
    env: dict[str, str], tmp_path: Path
) -> None:
    none = baton(env, "hosts", "nosuchgroup")
    assert none.returncode == 1 and none.stdout == ""
    assert none.stderr == "no host matches 'nosuchgroup' (groups: web, db, prod, all, ungrouped)\n"
    unset = baton({k: v for k, v in env.items() if k != "BATON_CONFIG"}, "hosts")
    assert unset.returncode == 1
    assert unset.stderr.startswith("no inventory: set `inventory: PATH` in BATON_CONFIG")


def test_validate_and_hosts_refuse_a_bad_inventory_with_file_and_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert baton(env, "validate").returncode == 0
    (tmp_path / "hosts.ini").write_text(INI.replace("db1 ansible_port=5022", "db1 port"))
    problem = f"{tmp_path / 'hosts.ini'}:8: 'port' after host db1: host vars are key=value"
    checked = baton(env, "validate")
    assert checked.returncode == 1 and problem in checked.stdout
    listed = baton(env, "hosts")
    assert listed.returncode == 2 and listed.stderr.startswith(f"baton: {problem}")


def test_validate_names_a_constant_pattern_that_matches_no_host(
    env: dict[str, str], tmp_path: Path
) -> None:
    typo = PLAYBOOK.replace("hosts('web')", "hosts('webb')").replace(
        "steps:", "steps:\n  - {id: odd, action: log, with: {message: \"{{ hosts('web:&') }}\"}}"
    )
    (tmp_path / "playbooks" / "fleet.yaml").write_text(typo)
    checked = baton(env, "validate")
    assert checked.returncode == 1, checked.stdout
    fleet = tmp_path / "playbooks" / "fleet.yaml"
    assert f"{fleet}:3: hosts('web:&'): `&` and `!` need a group" in checked.stdout
    assert f"{fleet}:6: hosts('webb'): no host matches 'webb' (groups: web, db, prod" in (
        checked.stdout
    )
    assert "did you mean 'web'?" in checked.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines_until(proc: subprocess.Popen[str], marker: str) -> Iterator[str]:
    """The log lines ``proc`` writes up to the first holding ``marker`` (read as they
    come: the test waits on the process, not on a clock)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        yield line
        if marker in line:
            return
    raise AssertionError(f"the process ended before logging {marker!r}")


def test_serve_refuses_a_bad_inventory_and_sighup_reloads_an_edited_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "hosts.ini").write_text(INI + "[web:vars]\nbroken\n")
    refused = subprocess.run(
        [BATON, "serve"], env={**env, "BATON_PORT": str(_free_port())},
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 2
    assert f"{tmp_path / 'hosts.ini'}:14: [web:vars] holds key=value lines" in refused.stderr
    assert "Traceback" not in refused.stderr

    (tmp_path / "hosts.ini").write_text(INI)
    proc = subprocess.Popen(
        [BATON, "serve"],
        env={**env, "BATON_PORT": str(_free_port())},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = list(_lines_until(proc, "serving on"))
        assert any("hosts.ini: 5 host(s) in 3 group(s)" in line for line in started), started
        (tmp_path / "hosts.ini").write_text(INI + "[db]\ndb2\n")
        proc.send_signal(signal.SIGHUP)
        reloaded = list(_lines_until(proc, "host(s) in"))
        assert "hosts.ini: 6 host(s) in 3 group(s)" in reloaded[-1]
        (tmp_path / "hosts.ini").write_text(INI + "[db]\ndb3 ansible_port=x\n")
        proc.send_signal(signal.SIGHUP)
        kept = list(_lines_until(proc, "inventory problem"))
        assert "(the previous inventory stays)" in kept[-1] and "hosts.ini:14:" in kept[-1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
