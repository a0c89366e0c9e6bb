"""One command on a remote host over an open SSH connection: how it is written, read,
streamed and killed.

**The command line.** Most servers refuse SSH ``env`` requests, so variables travel as
assignments in the command itself: ``env PARAM_X='...' A='...' sh -c '<script>'`` (every
value through ``shlex.quote``; ``argv`` quoted word by word), behind ``sudo -n`` when the
step asks for it. The values are visible in the host's process list while ``env`` starts
the command, as with any command-line argument.

**Killing it.** Closing the channel does not stop a remote command (sshd only closes its
pipes), so the line starts with ``echo baton-pgid=$$; exec ...``: the login shell that
sshd started as a session leader reports its pid, which is the process group of the
command and of everything it starts, then becomes the command. To stop it Baton runs
``kill -s TERM -- -PGID`` over a second channel (``sudo -n kill`` for a sudo step), then
``KILL`` after ``KILL_GRACE`` seconds. That marker line is Baton's, never output; what a
login script prints before it (a ``.bashrc`` that echoes) is output as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh

from engine.actions.shell import DRAIN_GRACE, KILL_GRACE, OutputBuffer

STREAMS = ("stdout", "stderr")
MARKER = b"baton-pgid="
_MARKER_LOOKOUT = 64 * 1024  # stdout bytes searched for the marker before giving up
Emit = Callable[[str, str], None]
"""Called with (stream, line) for each complete line, as it arrives."""


def command_line(
    argv: Sequence[str] | None, script: str | None, env: Mapping[str, str], sudo: bool
) -> str:
    """The text sshd hands to the login shell (see the module docstring)."""
    words = ["sudo", "-n"] if sudo else []
    if env:
        words += ["env", *(f"{name}={shlex.quote(value)}" for name, value in env.items())]
    if script is not None:
        words += ["sh", "-c", shlex.quote(script)]
    else:
        words += [shlex.quote(arg) for arg in argv or ()]
    return f"echo {MARKER.decode()}$$; exec " + " ".join(words)


class _Session(asyncssh.SSHClientSession[bytes]):
    """Feeds stdout and stderr into buffers and complete lines to ``emit``; learns the
    remote process group from the first stdout line."""

    def __init__(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        self.buffers = {stream: OutputBuffer() for stream in STREAMS}
        self.pgid: asyncio.Future[int | None] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._emit = emit
        self._pending = {stream: b"" for stream in STREAMS}
        self._first = b""  # stdout until the pid line is complete

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        stream = "stderr" if datatype == asyncssh.EXTENDED_DATA_STDERR else "stdout"
        if stream == "stdout" and not self.pgid.done():
            data = self._look_for_marker(data)
        if data:
            self.buffers[stream].feed(data)
            self._lines(stream, data)

    def _look_for_marker(self, data: bytes) -> bytes:
        """Take the marker line out of stdout and return what is output: the lines before
        the marker, and everything after it once it is found."""
        self._first += data
        out = b""
        while not self.pgid.done():
            line, newline, rest = self._first.partition(b"\n")
            if not newline:
                if len(self._first) > _MARKER_LOOKOUT:  # no marker: not a POSIX shell
                    self.pgid.set_result(None)
                    out, self._first = out + self._first, b""
                return out
            self._first = rest
            number = line.removeprefix(MARKER)
            if line.startswith(MARKER) and number.isdigit():
                self.pgid.set_result(int(number))
            else:
                out += line + newline
        out, self._first = out + self._first, b""
        return out

    def _lines(self, stream: str, data: bytes) -> None:
        *lines, self._pending[stream] = (self._pending[stream] + data).split(b"\n")
        for line in lines:
            self._emit(stream, line.decode("utf-8", errors="replace"))

    def exit_status_received(self, status: int) -> None:
        _settle(self.exited)

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        _settle(self.exited)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._first:  # the command ended (or died) before the marker line was complete
            self.buffers["stdout"].feed(self._first)
            self._lines("stdout", self._first)
            self._first = b""
        for stream in STREAMS:
            if self._pending[stream]:
                self._lines(stream, b"\n")
        _settle(self.pgid, None)
        _settle(self.exited)
        _settle(self.closed)


def _settle(future: asyncio.Future[Any], value: Any = None) -> None:
    if not future.done():
        future.set_result(value)


@dataclass
class Finished:
    """What a remote command left: its exit status (None: unknown, the channel was cut)
    and its output buffers."""

    rc: int | None
    buffers: dict[str, OutputBuffer]
    timed_out: bool = False


class Remote:
    """One remote command on ``conn``: ``start``, then ``wait`` (which kills it on timeout
    or cancellation)."""

    def __init__(self, conn: asyncssh.SSHClientConnection, sudo: bool) -> None:
        self.conn = conn
        self.sudo = sudo
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._session: _Session | None = None

    async def start(self, command: str, emit: Emit) -> None:
        session = _Session(emit)
        self._chan, _ = await self.conn.create_session(lambda: session, command, encoding=None)
        self._session = session
        self._chan.write_eof()  # stdin is empty, as /dev/null is for the shell action

    async def wait(self, seconds: float | None) -> Finished:
        """Wait for the command to end; after ``seconds``, or when cancelled, kill its
        process group on the host first."""
        session = self._session
        assert session is not None
        try:
            await asyncio.wait_for(asyncio.shield(session.exited), seconds)
        except TimeoutError:
            await self.kill()
            return Finished(self._rc(), session.buffers, timed_out=True)
        except asyncio.CancelledError:
            await self.kill()
            raise
        await self._drain()
        return Finished(self._rc(), session.buffers)

    def output_so_far(self) -> Finished:
        assert self._session is not None
        return Finished(self._rc(), self._session.buffers)

    async def kill(self) -> None:
        """TERM the remote process group, KILL it after KILL_GRACE, close the channel."""
        session, chan = self._session, self._chan
        assert session is not None and chan is not None
        if session.exited.done():
            await self._drain()
            return
        try:
            pgid = await asyncio.wait_for(asyncio.shield(session.pgid), KILL_GRACE)
        except TimeoutError:
            pgid = None
        if pgid is None:  # the command never reported itself: the channel is all we have
            with contextlib.suppress(asyncssh.Error, OSError):
                chan.send_signal("TERM")
        else:
            await self._signal(pgid, "TERM")
        try:
            await asyncio.wait_for(asyncio.shield(session.exited), KILL_GRACE)
        except TimeoutError:
            if pgid is not None:
                await self._signal(pgid, "KILL")
        finally:
            await self._drain()

    async def _signal(self, pgid: int, name: str) -> None:
        """``kill`` over a second channel; a broken connection leaves nothing to reach."""
        sudo = "sudo -n " if self.sudo else ""
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            await self.conn.run(f"{sudo}kill -s {name} -- -{pgid}", timeout=KILL_GRACE)

    async def _drain(self) -> None:
        """Read what is left, at most DRAIN_GRACE once the command exited (a background
        process may hold the channel open), then close the channel."""
        session, chan = self._session, self._chan
        assert session is not None and chan is not None
        done, _ = await asyncio.wait({session.closed}, timeout=DRAIN_GRACE)
        if not done:
            session.buffers["stderr"].feed(
                b"\n[baton: stopped reading output: background processes still hold the channel]\n"
            )
        chan.close()

    def _rc(self) -> int | None:
        """The exit status; a signal is ``-N`` as for local processes."""
        chan = self._chan
        assert chan is not None
        status = chan.get_exit_status()
        if status is not None and status >= 0:
            return status
        killed = chan.get_exit_signal()
        if killed is not None:
            try:
                return -int(signal.Signals["SIG" + killed[0]])
            except KeyError:
                return -1
        return None
