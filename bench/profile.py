"""cProfile of the sequential no-op chain, the event loop and the writer thread apart,
with the cost per step sorted into store, templating, pydantic, events and the rest; then
(bench/durability.py) of parking and resuming runs, and where parked runs' memory goes."""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import time
from collections import defaultdict
from typing import Any

from bench.common import STEPS, heading, open_bench

RUNS = 10
TOP = 25

# (category, substrings of "file:function"), first match wins
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("sqlite3 C calls", ("sqlite3.", "_sqlite3")),
    ("sqlalchemy (compile, execute, results)", ("sqlalchemy/",)),
    (
        "templating (jinja2 + engine.playbooks.templating)",
        ("jinja2/", "engine/playbooks/templating.py", "markupsafe"),
    ),
    ("pydantic validation / dump", ("pydantic", "engine/playbooks/model.py")),
    ("events + bus", ("engine/events.py", "engine/bus.py", "asyncio/queues.py")),
    ("secrets masking", ("engine/secrets.py",)),
    ("timers (apscheduler)", ("apscheduler/", "engine/timing.py")),
    ("json", ("json/",)),
    ("datetime / clock", ("datetime", "engine/timing.py")),
    ("engine logic (runner, state, messages)", ("engine/",)),
    ("store hand-off (queue, threads, futures)", ("storage/", "queue.py", "threading.py")),
    ("asyncio machinery", ("asyncio/", "_asyncio", "Task", "Future", "call_soon")),
    ("idle wait (epoll)", ("poll' of 'select", "select.epoll")),
]


def category(key: tuple[str, int, str]) -> str:
    text = f"{key[0]}:{key[2]}"
    for name, needles in CATEGORIES:
        if any(n in text for n in needles):
            return name
    return "other"


def by_category(stats: pstats.Stats) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for key, (_cc, _nc, tt, _ct, _callers) in raw.items():
        out[category(key)] += tt
    return out


def cumulative(stats: pstats.Stats, names: list[str]) -> dict[str, float]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    out = {}
    for want in names:
        file_part, _, func = want.rpartition(":")
        out[want] = sum(
            ct
            for (f, _l, fn), (_cc, _nc, _tt, ct, _c) in raw.items()
            if fn == func and f.endswith(file_part)
        )
    return out


def report(title: str, stats: pstats.Stats, steps: int, wall: float) -> None:
    heading(f"{title}: self time per step by category (us/step)")
    cats = by_category(stats)
    for name, secs in sorted(cats.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<46} {secs / steps * 1e6:8.1f}  ({secs / wall * 100:4.1f}% of wall)")
    heading(f"{title}: top {TOP} functions by self time")
    stats.sort_stats("tottime").print_stats(TOP)


WATCH = [
    "engine/runs/driver.py:_drive",
    "engine/runs/executor.py:_execute",
    "engine/runs/dag.py:advance",
    "engine/runs/machine.py:apply",
    "engine/runs/batch.py:step_op",
    "engine/runs/batch.py:attempt_op",
    "engine/runs/state.py:context",
    "engine/playbooks/templating.py:render",
    "storage/store.py:write",
    "engine/bus.py:publish",
    "engine/secrets.py:mask",
    "engine/timing.py:cancel",
    "storage/store.py:_commit",
    "storage/store.py:_run",
    "storage/store.py:check",
    "sqlalchemy/engine/base.py:execute",
    "sqlalchemy/sql/elements.py:compile",
    "sqlalchemy/engine/base.py:commit",
]


async def profile_sequential() -> None:
    loop_prof = cProfile.Profile()
    writer_prof = cProfile.Profile()
    async with open_bench() as bench:
        store = bench.store
        commit = store._commit

        def profiled_commit(conn: Any, batch: Any) -> None:  # runs in the writer thread
            writer_prof.enable()
            try:
                commit(conn, batch)
            finally:
                writer_prof.disable()

        store._commit = profiled_commit  # type: ignore[method-assign]
        for _ in range(2):
            await bench.run("chain-noop")
        t0 = time.perf_counter()
        loop_prof.enable()
        for _ in range(RUNS):
            await bench.run("chain-noop")
        loop_prof.disable()
        wall = time.perf_counter() - t0
    steps = RUNS * STEPS
    print(f"profiled: {RUNS} sequential runs x {STEPS} no-op steps, {wall:.2f}s wall")
    print(f"  (under cProfile: {steps / wall:.0f} steps/s, {wall / steps * 1e3:.2f} ms/step)")
    loop_stats = pstats.Stats(loop_prof)
    report("event loop thread", loop_stats, steps, wall)
    writer_stats = pstats.Stats(writer_prof)
    report("writer thread", writer_stats, steps, wall)
    heading("cumulative time of key functions, per step (us/step; both threads)")
    loop_cum = cumulative(loop_stats, WATCH)
    writer_cum = cumulative(writer_stats, WATCH)
    for name in WATCH:
        secs = loop_cum[name] + writer_cum[name]
        if secs:
            print(f"  {name:<46} {secs / steps * 1e6:8.1f}")


async def ceiling() -> None:
    """Diagnostic: the same sequential chain with the store's writes discarded (nothing
    persisted), which bounds what the engine's own logic allows."""
    async with open_bench() as bench:

        async def discard(*ops: Any) -> list[Any]:
            return []

        bench.store.write = discard  # type: ignore[method-assign]
        for _ in range(2):
            await bench.run("chain-noop")
        t0 = time.perf_counter()
        for _ in range(RUNS):
            await bench.run("chain-noop")
        wall = time.perf_counter() - t0
    steps = RUNS * STEPS
    heading("ceiling: sequential chain with writes discarded (diagnostic, not a target)")
    print(
        f"  {steps / wall:,.0f} steps/s, {wall / steps * 1e3:.2f} ms/step (statements still built)"
    )


def main() -> None:
    from bench import durability

    asyncio.run(profile_sequential())
    asyncio.run(ceiling())
    durability.profile_main()
