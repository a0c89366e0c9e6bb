"""The ``shell`` action: run a command (``argv``) or a ``/bin/sh`` script.

Inputs (``with:``)::

    argv: [kubectl, rollout, restart, "deployment/{{ params.service }}"]   # or
    script: |
      kubectl rollout restart "deployment/$PARAM_SERVICE"
    env: {KUBECONFIG: /etc/kube/prod}     # added to the step's environment
    cwd: /srv/deploy                      # optional working directory

Exactly one of ``argv`` and ``script`` is given.

**Parameters reach a script only through the environment.** The playbook's params are
never spliced into a shell string by Baton: every param is exported as
``PARAM_<NAME>`` (name upper-cased, characters other than letters, digits and ``_``
turned into ``_``). Values: booleans become ``true`` / ``false``, ``None`` becomes the
empty string, lists and dicts become JSON (ready for ``jq``), anything else ``str()``.
Quote them in the script (``"$PARAM_SERVICE"``). The same variables are exported in
``argv`` mode too.

**No value is spliced into ``script:``.** A ``{{ }}`` in ``script`` that would put a value
into the shell code as is (``echo {{ params.host }}``, ``{{ steps.x.output.stdout }}``,
anything but a constant) is refused by ``baton validate`` (so a playbook holding one does
not load) and, should one reach run time anyway (a run begun under an older definition),
the step fails without running. Allowed: ``{{ params.host | quote }}`` (``shlex.quote``
of the value as its ``PARAM_*`` variable holds it: one shell word, whatever it contains)
in plain code — not inside quotes, a comment or a here-document, where its quotes would
be mere text (``engine.playbooks.shellscan``) — and control blocks
(``{% if params.force %}--force{% endif %}``) around literal text. What a command does
with the word (``eval``, ``ssh``, ``sh -c``) is its own business, as with ``$PARAM_X``.
Other inputs (``argv``, ``env``, ``cwd``) are templates as usual: each ``argv`` element is
one argument and ``env`` values are variables, so no value there is read as shell code.
An ``argv`` item that is a number or a boolean (``"{{ params.n }}"`` with an int param,
or ``5`` in YAML) becomes its text as a ``PARAM_*`` variable holds it (``5``, ``true``);
an item that is null, a list or a mapping is refused, by validate when it is written in
the playbook and at run time when a template gives it.

**The environment is clean.** The process does not inherit Baton's environment (its
tokens, keys and database URL): it starts from ``ctx.env`` (``engine.actions.stepenv``: ``PATH``,
``HOME``, ``LANG``, ``LANGUAGE``, ``TZ``, ``LC_*`` and the variables ``BATON_STEP_ENV``
allows), then ``PARAM_*``, then ``env:``; later ones win.

``argv`` runs with ``create_subprocess_exec``: each element is one argument, no shell.

The process runs in its own process group with stdin from ``/dev/null``. stdout and
stderr are read concurrently as they come. Each stream is kept in full up to
``FULL_CAP`` (beyond it a ``[... N bytes dropped]`` note) and its last ``TAIL_CAP`` bytes
go into the step output, headed by a marker line when cut; when cut, the full text is
attached to the attempt (``ctx.attach("stdout", ...)``). Text is decoded as UTF-8 with
replacement characters for invalid bytes. A process that runs longer than ``QUIET``
seconds also sends the first ``STREAM_LINES`` lines of its output to the run's log, those
printed so far and then as they come (stderr's as ``(stderr) ...``), masked and gathered
in batches (``engine.actions.streaming``), so the run page, ``logs`` and the console show
a long step as it goes; the output itself is kept whole as above.

Output: ``{"rc": int, "stdout": str, "stderr": str}``. A non-zero exit status fails the
step with the last non-empty stderr line in the message.

When the step is cancelled (step timeout, run cancelled), the whole process group gets
SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds, and the process is reaped before the
cancellation propagates. If background processes keep the output pipes open after the
command itself exited, Baton stops reading after ``DRAIN_GRACE`` seconds (noted in
stderr) rather than waiting for them; they are left running, as in a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from engine.actions import ActionContext, streaming
from engine.errors import ActionError
from engine.playbooks import templating

FULL_CAP = 10 * 1024 * 1024
TAIL_CAP = 64 * 1024
KILL_GRACE = 5.0
DRAIN_GRACE = 2.0
_CHUNK = 64 * 1024
_STREAMS = {1: "stdout", 2: "stderr"}
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")


class OutputBuffer:
    """Collects one stream: its head up to ``full_cap`` bytes and its last ``tail_cap``."""

    def __init__(
        self, full_cap: int = FULL_CAP, tail_cap: int = TAIL_CAP, encoding: str = "utf-8"
    ) -> None:
        self.full_cap = full_cap
        self.encoding = encoding
        self.tail_cap = tail_cap
        self.total = 0
        self._head = bytearray()
        self._tail = bytearray()

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.full_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
        self._tail += data
        if len(self._tail) > 2 * self.tail_cap:  # trim now and then, not on every chunk
            del self._tail[: len(self._tail) - self.tail_cap]

    @property
    def cut(self) -> bool:
        """True when the tail does not hold everything (the full text should be attached)."""
        return self.total > self.tail_cap

    def full_text(self) -> str:
        text = self._head.decode(self.encoding, errors="replace")
        dropped = self.total - len(self._head)
        if dropped > 0:
            text += f"\n[... {dropped} bytes dropped]\n"
        return text

    def tail_text(self) -> str:
        data = bytes(self._tail[-self.tail_cap :])
        omitted = self.total - len(data)
        if omitted <= 0:
            return data.decode(self.encoding, errors="replace")
        skip = 0
        if self.encoding == "utf-8":  # do not start in the middle of a character
            while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
                skip += 1
        omitted += skip
        marker = f"[... {omitted} earlier bytes omitted; full text kept with the attempt]\n"
        return marker + data[skip:].decode(self.encoding, errors="replace")


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """The ``PARAM_<NAME>`` variables for a run's params (see the module docstring)."""
    env: dict[str, str] = {}
    for name, value in params.items():
        key = "PARAM_" + _NOT_IN_NAME.sub("_", str(name)).upper()
        env[key] = templating.shell_text(value)
    return env


def _argument(item: Any) -> Any:
    """Numbers and booleans are arguments as their ``PARAM_*`` text (``5``, ``true``):
    ``argv: [sleep, "{{ params.n }}"]`` with an int param. Anything else but text is
    refused (the error's location names the item)."""
    if isinstance(item, str):
        return item
    if isinstance(item, bool | int | float):
        return templating.shell_text(item)
    kind = "empty (null)" if item is None else f"a {type(item).__name__}"
    if item is None:
        fix = "give a default, or leave the item out with a condition"
    elif isinstance(item, list | tuple):
        fix = "pick one value from it ([0]), join its items into one (| join(',')), or | tojson"
    else:
        fix = "pick one value from it, or turn it into text with | tojson"
    raise ValueError(
        f"the item is {kind}; each argv item is one argument, text or a number: {fix} "
        "(in YAML, quote an item that holds ': ' or braces)"
    )


Argument = Annotated[str, BeforeValidator(_argument)]


class ShellInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    argv: list[Argument] | None = None
    script: str | None = None
    env: dict[str, str] = {}
    cwd: str | None = None

    @model_validator(mode="after")
    def _one_command(self) -> ShellInputs:
        if (self.argv is None) == (self.script is None):
            raise ValueError(
                "give exactly one of 'argv' (a list: program and arguments) "
                "or 'script' (text run by /bin/sh -c)"
            )
        if self.argv is not None and not self.argv:
            raise ValueError("'argv' is empty: give at least the program to run")
        return self


class ShellAction:
    name: ClassVar[str] = "shell"
    Inputs: ClassVar[type[BaseModel]] = ShellInputs
    shell_code_inputs: ClassVar[tuple[str, ...]] = ("script",)

    async def run(self, ctx: ActionContext, inputs: ShellInputs) -> dict[str, Any]:
        argv = inputs.argv if inputs.argv is not None else ["/bin/sh", "-c", inputs.script or ""]
        env = {**ctx.env, **param_env(ctx.params), **inputs.env}
        lines = streaming.LineStream(ctx, quiet=streaming.QUIET)
        try:
            return await _run(ctx, argv, env, inputs.cwd, lines)
        finally:  # the lines not sent yet go, also when the step is cancelled
            await lines.close()


async def _run(
    ctx: ActionContext,
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    lines: streaming.LineStream,
) -> dict[str, Any]:
    # a cancel that lands while the process is being started waits for the start, so
    # the process (and whatever it started already) is killed like any other below
    spawn = asyncio.ensure_future(_start(argv, env, cwd, lines))
    cancelled = False
    try:
        transport, proto = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        cancelled = True
        transport, proto = await spawn
    try:
        try:
            if cancelled:
                raise asyncio.CancelledError
            await proto.exited
        except asyncio.CancelledError:
            try:
                await _terminate(transport, proto)
                await proto.drain()
            finally:  # what it wrote before it died is kept, even if cut short here
                ctx.partial = _output(ctx, proto, transport.get_returncode())
            raise
        await proto.drain()
    finally:
        # closes the pipes even when background processes still hold them open
        _close(transport)
    rc = transport.get_returncode()
    assert rc is not None
    output = _output(ctx, proto, rc)
    ctx.partial = output  # kept should a cancel land while the last lines are sent
    if rc != 0:
        raise ActionError(failure_message(rc, output["stderr"]), output=output)
    return output


def _output(ctx: ActionContext, proto: _Protocol, rc: int | None) -> dict[str, Any]:
    """The step's output from what the process wrote (the full text of a cut stream
    attached to the attempt); ``rc`` None: killed and not reaped."""
    out, err = proto.buffers[1], proto.buffers[2]
    for stream, buf in (("stdout", out), ("stderr", err)):
        if buf.cut:
            ctx.attach(stream, buf.full_text())
    return {"rc": rc, "stdout": out.tail_text(), "stderr": err.tail_text()}


class _Protocol(asyncio.SubprocessProtocol):
    """Feeds stdout (fd 1) and stderr (fd 2) into buffers; tells when the process exited.

    ``Process.wait()`` from ``asyncio.subprocess`` only returns once every pipe is closed,
    which never happens while a background child holds them; this protocol separates the
    two events.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, lines: streaming.LineStream) -> None:
        self.buffers = {1: OutputBuffer(), 2: OutputBuffer()}
        self.lines = lines
        self.exited: asyncio.Future[None] = loop.create_future()
        self._pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.buffers[fd].feed(data)
        self.lines.feed(_STREAMS[fd], data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self._pipes_closed.done():
            self._pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    async def drain(self) -> None:
        """Wait for the rest of the output, at most DRAIN_GRACE once the process exited."""
        done, _ = await asyncio.wait({self._pipes_closed}, timeout=DRAIN_GRACE)
        if not done:
            self.buffers[2].feed(
                b"\n[baton: stopped reading output: background processes still hold the pipes]\n"
            )


async def _start(
    argv: list[str], env: dict[str, str], cwd: str | None, lines: streaming.LineStream
) -> tuple[asyncio.SubprocessTransport, _Protocol]:
    loop = asyncio.get_running_loop()
    try:
        return await loop.subprocess_exec(
            lambda: _Protocol(loop, lines),
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise ActionError(_start_failure(argv[0], cwd, exc)) from None


def _start_failure(program: str, cwd: str | None, exc: OSError) -> str:
    if cwd is not None and exc.filename == cwd:
        return f"cannot use working directory {cwd}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {program}"
    if isinstance(exc, PermissionError):
        return f"permission denied: cannot execute {program}"
    return f"cannot start {program}: {exc.strerror or exc}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # start_new_session: the group id is the child's pid; the group may be gone already
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _terminate(transport: asyncio.SubprocessTransport, proto: _Protocol) -> None:
    """SIGTERM the process group, SIGKILL it after KILL_GRACE; return once the child is reaped."""
    pid = transport.get_pid()
    _signal_group(pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proto.exited), KILL_GRACE)
    except TimeoutError:
        pass
    finally:
        # also reaches members that outlived the leader or ignored SIGTERM
        _signal_group(pid, signal.SIGKILL)
    await proto.exited


def _close(transport: asyncio.SubprocessTransport) -> None:
    if transport.get_returncode() is None:  # only when cleanup itself was interrupted
        _signal_group(transport.get_pid(), signal.SIGKILL)
    transport.close()


def failure_message(rc: int, stderr: str) -> str:
    if rc < 0:
        try:
            message = f"exit status {rc} (killed by {signal.Signals(-rc).name})"
        except ValueError:
            message = f"exit status {rc}"
    else:
        message = f"exit status {rc}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return f"{message}: {last}" if last else message
