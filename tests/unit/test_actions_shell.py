from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.actions import shell, stepenv
from engine.errors import ActionError
from tests.fakes.actx import make_ctx
from tests.fakes.processes import alive, wait_until

PY = sys.executable


async def run_shell(params: dict[str, object] | None = None, **inputs: object) -> dict[str, object]:
    ctx = make_ctx(params=params or {})
    return await shell.ShellAction().run(ctx, shell.ShellInputs.model_validate(inputs))


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def test_argv_numbers_and_booleans_are_arguments_as_text() -> None:
    inputs = shell.ShellInputs.model_validate({"argv": ["echo", 5, 0.5, True, False, "x"]})
    assert inputs.argv == ["echo", "5", "0.5", "true", "false", "x"]
    out = await run_shell(argv=["echo", 3, True])
    assert out["stdout"] == "3 true\n"


async def test_argv_runs_and_captures_both_streams() -> None:
    out = await run_shell(
        argv=[PY, "-c", "import sys; print('hello'); print('warn', file=sys.stderr)"]
    )
    assert out == {"rc": 0, "stdout": "hello\n", "stderr": "warn\n"}


async def test_script_sees_params_as_environment() -> None:
    params = {"service": "api", "dry_run": True, "force": False, "note": None, "n": 3}
    params |= {"my-name": "x", "tags": ["a", "b"]}
    script = (
        'printf "%s|" "$PARAM_SERVICE" "$PARAM_DRY_RUN" "$PARAM_FORCE" "$PARAM_NOTE" "$PARAM_N"'
        ' "$PARAM_MY_NAME" "$PARAM_TAGS"'
    )
    out = await run_shell(params, script=script)
    assert out["stdout"] == 'api|true|false||3|x|["a", "b"]|'


async def test_argv_mode_exports_params_too() -> None:
    out = await run_shell(
        {"service": "api"},
        argv=[PY, "-c", "import os; print(os.environ['PARAM_SERVICE'])"],
    )
    assert out["stdout"] == "api\n"


async def test_env_is_merged_over_baton_environment_and_wins_over_params() -> None:
    script = 'printf "%s %s %s" "$GREETING" "$PARAM_SERVICE" "${PATH:+has-path}"'
    out = await run_shell(
        {"service": "api"},
        script=script,
        env={"GREETING": "hi", "PARAM_SERVICE": "overridden"},
    )
    assert out["stdout"] == "hi overridden has-path"


async def test_cwd(tmp_path: Path) -> None:
    out = await run_shell(script="pwd", cwd=str(tmp_path))
    assert out["stdout"] == f"{tmp_path}\n"  # pytest's tmp_path is already resolved


@pytest.mark.parametrize("mode", ["argv", "script-env"])
async def test_shell_metacharacters_in_params_arrive_literally(tmp_path: Path, mode: str) -> None:
    keep = tmp_path / "keep"
    keep.write_text("still here")
    pwned = tmp_path / "pwned"
    evil = f"$(touch {pwned}); rm -rf {keep}; `touch {pwned}` && echo 'x' | cat"
    if mode == "argv":
        # as the engine would render ``argv: [..., "{{ params.evil }}"]``
        out = await run_shell(argv=[PY, "-c", "import sys; print(sys.argv[1])", evil])
    else:
        out = await run_shell({"evil": evil}, script='printf "%s\\n" "$PARAM_EVIL"')
    assert out["stdout"] == evil + "\n"
    assert not pwned.exists()
    assert keep.read_text() == "still here"


async def test_nonzero_exit_fails_with_last_stderr_line() -> None:
    script = "echo working; echo 'first problem' >&2; echo 'disk full' >&2; echo '  ' >&2; exit 3"
    with pytest.raises(ActionError) as info:
        await run_shell(script=script)
    assert str(info.value) == "exit status 3: disk full"
    assert info.value.output == {
        "rc": 3,
        "stdout": "working\n",
        "stderr": "first problem\ndisk full\n  \n",
    }


async def test_nonzero_exit_without_stderr() -> None:
    with pytest.raises(ActionError, match=r"^exit status 1$"):
        await run_shell(argv=["false"])


async def test_killed_by_signal_names_it() -> None:
    with pytest.raises(ActionError, match=r"^exit status -9 \(killed by SIGKILL\)$") as info:
        await run_shell(script="kill -9 $$")
    assert info.value.output["rc"] == -9


async def test_big_output_keeps_marked_tail_and_attaches_full_text() -> None:
    size = 1024 * 1024
    ctx = make_ctx()
    code = (
        "import sys; data = ''.join(f'{i:07d}\\n' for i in range(131072)); "
        "sys.stdout.write(data); sys.stderr.write(data)"
    )
    out = await shell.ShellAction().run(ctx, shell.ShellInputs(argv=[PY, "-c", code]))
    for stream in ("stdout", "stderr"):
        text = out[stream]
        marker, _, tail = text.partition("\n")
        assert marker == (
            f"[... {size - shell.TAIL_CAP} earlier bytes omitted; full text kept with the attempt]"
        )
        assert len(tail) == shell.TAIL_CAP
        assert tail.endswith("0131071\n")
        full = ctx.attachments[stream]
        assert len(full) == size
        assert full.startswith("0000000\n0000001\n")
        assert full.endswith(tail)


async def test_small_output_is_not_attached() -> None:
    ctx = make_ctx()
    await shell.ShellAction().run(ctx, shell.ShellInputs(script="echo short"))
    assert ctx.attachments == {}


async def test_invalid_utf8_is_replaced() -> None:
    out = await run_shell(argv=[PY, "-c", "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe')"])
    assert out["stdout"] == "ok \ufffd\ufffd"


@pytest.mark.parametrize(
    ("chunks", "full", "tail"),
    [
        pytest.param([b"ab", b"c"], "abc", "abc", id="under-both-caps"),
        pytest.param(
            [b"0123456789"],
            "01234567\n[... 2 bytes dropped]\n",
            "[... 6 earlier bytes omitted; full text kept with the attempt]\n6789",
            id="over-both-caps",
        ),
        pytest.param(
            [b"ab", "é€".encode()],
            "abé€",
            "[... 4 earlier bytes omitted; full text kept with the attempt]\n€",
            id="tail-starts-on-a-character",
        ),
    ],
)
def test_output_buffer(chunks: list[bytes], full: str, tail: str) -> None:
    buf = shell.OutputBuffer(full_cap=8, tail_cap=4)
    for chunk in chunks:
        buf.feed(chunk)
    assert buf.full_text() == full
    assert buf.tail_text() == tail


def test_output_buffer_keeps_the_real_tail_beyond_the_full_cap() -> None:
    buf = shell.OutputBuffer(full_cap=4, tail_cap=3)
    for i in range(100):
        buf.feed(str(i % 10).encode())
    assert buf.cut
    assert buf.full_text() == "0123\n[... 96 bytes dropped]\n"
    assert buf.tail_text().endswith("\n789")


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill-after-grace"])
async def test_cancel_kills_the_whole_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore_term: bool
) -> None:
    monkeypatch.setattr(shell, "KILL_GRACE", 0.3)
    child_file, sh_file = tmp_path / "child.pid", tmp_path / "sh.pid"
    trap = "trap '' TERM; " if ignore_term else ""
    script = f"{trap}sleep 300 & echo $! > {child_file}; echo $$ > {sh_file}; wait"
    task = asyncio.ensure_future(run_shell(script=script))
    await wait_until(lambda: read_pid(child_file) is not None and read_pid(sh_file) is not None)
    child, sh = read_pid(child_file), read_pid(sh_file)
    assert child is not None and sh is not None
    assert alive(child) and alive(sh)
    try:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: not alive(child) and not alive(sh))
    finally:
        for pid in (child, sh):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_a_cancel_while_the_process_starts_still_kills_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel lands while the start is still under way (a busy machine makes that
    window wide): the process is killed, with what it started, once the start is done."""
    child_file, sh_file = tmp_path / "child.pid", tmp_path / "sh.pid"
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    real_start = shell._start

    async def slow_start(*args: Any) -> Any:
        started = await real_start(*args)
        await gate  # the start finishes only once the test let it
        return started

    monkeypatch.setattr(shell, "_start", slow_start)
    script = f"sleep 300 & echo $! > {child_file}; echo $$ > {sh_file}; wait"
    task = asyncio.ensure_future(run_shell(script=script))
    await wait_until(lambda: read_pid(child_file) is not None and read_pid(sh_file) is not None)
    child, sh = read_pid(child_file), read_pid(sh_file)
    assert child is not None and sh is not None
    try:
        task.cancel()
        gate.set_result(None)
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_until(lambda: not alive(child) and not alive(sh))
    finally:
        for pid in (child, sh):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_background_process_holding_the_pipes_does_not_hang_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "DRAIN_GRACE", 0.2)
    pid_file = tmp_path / "bg.pid"
    try:
        out = await run_shell(script=f"sleep 300 & echo $! > {pid_file}; echo started")
        assert out["rc"] == 0
        assert out["stdout"] == "started\n"
        assert "background processes still hold the pipes" in str(out["stderr"])
    finally:
        pid = read_pid(pid_file)
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param(
            {"argv": ["definitely-not-a-command-xyz", "--help"]},
            "command not found: definitely-not-a-command-xyz",
            id="not-found",
        ),
        pytest.param(
            {"argv": ["/etc"]}, "permission denied: cannot execute /etc", id="not-executable"
        ),
        pytest.param(
            {"script": "true", "cwd": "/no/such/dir"},
            "cannot use working directory /no/such/dir: No such file or directory",
            id="bad-cwd",
        ),
    ],
)
async def test_process_that_cannot_start(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionError) as info:
        await run_shell(**inputs)
    assert str(info.value) == message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        pytest.param({}, "exactly one of 'argv'", id="neither"),
        pytest.param({"argv": ["true"], "script": "true"}, "exactly one of 'argv'", id="both"),
        pytest.param({"argv": []}, "'argv' is empty", id="empty-argv"),
        pytest.param({"script": "true", "shell": "bash"}, "Extra inputs", id="unknown-key"),
        pytest.param({"argv": "ls -l"}, "valid list", id="argv-not-a-list"),
        pytest.param({"argv": ["echo", {"a": 1}]}, "argv.1\n.*is a dict", id="argv-dict-item"),
        pytest.param({"argv": ["echo", None]}, "argv.1\n.*empty", id="argv-null-item"),
        pytest.param({"argv": ["echo", [1]]}, "argv.1\n.*is a list", id="argv-list-item"),
    ],
)
def test_inputs_are_validated(inputs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        shell.ShellInputs.model_validate(inputs)


BATON_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/baton",
    "LANG": "C.UTF-8",
    "LC_ALL": "C",
    "TZ": "UTC",
    "KUBECONFIG": "/etc/kube",
    "AWS_REGION": "eu-west-1",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "BATON_API_TOKEN": "api-token",
    "BATON_PLAYBOOKS": "/srv/playbooks",
    "BATON_STEP_ENV": "KUBECONFIG,AWS_*",
    "SLACK_BOT_TOKEN": "xoxb-1",
    "SECRET_DB": "db-password",
    "UNRELATED": "x",
}
CREDENTIALS = frozenset({"BATON_API_TOKEN", "SLACK_BOT_TOKEN", "BATON_DATABASE_URL"})
BASE = {"PATH", "HOME", "LANG", "LC_ALL", "TZ"}


@pytest.mark.parametrize(
    ("allowlist", "extra"),
    [
        pytest.param([], set(), id="nothing-allowed"),
        pytest.param(
            ["KUBECONFIG", "AWS_*"],
            {"KUBECONFIG", "AWS_REGION", "AWS_SECRET_ACCESS_KEY"},
            id="names-and-globs",
        ),
        pytest.param(
            ["*"],
            {"KUBECONFIG", "AWS_REGION", "AWS_SECRET_ACCESS_KEY", "UNRELATED"},
            id="a-glob-skips-baton-namespaces",
        ),
        pytest.param(
            ["BATON_PLAYBOOKS", "SECRET_DB"],
            {"BATON_PLAYBOOKS", "SECRET_DB"},
            id="exact-names-pass",
        ),
        pytest.param(["BATON_API_TOKEN", "SLACK_BOT_TOKEN"], set(), id="credentials-never"),
    ],
)
def test_step_environment(allowlist: list[str], extra: set[str]) -> None:
    env = stepenv.build(BATON_ENV, allowlist, CREDENTIALS)
    assert env == {k: BATON_ENV[k] for k in BASE | extra}


async def test_a_step_starts_from_the_step_environment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_API_TOKEN", "leaked")  # in Baton's environment, not the step's
    ctx = make_ctx(params={"host": "db1"}, env={"PATH": os.environ["PATH"], "KEPT": "yes"})
    script = 'printf "%s|%s|%s|%s" "$KEPT" "$PARAM_HOST" "$EXTRA" "${BATON_API_TOKEN-unset}"'
    inputs = shell.ShellInputs(script=script, env={"EXTRA": "e"})
    out = await shell.ShellAction().run(ctx, inputs)
    assert out["stdout"] == "yes|db1|e|unset"


def test_allowlist_entries_are_names_or_globs() -> None:
    assert stepenv.parse_allowlist(" KUBECONFIG, AWS_*,,") == ("KUBECONFIG", "AWS_*")
    with pytest.raises(ValueError, match="'MY VAR' is not a variable name or a glob"):
        stepenv.parse_allowlist("KUBECONFIG,MY VAR")
