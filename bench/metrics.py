"""``python -m bench metrics``: what ``GET /metrics`` costs with 50 playbooks, and what
the analytics cost beside 100,000 finished runs (not in the default run: filling the
database takes about a minute).

1. Baton composed as ``baton serve`` composes it (bench/served.py) with 50 playbooks of
   three steps, each run once (so that every playbook has its label sets), then
   ``GET /metrics`` asked back to back over HTTP. Target: < 50 ms.
2. One real 10-step run copied 100,000 times by the database (bench/history.py's
   ``fill``: 20 playbooks, a run every 37 s, so the 30-day window holds ~70,000 runs),
   then ``engine.views.analytics`` over 30 days: all playbooks, and one in detail.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Timer, chain, figure, heading, pct, write_playbooks
from bench.history import fill, ten_step_runs
from bench.served import composed, settings_in
from engine.runs.requests import RunRequest
from engine.views import analytics
from storage import tables as t
from storage.store import Store

PLAYBOOKS = 50
SCRAPES = 200
RUNS = 100_000
REPEAT = 5


async def scrapes(root: Path) -> None:
    playbooks = {f"pb-{i}": chain(f"pb-{i}", "log", 3) for i in range(PLAYBOOKS)}
    write_playbooks(root / "playbooks", playbooks)
    async with composed(settings_in(root), slack=False) as served:
        engine = served.baton.engine
        for i in range(PLAYBOOKS):
            run_id = await engine.start_run(RunRequest(f"pb-{i}", {}, "bench", "api"))
            await engine.wait_for(run_id)
        times, size = [], 0
        async with aiohttp.ClientSession() as session:
            for _ in range(SCRAPES):
                with Timer() as tm:
                    async with session.get(served.url + "/metrics") as resp:
                        size = len(await resp.read())
                times.append(tm.elapsed * 1000)
    heading(f"GET /metrics, {PLAYBOOKS} playbooks run once each ({size:,} bytes)")
    figure("median", statistics.median(times), "ms")
    figure("p99 / worst", f"{pct(times, 99):.1f} / {max(times):.1f}", "ms", "< 50 ms")


async def stats(root: Path) -> None:
    url = f"sqlite:///{root / 'stats.db'}"
    write_playbooks(root / "playbooks", {"ten": chain("ten", "log", 10)})
    _, template = await ten_step_runs(root, url, 1)
    started = time.perf_counter()
    fill(url, template, RUNS)
    heading(f"analytics beside {RUNS:,} finished runs of 10 steps (SQLite)")
    figure("filling the database", time.perf_counter() - started, "s")
    store = Store(url)
    await store.open()
    try:
        for label, playbook in (("all playbooks", None), ("one playbook, in detail", "pb-1")):
            times = []
            for _ in range(REPEAT):
                with Timer() as tm:
                    found = await analytics.compute(store, t.now(), playbook=playbook)
                times.append(tm.elapsed * 1000)
            runs = sum(pb.runs for pb in found.playbooks)
            figure(f"{label} ({runs:,} runs in the window)", statistics.median(times), "ms")
    finally:
        await store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scrapes(Path(tmp)))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(stats(Path(tmp)))


if __name__ == "__main__":
    main()
