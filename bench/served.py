"""What the HTTP suites (bench/slack.py, bench/alerts.py) share: Baton composed as
``baton serve`` composes it on a free port of 127.0.0.1, the client process that sends
the requests (one JSON line asked, one answered), and the figures read off the machine
and the store.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from aiohttp import web

from bot import api
from bot.alerts import chat
from bot.app import Baton, open_baton
from bot.settings import Settings
from bot.slack.front import SlackFront

BACKLOG = 1024  # as `baton serve` listens (bot/app.py, serve)
REPO = Path(__file__).resolve().parent.parent


def settings_in(root: Path, **fields: Any) -> Settings:
    """Settings for a Baton in ``root`` (its database, playbooks and key there), no env
    file and no config; ``fields`` set the rest."""
    return Settings(
        _env_file=None,
        database_url=f"sqlite:///{root / 'baton.db'}",
        playbooks=root / "playbooks",
        key_file=root / "key",
        config=None,
        **fields,
    )


@dataclass
class Composed:
    baton: Baton
    front: SlackFront | None
    url: str  # http://127.0.0.1:{port}


@asynccontextmanager
async def composed(settings: Settings, slack: bool) -> AsyncIterator[Composed]:
    """Baton as ``baton serve`` composes it: the engine, the Slack front end in HTTP mode
    when ``slack``, and Baton's aiohttp server on a free port of 127.0.0.1 with a listen
    backlog of BACKLOG."""
    async with AsyncExitStack() as stack:
        baton = await stack.enter_async_context(open_baton(settings))
        if baton.engine.catalog.problems:
            raise RuntimeError("\n".join(map(str, baton.engine.catalog.problems)))
        front = None
        if slack:  # as `serve` does: alerts and chat rules, the engine drained first
            front = await stack.enter_async_context(
                SlackFront(settings, baton.commands(), baton.alerts, chat.load(settings.config))
            )
            stack.push_async_callback(baton.engine.stop, settings.drain_timeout)
        runner = web.AppRunner(api.create_app(settings, baton, front), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=BACKLOG)
        await site.start()
        port = runner.addresses[0][1]
        yield Composed(baton, front, f"http://127.0.0.1:{port}")


class ClientProcess:
    """A client process (``python -m bench.<module>``, see bench/client.py): it prints
    ``{"ready": true}``, then answers each JSON line written to its stdin with one JSON
    line of its own."""

    def __init__(
        self, process: asyncio.subprocess.Process, name: str, answer_within: float
    ) -> None:
        self.process = process
        self.name = name  # "the Slack client process"
        self.answer_within = answer_within  # seconds, to start or to answer one line

    @classmethod
    async def start(
        cls, module: str, args: list[str], env: dict[str, str], name: str, answer_within: float
    ) -> Self:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, **env},
            limit=2**24,  # one answer line holds every request of a batch
        )
        client = cls(process, name, answer_within)
        try:
            if (await client._read()).get("ready") is not True:
                raise RuntimeError(f"{name} did not start")
        except BaseException:
            await client.close()
            raise
        return client

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(self.answer_within):
            line = await self.process.stdout.readline()
        if not line:
            code = await self.process.wait()
            raise RuntimeError(f"{self.name} exited ({code}); see its stderr")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Write ``request`` as one line; return the line answered."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        return await self._read()

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets; nothing else listens much here), or -1 where /proc/net/netstat is missing."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", -1))
    return -1


async def journal_mode(baton: Baton) -> str:
    """SQLite's journal mode for Baton's store (``wal`` as ``baton serve`` opens it)."""

    def read(conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())

    return await baton.store.read(read)


def run_as_served(bench: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``bench()`` with the collector's thresholds ``baton serve`` sets (bot/app.py,
    serve), then put them back."""
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        asyncio.run(bench())
    finally:
        gc.set_threshold(*thresholds)
