"""The dashboard's pages as a browser asks for them: ``GET /`` over 100,000 finished runs
(the first page, a filtered page, the page after a cursor) and the page of a 200-step run
(its Graphviz SVG drawn cold, then from the cache). ``python -m bench dashboard``; not in
the default suite (filling the database takes about a minute).

The runs are one real 3-step run copied by the database itself (``bench.history.fill``:
20 playbooks, 50 people, three triggers, one run in ten failed). The pages are served
by the real app (``bot.api.create_app``) in this process and fetched over HTTP."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bench.common import chain, figure, heading, latencies, pct, write_playbooks
from bench.history import fill
from bot import api
from bot.app import open_baton
from bot.dashboard.run import DRAWINGS
from bot.settings import Settings
from engine.runs.requests import RunRequest

RUNS = 100_000
REQUESTS = 40
PLAYBOOKS = {"three": chain("three", "log", 3), "wide": chain("wide", "log", 200)}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def _times(client: TestClient[Any, Any], path: str, count: int = REQUESTS) -> list[float]:
    """``count`` GETs of ``path`` (after 3 to warm up), in ms."""
    out = []
    for i in range(count + 3):
        t0 = time.perf_counter()
        resp = await client.get(path)
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status}")
        if i >= 3:
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def _suite(root: Path) -> None:
    write_playbooks(root / "playbooks", PLAYBOOKS)
    url = f"sqlite:///{root / 'dash.db'}"
    settings = Settings(database_url=url, playbooks=root / "playbooks", key_file=root / "key")
    async with open_baton(settings) as baton:
        request = RunRequest(playbook="three", params={}, requested_by="bench", trigger="cli")
        template = await baton.engine.start_run(request)
        await baton.engine.wait_for(template)
        wide = await baton.engine.start_run(
            RunRequest(playbook="wide", params={}, requested_by="bench", trigger="cli")
        )
        await baton.engine.wait_for(wide)
    t0 = time.perf_counter()
    added = await asyncio.to_thread(fill, url, template, RUNS)
    figure(f"filled {added['runs']:,} runs", time.perf_counter() - t0, "s")
    async with (
        open_baton(settings) as baton,
        TestClient(TestServer(api.create_app(settings, baton))) as client,
    ):
        first = await (await client.get("/?limit=50")).text()
        cursor = re.search(r'id="page-next" href="/\?limit=50&amp;cursor=([^"]+)"', first)
        assert cursor is not None, "the first page has no next page"
        for label, path in (
            ("GET / (50 runs), first page", "/?limit=50"),
            ("GET / after a cursor", f"/?limit=50&cursor={cursor.group(1)}"),
            ("GET /?playbook=pb-10&status=failed", "/?playbook=pb-10&status=failed"),
            ("GET /?who=user-7&since=30d", "/?who=user-7&since=30d"),
        ):
            ms = await _times(client, path)
            latencies(label, f"{RUNS:,} runs", ms, "")
            figure(f"{label} p95 vs target", pct(ms, 95), "ms", "< 150 ms")
        t0 = time.perf_counter()  # the first run page compiles the templates
        await (await client.get(f"/runs/{template}")).read()
        figure("the first run page after start (templates compiled)", _ms(t0), "ms")
        drawn = client.app[DRAWINGS].drawn
        t0 = time.perf_counter()
        page = await (await client.get(f"/runs/{wide}")).text()
        cold = _ms(t0)
        assert page.count('class="node step status-succeeded"') == 200
        assert client.app[DRAWINGS].drawn == drawn + 1  # drawn by dot, not from the cache
        figure("GET /runs/ID of a 200-step run, SVG drawn by dot", cold, "ms", "< 300 ms")
        warm = await _times(client, f"/runs/{wide}", 20)
        figure("the same page, SVG from the cache: median", sorted(warm)[len(warm) // 2], "ms")
        figure("the same page p95", pct(warm, 95), "ms", "< 300 ms")


def main() -> None:
    heading(f"Dashboard: GET / over {RUNS:,} runs, a 200-step run's page")
    with tempfile.TemporaryDirectory(prefix="baton-bench-dash-") as tmp:
        asyncio.run(_suite(Path(tmp)))


if __name__ == "__main__":
    main()
