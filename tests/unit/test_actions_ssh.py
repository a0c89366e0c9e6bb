"""The ``ssh`` action against a real sshd on 127.0.0.1 (``tests.fakes.sshd``): commands,
quoting, host keys, client keys, killing remote commands, pooling, errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.actions import ActionContext
from engine.actions import ssh as ssh_action
from engine.actions.registry import Registry
from engine.actions.shell import KILL_GRACE
from engine.actions.ssh import SshAction, SshInputs
from engine.actions.streaming import STREAM_LINES
from engine.errors import ActionError
from engine.fleet import remote, sshpool
from engine.fleet.hosts import Host
from engine.playbooks import validate
from tests.fakes.actx import RecordingLog, make_ctx
from tests.fakes.processes import alive, wait_until
from tests.fakes.sshd import Sshd, free_port, keygen


@pytest.fixture
def known_hosts(tmp_path: Path, sshd: Sshd) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd.host_key_line)
    return path


@pytest.fixture
async def action(known_hosts: Path, sshd: Sshd) -> AsyncIterator[SshAction]:
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
    yield ssh
    await ssh.close()


def inputs(sshd: Sshd, **with_: Any) -> SshInputs:
    return SshInputs.model_validate({"host": "127.0.0.1", "port": sshd.port, **with_})


async def run(action: SshAction, sshd: Sshd, ctx: ActionContext | None = None, **with_: Any):
    return await action.run(ctx or make_ctx(), inputs(sshd, **with_))


# --- commands and output ------------------------------------------------------------


async def test_argv_is_quoted_word_by_word(action: SshAction, sshd: Sshd) -> None:
    out = await run(action, sshd, argv=["printf", "%s|", "a b", "it's", "$HOME", "*"])
    assert out == {"rc": 0, "stdout": "a b|it's|$HOME|*|", "stderr": ""}


async def test_a_script_runs_through_sh_and_its_lines_stream_to_the_log(
    action: SshAction, sshd: Sshd, tmp_path: Path
) -> None:
    """The first line reaches the run's log while the command still runs."""
    go = tmp_path / "go"
    log = RecordingLog()
    script = f"echo first; echo oops >&2; while [ ! -e {go} ]; do sleep 0.01; done; echo last"
    step = asyncio.create_task(run(action, sshd, make_ctx(log=log), script=script))
    await wait_until(lambda: "127.0.0.1: first" in log.lines)
    assert not step.done()
    go.touch()
    out = await step
    assert out == {"rc": 0, "stdout": "first\nlast\n", "stderr": "oops\n"}
    # stdout and stderr are two channels: each keeps its order, not one against the other
    assert [line for line in log.lines if "(stderr)" not in line] == [
        "127.0.0.1: first",
        "127.0.0.1: last",
    ]
    assert [line for line in log.lines if "(stderr)" in line] == ["127.0.0.1 (stderr): oops"]


async def test_a_nonzero_exit_fails_with_the_last_stderr_line(
    action: SshAction, sshd: Sshd
) -> None:
    with pytest.raises(ActionError) as err:
        await run(action, sshd, script="echo partial; echo 'disk full' >&2; exit 3")
    assert str(err.value) == "exit status 3: disk full"
    assert err.value.output == {"rc": 3, "stdout": "partial\n", "stderr": "disk full\n"}


async def test_long_output_keeps_a_tail_and_attaches_the_whole(
    action: SshAction, sshd: Sshd
) -> None:
    ctx = make_ctx()
    out = await run(action, sshd, ctx, script="seq 1 20000")
    whole = "".join(f"{n}\n" for n in range(1, 20001))
    assert ctx.attachments["stdout"] == whole
    assert out["stdout"].startswith("[... ") and out["stdout"].endswith("19999\n20000\n")
    assert len(ctx.log.lines) == 101  # type: ignore[attr-defined]
    assert ctx.log.lines[-1].endswith("[more output is not streamed; the step's output has it]")  # type: ignore[attr-defined]


NASTY = 'it\'s "$HOME" `id` $(id) \\ ; a  b\nsecond line'


async def test_env_and_params_reach_the_command_unchanged(action: SshAction, sshd: Sshd) -> None:
    ctx = make_ctx(params={"msg": NASTY, "n": 5, "on": True, "tags": ["a", "b"]})
    script = 'printf "%s\\n--\\n" "$PARAM_MSG" "$PARAM_N" "$PARAM_ON" "$PARAM_TAGS" "$EXTRA"'
    out = await run(action, sshd, ctx, script=script, env={"EXTRA": NASTY + "'"})
    assert out["stdout"].split("\n--\n")[:-1] == [NASTY, "5", "true", '["a", "b"]', NASTY + "'"]


async def test_argv_mode_gets_the_variables_too(action: SshAction, sshd: Sshd) -> None:
    ctx = make_ctx(params={"msg": NASTY})
    out = await run(action, sshd, ctx, argv=["printenv", "PARAM_MSG"])
    assert out["stdout"] == NASTY + "\n"


def test_the_command_line_puts_sudo_then_env_then_the_command() -> None:
    line = remote.command_line(None, "id -u", {"A": "x y"}, sudo=True)
    assert line == "echo baton-pgid=$$; exec sudo -n env A='x y' sh -c 'id -u'"
    assert remote.command_line(["ls", "a b"], None, {}, sudo=False) == (
        "echo baton-pgid=$$; exec ls 'a b'"
    )


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ({}, "give exactly one of 'argv'"),
        ({"argv": ["x"], "script": "x"}, "give exactly one of 'argv'"),
        ({"argv": []}, "'argv' is empty"),
        ({"script": "x", "env": {"A-B": "1"}}, "'A-B' is not a variable name"),
        ({"script": "x", "port": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_inputs_say_what_to_fix(with_: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SshInputs.model_validate({"host": "web1", **with_})


# --- host keys ------------------------------------------------------------------------


async def test_an_unknown_host_key_is_refused_with_its_fingerprint(
    sshd: Sshd, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    for path in (empty, tmp_path / "missing"):
        ssh = SshAction(known_hosts=path, key_file=sshd.client_key)
        with pytest.raises(ActionError) as err:
            await run(ssh, sshd, argv=["true"])
        message = str(err.value)
        assert message.startswith(f"ssh host 127.0.0.1:{sshd.port} is not in the known_hosts")
        assert sshd.fingerprint() in message
        assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {path}" in message
        assert not path.exists() or path.read_text() == ""  # nothing trusted silently
        await ssh.close()


async def test_a_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_host_key", "impostor")
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    path = tmp_path / "known_hosts"
    path.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    ssh = SshAction(known_hosts=path, key_file=sshd.client_key)
    with pytest.raises(ActionError) as err:
        await run(ssh, sshd, argv=["true"])
    assert "CHANGED" in str(err.value)
    assert sshd.fingerprint() in str(err.value)
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {path}" in str(err.value)
    await ssh.close()


# --- client keys and inventory hosts --------------------------------------------------


def inventory(sshd: Sshd, key_file: Path | None) -> Any:
    web1 = Host("web1", "127.0.0.1", sshd.port, sshd.user, str(key_file) if key_file else None)
    return lambda name: web1 if name == "web1" else None


async def test_baton_ssh_key_wins_over_the_hosts_key_file(sshd: Sshd, known_hosts: Path) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
    ctx = make_ctx(hosts=inventory(sshd, sshd.stranger_key))
    out = await ssh.run(ctx, SshInputs.model_validate({"host": "web1", "argv": ["echo", "ok"]}))
    assert out["stdout"] == "ok\n"
    await ssh.close()


async def test_the_hosts_key_file_is_used_without_baton_ssh_key(
    sshd: Sshd, known_hosts: Path
) -> None:
    ssh = SshAction(known_hosts=known_hosts)
    good = make_ctx(hosts=inventory(sshd, sshd.client_key))
    out = await ssh.run(good, SshInputs.model_validate({"host": "web1", "argv": ["echo", "ok"]}))
    assert out["stdout"] == "ok\n"
    bad = make_ctx(run_id="run-2", hosts=inventory(sshd, sshd.stranger_key))
    with pytest.raises(ActionError) as err:
        await ssh.run(bad, SshInputs.model_validate({"host": "web1", "argv": ["true"]}))
    assert str(err.value).startswith(
        f"ssh host web1 ({sshd.user}@127.0.0.1:{sshd.port}) refused the key {sshd.stranger_key}"
    )
    await ssh.close()


async def test_an_unreadable_key_file_is_named(sshd: Sshd, known_hosts: Path) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=known_hosts.parent / "no_such_key")
    with pytest.raises(ActionError, match=r"cannot read the ssh key .*no_such_key"):
        await run(ssh, sshd, argv=["true"])
    await ssh.close()


@pytest.fixture
def agent(tmp_path: Path, sshd: Sshd) -> Iterator[Path]:
    """A real ssh-agent holding the authorized client key; its socket."""
    sock = tmp_path / "agent.sock"
    # the agent binds its socket before it forks, so it is ready once this returns
    out = subprocess.run(
        ["ssh-agent", "-s", "-a", str(sock)], check=True, capture_output=True, text=True
    ).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out)[1])  # type: ignore[index]
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], check=True, env=env)
        yield sock
    finally:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture
def locked_key(tmp_path: Path) -> Path:
    key = tmp_path / "locked_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(key)], check=True
    )
    return key


async def test_without_a_key_file_the_agent_logs_in(
    sshd: Sshd, known_hosts: Path, tmp_path: Path, agent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No BATON_SSH_KEY, no key file in the inventory: the agent's key (HOME has no
    ~/.ssh keys here, so the agent is the only way in)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ssh = SshAction(known_hosts=known_hosts)
    with pytest.raises(ActionError) as err:
        await run(ssh, sshd, argv=["true"])
    assert "refused the ssh agent's keys and the default keys in ~/.ssh" in str(err.value)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    out = await run(ssh, sshd, make_ctx(run_id="run-2"), argv=["echo", "agent"])
    assert out["stdout"] == "agent\n"
    await ssh.close()


async def test_a_key_with_a_passphrase_says_to_use_the_agent(
    sshd: Sshd, known_hosts: Path, locked_key: Path
) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=locked_key)
    with pytest.raises(ActionError, match=r"protected by a passphrase.*ssh agent"):
        await run(ssh, sshd, argv=["true"])
    await ssh.close()


async def test_a_name_that_is_neither_in_the_inventory_nor_in_dns(
    sshd: Sshd, known_hosts: Path
) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
    ctx = make_ctx(hosts=inventory(sshd, None))
    with pytest.raises(ActionError) as err:
        await ssh.run(ctx, SshInputs.model_validate({"host": "web2.invalid", "argv": ["true"]}))
    assert str(err.value).startswith("cannot connect to ssh host web2.invalid:22: unknown host")
    assert "neither an inventory host nor a name DNS knows" in str(err.value)
    await ssh.close()


def test_the_registry_builds_the_action_with_its_settings(tmp_path: Path) -> None:
    registry = Registry.from_entry_points()
    registry.configure("ssh", known_hosts=tmp_path / "kh", key_file=tmp_path / "id")
    action = registry.get("ssh")
    assert isinstance(action, SshAction)
    assert action.pool.known_hosts == tmp_path / "kh" and action.key_file == str(tmp_path / "id")
    assert action in registry.loaded()


async def test_an_unreachable_host_gives_a_clean_message(known_hosts: Path, sshd: Sshd) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
    port = free_port()
    with pytest.raises(ActionError) as err:
        await ssh.run(
            make_ctx(),
            SshInputs.model_validate({"host": "127.0.0.1", "port": port, "argv": ["true"]}),
        )
    assert str(err.value) == (
        f"cannot connect to ssh host 127.0.0.1:{port}: connection refused; check the port "
        "(with: port, ansible_port) and that sshd runs"
    )
    await ssh.close()


async def test_the_marker_line_is_found_after_login_chatter_and_never_output() -> None:
    """A login script that prints (a chatty .bashrc) comes before Baton's marker line;
    the chatter is output, the marker is not, however the bytes are split."""
    lines: list[tuple[str, str]] = []
    session = remote._Session(lambda stream, line: lines.append((stream, line)))
    data = b"Welcome!\nbaton-pgid=4242\nreal output\n"
    for i in range(len(data)):
        session.data_received(data[i : i + 1], None)
    assert session.pgid.result() == 4242
    assert session.buffers["stdout"].full_text() == "Welcome!\nreal output\n"
    assert lines == [("stdout", "Welcome!"), ("stdout", "real output")]


# --- killing remote commands ----------------------------------------------------------


def pids(folder: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(folder.glob("*.pid")) if p.read_text().strip()]


def sleeper(folder: Path) -> str:
    """A script that records its own pid and a background child's, then waits."""
    return (
        f"sleep 301 & echo $! > {folder}/child.pid; echo $$ > {folder}/self.pid; echo started; wait"
    )


async def test_a_timeout_kills_the_remote_process_group(
    action: SshAction, sshd: Sshd, tmp_path: Path
) -> None:
    with pytest.raises(ActionError) as err:
        await run(action, sshd, script=sleeper(tmp_path), timeout="3s")  # a busy machine
    assert str(err.value) == (  # takes a second to connect and start the script
        f"timed out after 3.0s on ssh host 127.0.0.1:{sshd.port}; the remote command was killed"
    )
    assert err.value.output["stdout"] == "started\n"
    assert len(pids(tmp_path)) == 2
    await wait_until(lambda: not any(alive(pid) for pid in pids(tmp_path)))


async def test_a_cancelled_step_kills_the_remote_command_and_keeps_its_output(
    action: SshAction, sshd: Sshd, tmp_path: Path
) -> None:
    ctx = make_ctx()
    step = asyncio.create_task(run(action, sshd, ctx, script=sleeper(tmp_path)))
    await wait_until(lambda: len(pids(tmp_path)) == 2 and "127.0.0.1: started" in ctx.log.lines)  # type: ignore[attr-defined]
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert ctx.partial is not None and ctx.partial["stdout"] == "started\n"
    await wait_until(lambda: not any(alive(pid) for pid in pids(tmp_path)))


async def test_a_lost_connection_fails_the_step_and_says_the_command_may_run_on(
    action: SshAction, sshd: Sshd, tmp_path: Path
) -> None:
    ctx = make_ctx()
    step = asyncio.create_task(run(action, sshd, ctx, script=sleeper(tmp_path)))
    await wait_until(lambda: len(pids(tmp_path)) == 2 and "127.0.0.1: started" in ctx.log.lines)  # type: ignore[attr-defined]
    for pid in sshd.sessions():  # the server side of the connection dies
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(ActionError) as err:
        await step
    assert str(err.value) == (
        f"the connection to ssh host 127.0.0.1:{sshd.port} was lost before the command "
        "ended; it may still be running there"
    )
    assert err.value.output["stdout"] == "started\n"
    for pid in pids(tmp_path):  # it did run on: clean up
        os.kill(pid, signal.SIGKILL)
    out = await run(action, sshd, argv=["echo", "again"])  # a new connection
    assert out["stdout"] == "again\n"


# --- pooling --------------------------------------------------------------------------


async def test_steps_of_one_run_share_a_connection(action: SshAction, sshd: Sshd) -> None:
    before = sshd.connections()
    first, second = make_ctx(run_id="run-A"), make_ctx(run_id="run-A", step_id="two")
    await run(action, sshd, first, argv=["true"])
    await asyncio.gather(*(run(action, sshd, second, argv=["true"]) for _ in range(3)))
    assert sshd.connections() - before == 1
    await run(action, sshd, make_ctx(run_id="run-B"), argv=["true"])
    assert sshd.connections() - before == 2
    assert action.pool.open_connections("run-A") == 1
    action.run_ended("run-A")
    assert action.pool.open_connections("run-A") == 0
    await run(action, sshd, make_ctx(run_id="run-B"), argv=["true"])
    assert sshd.connections() - before == 2


async def test_an_idle_connection_is_closed(known_hosts: Path, sshd: Sshd) -> None:
    ssh = SshAction(known_hosts=known_hosts, key_file=sshd.client_key)
    ssh.pool.idle = 0.05
    await run(ssh, sshd, make_ctx(run_id="run-idle"), argv=["true"])
    await wait_until(lambda: ssh.pool.open_connections("run-idle") == 0)
    await ssh.close()


# --- the README -----------------------------------------------------------------------

README = (Path(__file__).parent.parent.parent / "README.md").read_text()


def test_the_readme_ssh_example_validates(tmp_path: Path) -> None:
    (example,) = re.findall(r"```yaml\n(name: restart-web\n.*?)```", README, flags=re.S)
    path = tmp_path / "restart-web.yaml"
    path.write_text(example)
    playbooks, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == [] and len(playbooks) == 1


def test_the_readme_states_the_ssh_limits_in_force() -> None:
    section = README.split("### The ssh action", 1)[1].split("\n## ", 1)[0]
    assert f"KILL {KILL_GRACE:g} s later" in section
    assert f"at most {sshpool.SESSIONS} commands at a time" in section
    assert sshpool.IDLE_CLOSE == 60 and "after a minute unused" in section
    assert f"The first {STREAM_LINES} lines" in section
    assert f"`BATON_SSH_KNOWN_HOSTS`\n  (`{ssh_action.DEFAULT_KNOWN_HOSTS}`)" in section
