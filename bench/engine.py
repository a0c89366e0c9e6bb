"""Engine throughput, latency and memory, in this process, on SQLite WAL."""

from __future__ import annotations

import asyncio
import gc
import resource
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import FAN_OUT, STEPS, Bench, Timer, figure, heading, open_bench
from bench.foreach import bench_for_each
from storage.store import Store

SEQ_RUNS = 20
CONC_RUNS = 50
FAN_RUNS = 10
ROUNDS = 3


@dataclass
class StoreMeter:
    """Counts the store's work: write calls, commits, time the writer thread spends
    committing, and time callers spend awaiting their write."""

    store: Store
    writes: int = 0
    commit_s: float = 0.0
    await_s: float = 0.0
    _orig: dict[str, Any] = field(default_factory=dict)

    def install(self) -> StoreMeter:
        store = self.store
        write, commit = store.write, store._commit

        async def timed_write(*ops: Any) -> list[Any]:
            self.writes += 1
            t0 = time.perf_counter()
            try:
                return await write(*ops)
            finally:
                self.await_s += time.perf_counter() - t0

        def timed_commit(conn: Any, batch: Any) -> None:
            t0 = time.perf_counter()
            try:
                commit(conn, batch)
            finally:
                self.commit_s += time.perf_counter() - t0

        store.write = timed_write  # type: ignore[method-assign]
        store._commit = timed_commit  # type: ignore[method-assign]
        return self

    def snapshot(self) -> tuple[int, int, float, float]:
        return self.writes, self.store.commits, self.commit_s, self.await_s


@dataclass
class Sample:
    wall: float
    steps: int
    writes: int
    commits: int
    commit_s: float
    await_s: float
    events: int


async def measure(
    bench: Bench, meter: StoreMeter, steps: int, body: Callable[[], Awaitable[Any]]
) -> Sample:
    gc.collect()
    w0, c0, cs0, as0 = meter.snapshot()
    e0 = bench.events
    with Timer() as t:
        await body()
    await asyncio.sleep(0)  # let the event consumer catch up before counting
    w1, c1, cs1, as1 = meter.snapshot()
    return Sample(t.elapsed, steps, w1 - w0, c1 - c0, cs1 - cs0, as1 - as0, bench.events - e0)


def _sequential(bench: Bench, playbook: str, runs: int) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        for _ in range(runs):
            await bench.run(playbook)

    return body


def _concurrent(bench: Bench, playbook: str, runs: int) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        await asyncio.gather(*(bench.run(playbook) for _ in range(runs)))

    return body


def _store_lines(s: Sample, per: str = "step") -> None:
    n = s.steps
    figure(f"  store: write calls / commits per {per}", f"{s.writes / n:.2f} / {s.commits / n:.2f}")
    figure(f"  store: writer-thread commit time per {per}", s.commit_s / n * 1000, "ms")
    if s.events:
        figure(f"  events published per {per}", s.events / n)


async def bench_sequential(bench: Bench, meter: StoreMeter, playbook: str, label: str) -> Sample:
    await _sequential(bench, playbook, 2)()  # warm caches (templates, statements)
    s = await measure(bench, meter, SEQ_RUNS * STEPS, _sequential(bench, playbook, SEQ_RUNS))
    heading(f"{SEQ_RUNS} sequential runs of a {STEPS}-step chain, action {label}")
    target = ">= 1,000" if label == "noop" else ""
    figure("steps/s (1 run at a time)", s.steps / s.wall, "", target)
    figure("engine overhead per step (wall / steps)", s.wall / s.steps * 1000, "ms", "<= 1 ms")
    figure("run time (one 50-step run)", s.wall / SEQ_RUNS * 1000, "ms")
    figure("  of which the driver awaits store writes", s.await_s / s.steps * 1000, "ms/step")
    _store_lines(s)
    return s


async def bench_one_step(bench: Bench) -> None:
    await bench.run("one-noop")
    times = []
    for _ in range(50):
        with Timer() as t:
            await bench.run("one-noop")
        times.append(t.elapsed)
    heading("1-step run, start_run -> finished (fixed cost of a run)")
    figure("median latency", statistics.median(times) * 1000, "ms")


async def bench_concurrent(bench: Bench, meter: StoreMeter, playbook: str, label: str) -> Sample:
    await _concurrent(bench, playbook, 5)()
    samples = [
        await measure(bench, meter, CONC_RUNS * STEPS, _concurrent(bench, playbook, CONC_RUNS))
        for _ in range(ROUNDS)
    ]
    s = sorted(samples, key=lambda x: x.wall)[len(samples) // 2]
    heading(
        f"{CONC_RUNS} concurrent runs of a {STEPS}-step chain, action {label} (median of {ROUNDS})"
    )
    target = ">= 3,000" if label == "noop" else ""
    figure("steps/s across all runs", s.steps / s.wall, "", target)
    figure("wall time for all runs", s.wall, "s")
    figure(
        "  steps per group commit",
        s.steps / s.commits if s.commits else 0.0,
    )
    _store_lines(s)
    return s


async def bench_fan(bench: Bench, meter: StoreMeter) -> None:
    await bench.run("fan-noop")
    steps = FAN_OUT + 2
    times = []
    for _ in range(FAN_RUNS):
        s = await measure(bench, meter, steps, lambda: bench.run("fan-noop"))
        times.append(s)
    s = sorted(times, key=lambda x: x.wall)[len(times) // 2]
    heading(f"fan-out/fan-in 1 -> {FAN_OUT} -> 1 ({steps} steps, median of {FAN_RUNS} runs)")
    figure("run time", s.wall * 1000, "ms")
    figure("steps/s", steps / s.wall)
    figure("  commits per run", s.commits)
    _store_lines(s)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench_tracemalloc() -> tuple[float, float]:
    """Python heap peaks (tracemalloc) of the engine: from opening the store and engine,
    and during 50 concurrent chain runs above what was allocated before them. A separate
    pass: tracemalloc slows everything, so no timings are taken here."""
    gc.collect()
    tracemalloc.start()
    try:
        async with open_bench() as bench:
            await _concurrent(bench, "chain-noop", 5)()
            gc.collect()
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            await _concurrent(bench, "chain-noop", CONC_RUNS)()
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, (peak - before) / 2**20


async def run_all() -> None:
    print("engine benchmarks (SQLite WAL in a temp dir, real Engine + SchedulerTimers)")
    rss_start = rss_mb()
    async with open_bench() as bench:
        meter = StoreMeter(bench.store).install()
        await bench_sequential(bench, meter, "chain-noop", "noop")
        await bench_sequential(bench, meter, "chain-log", "log")
        await bench_one_step(bench)
        await bench_concurrent(bench, meter, "chain-noop", "noop")
        await bench_concurrent(bench, meter, "chain-log", "log")
        await bench_fan(bench, meter)
        await bench_for_each(bench, lambda: meter.snapshot()[1])
    rss_peak = rss_mb()
    total, runs = await bench_tracemalloc()
    heading("memory")
    figure("RSS after imports (high-water)", rss_start, "MB")
    figure("RSS high-water after all engine benchmarks", rss_peak, "MB")
    figure(f"tracemalloc peak, engine + store + {CONC_RUNS} concurrent runs", total, "MB")
    figure(f"  of which the {CONC_RUNS} runs (peak above before them)", runs, "MB")


def main() -> None:
    asyncio.run(run_all())
