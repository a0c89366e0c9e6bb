"""SSH connections pooled per run: the steps (and loop items) of one run that reach the
same host as the same user with the same key share one connection.

A connection is closed when its run ends (``close_run``, called by whoever watches the
engine's events), when it has been idle for ``idle`` seconds (a run parked on an approval
for a day holds no connection), and when Baton stops (``close``). Runs never share a
connection: a run's steps see only what the run itself did on the host.

At most ``SESSIONS`` commands run on one connection at a time (OpenSSH's ``MaxSessions``
is 10 by default; the remaining sessions are kept free to kill timed-out commands); more
items wait for a free session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from engine.fleet import sshconnect
from engine.fleet.sshconnect import Target

SESSIONS = 8
IDLE_CLOSE = 60.0  # seconds a connection nobody uses stays open


@dataclass
class _Entry:
    """One pooled connection and who is using it."""

    opening: asyncio.Future[asyncssh.SSHClientConnection]
    sessions: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SESSIONS))
    users: int = 0
    idle_timer: asyncio.TimerHandle | None = None


class SshPool:
    def __init__(self, known_hosts: Path, idle: float = IDLE_CLOSE) -> None:
        self.known_hosts = known_hosts
        self.idle = idle
        self._entries: dict[tuple[str, Target], _Entry] = {}
        self.opened = 0
        """Connections opened so far (each reuse is one fewer)."""

    @contextlib.asynccontextmanager
    async def session(
        self, run_id: str, target: Target
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A connection to ``target`` for one command of run ``run_id``, holding one of its
        sessions while the block runs."""
        key = (run_id, target)
        entry = self._entries.get(key)
        if entry is None or _broken(entry):
            entry = _Entry(asyncio.ensure_future(self._open(target)))
            self._entries[key] = entry
        entry.users += 1
        if entry.idle_timer is not None:
            entry.idle_timer.cancel()
            entry.idle_timer = None
        try:
            try:
                conn = await asyncio.shield(entry.opening)
            except BaseException:
                if self._entries.get(key) is entry and entry.opening.done():
                    del self._entries[key]  # a failed login is retried by the next step
                raise
            async with entry.sessions:
                yield conn
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(key) is entry:
                loop = asyncio.get_running_loop()
                entry.idle_timer = loop.call_later(self.idle, self._expire, key, entry)

    async def _open(self, target: Target) -> asyncssh.SSHClientConnection:
        conn = await sshconnect.connect(target, self.known_hosts)
        self.opened += 1
        return conn

    def _expire(self, key: tuple[str, Target], entry: _Entry) -> None:
        if self._entries.get(key) is entry and entry.users == 0:
            del self._entries[key]
            _close(entry)

    def close_run(self, run_id: str) -> None:
        """Close the connections of run ``run_id`` (it ended)."""
        for key in [k for k in self._entries if k[0] == run_id]:
            _close(self._entries.pop(key))

    async def close(self) -> None:
        """Close every connection and wait until they are closed (Baton stops)."""
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            _close(entry)
        for entry in entries:
            conn = _connection(entry)
            if conn is not None:
                await conn.wait_closed()

    def open_connections(self, run_id: str) -> int:
        """How many connections run ``run_id`` holds now."""
        return sum(1 for k in self._entries if k[0] == run_id)


def _connection(entry: _Entry) -> asyncssh.SSHClientConnection | None:
    """The entry's connection once open; None while opening or when it failed to."""
    opening = entry.opening
    if not opening.done() or opening.cancelled() or opening.exception() is not None:
        return None
    return opening.result()


def _broken(entry: _Entry) -> bool:
    """A connection that failed to open or was closed by the peer: open a new one."""
    if not entry.opening.done():
        return False
    conn = _connection(entry)
    return conn is None or conn.is_closed()


def _close(entry: _Entry) -> None:
    if entry.idle_timer is not None:
        entry.idle_timer.cancel()
    if not entry.opening.done():
        entry.opening.cancel()
    conn = _connection(entry)
    if conn is not None:
        conn.close()
