"""The ``ssh`` action: run a command (``argv``) or a ``sh`` script on a remote host.

Inputs (``with:``)::

    host: web1                  # an inventory name, or an address
    user: deploy                # default: the inventory's ansible_user, else Baton's user
    port: 2222                  # default: the inventory's ansible_port, else 22
    argv: [systemctl, restart, "{{ params.service }}"]      # or
    script: |
      systemctl restart "$PARAM_SERVICE"
    env: {RELEASE: "{{ params.release }}"}
    timeout: 5m                 # kills the remote command (any duration); default: none
    sudo: true                  # run it through sudo -n (no password prompt)

Exactly one of ``argv`` and ``script`` is given; ``script`` runs through ``sh -c``. As in
the ``shell`` action, no value is spliced into ``script`` (``baton validate`` refuses a
``{{ }}`` that would): params reach the command as ``PARAM_<NAME>`` variables, set with
``env:`` in front of the command on the host (``engine.fleet.remote``). Baton's own
environment is not sent.

Where to connect: ``ctx.hosts(host)`` (the inventory) gives the address, port, user and
key file of an inventory host; ``with: user/port`` override them. Host keys, the client
key and connection errors: ``engine.fleet.sshconnect``. The connection is shared by the
steps of the run that reach the same host (``engine.fleet.sshpool``).

Output, limits and failure are those of the ``shell`` action: ``{"rc", "stdout",
"stderr"}``, tails of ``TAIL_CAP`` bytes with the full text attached when cut, a
non-zero exit status fails the step with the last stderr line. The first
``STREAM_LINES`` lines of output also go to the run's log as they arrive (``web1: ...``,
``engine.actions.streaming``), so a long command shows progress in chat and in ``logs``.
A ``timeout`` or a cancelled step kills the remote process group, then the step fails
(timed out) or is cancelled with the output so far.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, ClassVar

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.actions import ActionContext
from engine.actions.shell import Argument, failure_message, param_env
from engine.actions.streaming import LineStream
from engine.errors import ActionError
from engine.fleet import remote
from engine.fleet.sshconnect import DEFAULT_PORT, Target
from engine.fleet.sshpool import SshPool
from engine.playbooks import durations

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SshInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    user: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    argv: list[Argument] | None = None
    script: str | None = None
    env: dict[str, str] = {}
    timeout: durations.Timeout | None = None
    sudo: bool = False

    @field_validator("env")
    @classmethod
    def _names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a variable name: use letters, digits and _, "
                    "not starting with a digit"
                )
        return env

    @model_validator(mode="after")
    def _one_command(self) -> SshInputs:
        if (self.argv is None) == (self.script is None):
            raise ValueError(
                "give exactly one of 'argv' (a list: program and arguments) "
                "or 'script' (text run by sh -c on the host)"
            )
        if self.argv is not None and not self.argv:
            raise ValueError("'argv' is empty: give at least the program to run")
        return self


class SshAction:
    """Built with Baton's settings (``BATON_SSH_KNOWN_HOSTS``, ``BATON_SSH_KEY``) by the
    composition root; the entry point alone gives ``~/.ssh/known_hosts`` and no key."""

    name: ClassVar[str] = "ssh"
    Inputs: ClassVar[type[BaseModel]] = SshInputs
    shell_code_inputs: ClassVar[tuple[str, ...]] = ("script",)

    def __init__(
        self, known_hosts: str | Path = DEFAULT_KNOWN_HOSTS, key_file: str | Path | None = None
    ) -> None:
        self.key_file = str(Path(key_file).expanduser()) if key_file else None
        self.pool = SshPool(Path(known_hosts).expanduser())

    def run_ended(self, run_id: str) -> None:
        """Close the run's connections (called when the engine says the run ended)."""
        self.pool.close_run(run_id)

    async def close(self) -> None:
        await self.pool.close()

    def target(self, ctx: ActionContext, inputs: SshInputs) -> Target:
        """Where the step connects: the inventory's host, ``with:`` winning."""
        host = ctx.hosts(inputs.host)
        if host is None:
            return Target(
                inputs.host, inputs.host, inputs.port or DEFAULT_PORT, inputs.user, self.key_file
            )
        return Target(
            host.name,
            host.address,
            inputs.port or host.port or DEFAULT_PORT,
            inputs.user or host.user,
            self.key_file or host.key_file,
        )

    async def run(self, ctx: ActionContext, inputs: SshInputs) -> dict[str, Any]:
        target = self.target(ctx, inputs)
        env = {**param_env(ctx.params), **inputs.env}
        line = remote.command_line(inputs.argv, inputs.script, env, inputs.sudo)
        seconds = inputs.timeout.total_seconds() if inputs.timeout else None
        stream = LineStream(ctx, target.name)
        try:
            async with self.pool.session(ctx.run_id, target) as conn:
                command = remote.Remote(conn, inputs.sudo)
                try:
                    await command.start(line, stream.emit)
                except (asyncssh.Error, OSError) as exc:
                    raise ActionError(
                        f"cannot start the command on ssh host {target.where()}: {exc}"
                    ) from None
                try:
                    finished = await command.wait(seconds)
                except asyncio.CancelledError:
                    ctx.partial = _output(ctx, command.output_so_far())
                    raise
        finally:
            await stream.close()
        output = _output(ctx, finished)
        if finished.timed_out:
            took = durations.format_duration(seconds or 0)
            raise ActionError(
                f"timed out after {took} on ssh host {target.where()}; "
                "the remote command was killed",
                output=output,
            )
        if finished.rc is None:
            raise ActionError(
                f"the connection to ssh host {target.where()} was lost before the command "
                "ended; it may still be running there",
                output=output,
            )
        if finished.rc != 0:
            raise ActionError(failure_message(finished.rc, output["stderr"]), output=output)
        return output


def _output(ctx: ActionContext, finished: remote.Finished) -> dict[str, Any]:
    """The step's output (the full text of a cut stream attached to the attempt)."""
    for name, buf in finished.buffers.items():
        if buf.cut:
            ctx.attach(name, buf.full_text())
    out, err = finished.buffers["stdout"], finished.buffers["stderr"]
    return {"rc": finished.rc, "stdout": out.tail_text(), "stderr": err.tail_text()}
