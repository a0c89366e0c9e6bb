"""100 browsers following a run's live logs: ``GET /runs/{id}/live`` (server-sent events)
read by ``CLIENTS`` clients while the run's one step logs ``LINES`` lines ``EVERY_MS``
apart; the figure is the delay from a line's sending to its arrival, per client per line.
``python -m bench live``; not in the default run.

The server is the real app (``bot.api.create_app`` over ``open_baton``, SQLite WAL) on
127.0.0.1 in this process, with nobody under ``users:``: the dashboard's local person, no
login. The clients are aiohttp in a process of their own (``bench.live_client``). The
step (``bench.live_step:emit``) starts logging once every client has its first event, so
each line is timed on every stream."""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from bench import live_step
from bench.common import figure, heading, latencies, write_playbooks
from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.runs.requests import RunRequest

CLIENTS = 100
LINES = 100
EVERY_MS = 50
WITHIN = 60.0  # seconds the clients may take to connect, and the run to end

PLAYBOOK = textwrap.dedent(f"""\
    name: live
    steps:
      - id: emit
        action: python
        with:
          call: bench.live_step:emit
          args: {{lines: {LINES}, every_ms: {EVERY_MS}}}
    """)


async def _clients(url: str) -> asyncio.subprocess.Process:
    """The client process, once it says every stream is open (or why not)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.live_client",
        url,
        "--clients",
        str(CLIENTS),
        "--timeout",
        str(WITHIN),
        stdout=asyncio.subprocess.PIPE,
        limit=2**24,  # the answer is one line of 10,000 delays
    )
    assert process.stdout is not None
    first = json.loads(await asyncio.wait_for(process.stdout.readline(), WITHIN) or b"{}")
    if not first.get("ready"):
        await process.wait()
        raise RuntimeError(f"the live clients did not all connect: {first.get('errors', first)}")
    return process


async def _follow(baton: Baton, server: TestServer) -> dict[str, Any]:
    """Start the run, connect the clients, let the step log; the clients' answer, with
    ``run_s`` (from the first line to the run's end), ``server_cpu_s`` (this process: engine
    and server, all threads) and ``clients_cpu_s``."""
    run_id = await baton.engine.start_run(
        RunRequest(playbook="live", params={}, requested_by="bench", trigger="cli")
    )
    process = await _clients(str(server.make_url(f"/runs/{run_id}/live")))
    cpu, wall = time.process_time(), time.perf_counter()
    live_step.GO.set()
    status = await asyncio.wait_for(baton.engine.wait_for(run_id), WITHIN)
    if status.value != "succeeded":
        raise RuntimeError(f"run {run_id} ended {status.value}")
    server_cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert process.stdout is not None
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(process.stdout.readline(), WITHIN))
    await process.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client process, ended
    return {
        **answer,
        "server_cpu_s": server_cpu,
        "run_s": wall,
        "clients_cpu_s": children.ru_utime + children.ru_stime,
    }


async def _suite(root: Path) -> None:
    write_playbooks(root / "playbooks", {"live": PLAYBOOK})
    settings = Settings(
        database_url=f"sqlite:///{root / 'live.db'}",
        playbooks=root / "playbooks",
        key_file=root / "key",
    )
    async with open_baton(settings) as baton:
        server = TestServer(api.create_app(settings, baton), host="127.0.0.1")
        await server.start_server()
        try:
            answer = await _follow(baton, server)
        finally:
            await server.close()
    if answer["errors"]:
        raise RuntimeError(f"live clients failed: {answer['errors'][:3]}")
    short = [n for n in answer["lines"] if n != LINES]
    figure("clients that saw every line", CLIENTS - len(short), f"of {CLIENTS}")
    if short:
        raise RuntimeError(f"{len(short)} clients missed lines (saw {min(short)} at least)")
    ms: list[float] = answer["delays_ms"]
    latencies("line -> client", f"{len(ms):,} deliveries", ms, "< 500 ms")
    figure("  mean", statistics.fmean(ms), "ms")
    figure(
        f"the run, first line to end ({LINES * EVERY_MS / 1000:.0f} s unloaded)",
        answer["run_s"],
        "s",
    )
    figure("  CPU meanwhile: this process (engine, server)", answer["server_cpu_s"], "s")
    figure("  the clients' process (its whole life)", answer["clients_cpu_s"], "s")


def main() -> None:
    heading(
        f"Live logs: {CLIENTS} SSE clients of GET /runs/ID/live, {LINES} log lines "
        f"{EVERY_MS} ms apart (delay from a line's sending to each client)"
    )
    with tempfile.TemporaryDirectory(prefix="baton-bench-live-") as tmp:
        asyncio.run(_suite(Path(tmp)))


if __name__ == "__main__":
    main()
