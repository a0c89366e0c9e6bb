"""``for_each``: 1,000 ``log`` items with ``parallel: 50`` in one step, through the real
engine on SQLite WAL. The figure is the engine's overhead per item: the run's time less
a one-step ``log`` run's, over the items (a ``log`` action itself costs next to nothing)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.common import FOREACH_ITEMS, FOREACH_PARALLEL, Bench, Timer, figure, heading

ROUNDS = 3


async def bench_for_each(bench: Bench, commits: Callable[[], int]) -> None:
    """``commits()``: the store's commits so far (the engine suite's meter)."""
    await bench.run("foreach-log")  # warm: templates compiled, tables touched
    one = []
    for _ in range(ROUNDS):
        with Timer() as t:
            await bench.run("one-log")
        one.append(t.elapsed)
    walls, units = [], []
    for _ in range(ROUNDS):
        before = commits()
        with Timer() as t:
            await bench.run("foreach-log")
        walls.append(t.elapsed)
        units.append(commits() - before)
    wall, base = statistics.median(walls), statistics.median(one)
    heading(
        f"for_each: {FOREACH_ITEMS} log items, parallel {FOREACH_PARALLEL} "
        f"(median of {ROUNDS} runs)"
    )
    figure("run time", wall * 1000, "ms")
    figure("items/s", FOREACH_ITEMS / wall)
    per_item = max(0.0, wall - base) / FOREACH_ITEMS * 1000
    figure("engine overhead per item", per_item, "ms", target="< 1 ms")
    figure("  commits per run", statistics.median(units))
