"""Durable waits, in this process, on SQLite WAL, with the real SchedulerTimers (APScheduler).

Three figures: how late a due timer starts the step after it; the memory (and idle CPU)
of many runs parked in ``wait`` and ``approval``; and how long a restart takes to drive
them all again. ``profile_main`` (run by ``python -m bench profile``) adds cProfile of the
parking and resume paths.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import pstats
import statistics
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import figure, heading, new_engine, open_store, write_playbooks
from engine import events as ev
from engine.runs.engine import Engine
from engine.runs.requests import RunRequest
from engine.timing import SchedulerTimers
from storage import tables as t
from storage.store import Store

WAKE_RUNS = 200
WAKE_FIRST_MS = 1000  # the first deadline, after the run starts
WAKE_SPREAD_MS = 2000  # deadlines spread evenly over this much time after the first
PARKED = int(os.environ.get("BATON_BENCH_PARKED", "10000"))
BATCH = 500  # runs started together with asyncio.gather while parking
IDLE_WINDOW = 2.0
PROFILE_RUNS = int(os.environ.get("BATON_BENCH_PROFILE_RUNS", "2000"))
TOP = 25

PLAYBOOKS = {
    "wake": """\
name: wake
params:
  delay_ms: {required: true}
steps:
  - id: nap
    action: wait
    with: {for: "{{ params.delay_ms }}ms"}
  - id: after
    action: noop
    needs: nap
""",
    "park-wait": """\
name: park-wait
steps:
  - id: nap
    action: wait
    with: {for: 1h}
  - id: after
    action: noop
    needs: nap
""",
    "park-approval": """\
name: park-approval
steps:
  - id: gate
    action: approval
    with: {message: "bench gate"}
  - id: after
    action: noop
    needs: gate
""",
}


def request(playbook: str, **params: Any) -> RunRequest:
    return RunRequest(playbook=playbook, params=params, requested_by="bench", trigger="cli")


def vm_status() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB, from /proc/self/status."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def rss_now() -> float:
    gc.collect()
    return vm_status()["VmRSS"]


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class Meters:
    """What a stretch of work cost: process CPU, the writer thread's CPU and wall time in
    its commits, and the garbage collector's pauses (all generations, and full ones)."""

    def __init__(self, store: Store) -> None:
        self.writer_cpu = 0.0
        self.writer_wall = 0.0
        self.commits = 0
        self.gc_s = 0.0
        self.gc_full = 0
        self._gc_t0 = 0.0
        commit = store._commit

        def metered_commit(conn: Any, batch: Any) -> None:  # runs in the writer thread
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                commit(conn, batch)
            finally:
                self.writer_cpu += time.thread_time() - c0
                self.writer_wall += time.perf_counter() - w0
                self.commits += 1

        store._commit = metered_commit  # type: ignore[method-assign]
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_t0 = time.perf_counter()
        else:
            self.gc_s += time.perf_counter() - self._gc_t0
            self.gc_full += info["generation"] == 2

    def close(self) -> None:
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    def snapshot(self) -> tuple[float, float, int, float, int, float]:
        return (
            self.writer_cpu,
            self.writer_wall,
            self.commits,
            self.gc_s,
            self.gc_full,
            time.process_time(),
        )

    def report(self, since: tuple[float, float, int, float, int, float], wall: float) -> None:
        now = self.snapshot()
        cpu_w, wall_w, commits, gc_s, full, cpu = (b - a for a, b in zip(since, now, strict=True))
        figure("  process CPU / wall (1.0 = one core busy)", cpu / wall)
        figure("  writer thread: CPU in commits / wall", cpu_w / wall)
        figure("  writer thread: wall in commits / wall", wall_w / wall)
        figure("  writer commits (group commits)", f"{int(commits):,}")
        figure("  GC pauses (all generations) / wall", gc_s / wall)
        figure("  full (gen 2) collections", f"{int(full)}")


async def run_statuses(store: Store) -> Counter[str]:
    rows = await store.all(sa.select(t.runs.c.status, sa.func.count()).group_by(t.runs.c.status))
    return Counter({r[0]: int(r[1]) for r in rows})


async def restart(engine: Engine, store: Store, root: Path) -> tuple[Engine, Store]:
    """Stop the engine (parked runs stay parked in the database), close the store, and
    build a new Store and Engine on the same file. The new engine is not started."""
    await engine.stop(drain=0)
    await store.close()
    del engine, store
    gc.collect()
    store = await open_store(root)
    return new_engine(root, store), store


# --- 1. due timer -> next step started ----------------------------------------------------


async def bench_wake(root: Path) -> None:
    store = await open_store(root)
    engine = new_engine(root, store)
    until: dict[str, datetime] = {}
    started: dict[str, tuple[datetime, datetime]] = {}  # run -> (event.at, seen at)

    def watch(event: ev.Event) -> bool:
        # called synchronously in publish: "seen" is when the engine publishes, after
        # the commit of the step's start
        if isinstance(event, ev.StepWaiting) and event.until is not None:
            until[event.run_id] = event.until
        elif isinstance(event, ev.StepStarted) and event.step_id == "after":
            started[event.run_id] = (event.at, datetime.now(UTC))
        return False

    engine.bus.subscribe(watch)
    await engine.start()
    try:
        t0 = time.perf_counter()
        ids = await asyncio.gather(
            *(
                engine.start_run(
                    request("wake", delay_ms=str(WAKE_FIRST_MS + i * WAKE_SPREAD_MS // WAKE_RUNS))
                )
                for i in range(WAKE_RUNS)
            )
        )
        await engine.wait_idle()
        parked_in = time.perf_counter() - t0
        limit = (WAKE_FIRST_MS + WAKE_SPREAD_MS) / 1000 + 30
        ends = await asyncio.wait_for(asyncio.gather(*map(engine.wait_for, ids)), limit)
    finally:
        await engine.stop(drain=5)
        await store.close()
    bad = [s for s in ends if s.value != "succeeded"]
    heading(
        f"due timer -> next step started ({WAKE_RUNS} runs of wait -> noop, deadlines spread "
        f"over {WAKE_SPREAD_MS / 1000:.0f}s)"
    )
    figure("all runs started and parked in", parked_in * 1000, "ms")
    if bad:
        print(f"  {len(bad)} run(s) did not succeed: {Counter(s.value for s in bad)}")
    at_late = [(started[r][0] - until[r]).total_seconds() * 1000 for r in ids if r in started]
    seen_late = [(started[r][1] - until[r]).total_seconds() * 1000 for r in ids if r in started]
    if not at_late:
        print("  no StepStarted seen for the step after the wait")
        return
    figure(
        "deadline -> StepStarted published, median", statistics.median(seen_late), "ms", "< 20 ms"
    )
    figure("deadline -> StepStarted published, p99", percentile(seen_late, 99), "ms")
    figure("deadline -> StepStarted published, max", max(seen_late), "ms")
    figure(
        "deadline -> StepStarted.at (before its commit), median", statistics.median(at_late), "ms"
    )
    figure("deadline -> StepStarted.at, p99", percentile(at_late, 99), "ms")


# --- 2. parked runs: memory, idle CPU; 3. resume after a restart --------------------------


async def park(engine: Engine, n: int, laps: list[float] | None = None) -> list[str]:
    """Start ``n`` runs, half ``wait: 1h``, half ``approval``, in gathered batches; return
    once every one is parked (the engine idle). ``laps``: gets the time of each batch's
    start_run calls (their drivers keep parking in the background meanwhile)."""
    ids: list[str] = []
    for lo in range(0, n, BATCH):
        t0 = time.perf_counter()
        ids += await asyncio.gather(
            *(
                engine.start_run(request("park-wait" if i % 2 else "park-approval"))
                for i in range(lo, min(n, lo + BATCH))
            )
        )
        if laps is not None:
            laps.append(time.perf_counter() - t0)
    await engine.wait_idle()
    return ids


def scheduler_jobs(engine: Engine) -> int | None:
    timers = engine.timers
    if isinstance(timers, SchedulerTimers) and timers._scheduler is not None:
        return len(timers._scheduler.get_jobs())
    return None


async def bench_parked(root: Path, n: int) -> None:
    store = await open_store(root)
    engine = new_engine(root, store)
    meters = Meters(store)
    events = Counter[str]()

    def count(event: ev.Event) -> bool:
        events[type(event).__name__] += 1
        return False

    engine.bus.subscribe(count)
    await engine.start()
    try:
        rss0 = rss_now()
        laps: list[float] = []
        since = meters.snapshot()
        t0 = time.perf_counter()
        await park(engine, n, laps)
        parked_in = time.perf_counter() - t0
        heading(f"{n:,} runs parked (half wait: 1h, half approval)")
        if n != 10_000:
            print("  (count set by BATON_BENCH_PARKED; the target is for 10,000)")
        figure("time to start and park them all", parked_in, "s")
        figure("  per run", parked_in / n * 1000, "ms")
        figure("  runs parked per second", n / parked_in)
        per = max(1, 1000 // BATCH)
        if len(laps) >= 2 * per:
            first, last = sum(laps[:per]), sum(laps[-per:])
            figure("  start_run time, first 1,000 / last 1,000", f"{first:.2f}s / {last:.2f}s")
        meters.report(since, parked_in)
        statuses = await run_statuses(store)
        rss1 = rss_now()
        hwm = vm_status()["VmHWM"]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW)
        cpu = time.process_time() - cpu0
        idle_wall = time.perf_counter() - wall0
        jobs = scheduler_jobs(engine)
        waiting = statuses.get("waiting", 0)
        figure("runs waiting (from the runs table)", f"{waiting:,} of {n:,}")
        if waiting != n:
            print(f"  statuses: {dict(statuses)}")
        figure("APScheduler jobs held", f"{jobs:,}" if jobs is not None else "n/a")
        figure("process RSS with them parked (VmRSS)", rss1, "MB", "< 300 MB")
        figure("  RSS before parking (engine started)", rss0, "MB")
        figure("  RSS growth from parking", rss1 - rss0, "MB")
        figure("  per parked run", (rss1 - rss0) * 1024 / n, "kB")
        figure("  RSS high-water so far (VmHWM)", hwm, "MB")
        figure("  objects tracked by the GC", f"{len(gc.get_objects()):,}")
        figure(
            f"CPU time over {IDLE_WINDOW:.0f}s idle with them parked",
            cpu * 1000,
            "ms",
            "~0 (no busy loop)",
        )
        figure("  as share of one core", cpu / idle_wall * 100, "%")

        meters.close()
        engine, store = await restart(engine, store, root)
        meters = Meters(store)
        engine.bus.subscribe(count)
        rss2 = rss_now()
        events.clear()
        since = meters.snapshot()
        t0 = time.perf_counter()
        await engine.start()
        started_in = time.perf_counter() - t0
        await engine.wait_idle()
        driven_in = time.perf_counter() - t0
        active = len(engine.active_runs)
        heading(f"restart with {n:,} parked runs (new Store + Engine on the same file)")
        figure("engine.start() returned after", started_in, "s")
        figure("all driven again (start + wait_idle)", driven_in, "s", "< 10 s")
        figure("  per run", driven_in / n * 1000, "ms")
        meters.report(since, driven_in)
        rss3 = rss_now()
        jobs = scheduler_jobs(engine)
        figure("runs driven by the new engine", f"{active:,} of {n:,}")
        figure("RunStarted(resumed) events published", f"{events['RunStarted']:,}")
        figure("APScheduler jobs re-armed", f"{jobs:,}" if jobs is not None else "n/a")
        figure("RSS after resume (VmRSS)", rss3, "MB", "< 300 MB")
        figure("  growth from resume (old engine dropped)", rss3 - rss2, "MB")

        row = await store.one(
            sa.select(t.approvals.c.id, t.approvals.c.run_id)
            .where(t.approvals.c.status == "pending")
            .limit(1)
        )
        if row is None:
            print("  no pending approval left to decide")
            return
        t0 = time.perf_counter()
        await engine.decide(row.id, "approver", "approve")
        status = await asyncio.wait_for(engine.wait_for(row.run_id), 30)
        figure(
            f"approve one gate after restart -> run {status.value}",
            (time.perf_counter() - t0) * 1000,
            "ms",
        )
    finally:
        meters.close()
        await engine.stop(drain=0)
        await store.close()


# --- profiles of parking and resuming (python -m bench profile) ---------------------------


class ThreadProfiles:
    """cProfile (thread CPU time) of the event loop thread (what ``profiled`` wraps) and,
    apart, of the store's writer thread (its ``_commit`` calls)."""

    def __init__(self) -> None:
        # CPU time of the profiled thread, not wall: with two threads on one GIL, wall
        # time would charge whatever call waited for the GIL with the other's work
        self.loop = cProfile.Profile(time.thread_time)
        self.writer = cProfile.Profile(time.thread_time)
        self.writer_on = False

    def install(self, store: Store) -> None:
        commit = store._commit

        def profiled_commit(conn: Any, batch: Any) -> None:  # runs in the writer thread
            if not self.writer_on:
                commit(conn, batch)
                return
            self.writer.enable()
            try:
                commit(conn, batch)
            finally:
                self.writer.disable()

        store._commit = profiled_commit  # type: ignore[method-assign]

    async def profiled(self, work: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        self.writer_on = True
        self.loop.enable()
        try:
            await work()
        finally:
            self.loop.disable()
            self.writer_on = False
        return time.perf_counter() - t0


WATCH = [
    "engine/runs/engine.py:start_run",
    "engine/runs/loading.py:prepare",
    "engine/runs/driver.py:_drive",
    "engine/runs/executor.py:_execute",
    "engine/runs/recovery.py:_resume",
    "engine/runs/loading.py:load",
    "engine/runs/recovery.py:_rearm",
    "engine/runs/driver.py:start",
    "engine/playbooks/model.py:from_snapshot",
    "engine/playbooks/model.py:snapshot",
    "engine/runs/state.py:new_steps",
    "engine/secrets.py:with_values",
    "engine/runs/machine.py:apply",
    "engine/runs/dag.py:advance",
    "engine/runs/steptimers.py:set",
    "engine/timing.py:set",
    "apscheduler/schedulers/base.py:add_job",
    "apscheduler/schedulers/base.py:_real_add_job",
    "apscheduler/schedulers/base.py:wakeup",
    "apscheduler/schedulers/asyncio.py:wakeup",
    "apscheduler/schedulers/base.py:_process_jobs",
    "engine/bus.py:publish",
    "storage/store.py:write",
    "storage/store.py:read",
    "storage/store.py:_read",
    "storage/store.py:_commit",
    "asyncio/threads.py:to_thread",
    "sqlalchemy/engine/base.py:execute",
    "sqlalchemy/sql/elements.py:compile",
]


def print_profile(
    title: str, loop: pstats.Stats, writer: pstats.Stats, n: int, wall: float
) -> None:
    from bench.profile import by_category, cumulative

    print(f"\n{title}: {n:,} runs, {wall:.2f}s wall under cProfile ({wall / n * 1e3:.2f} ms/run)")
    for label, stats in (("event loop thread", loop), ("writer thread", writer)):
        heading(f"{title}, {label}: self time by category (us/run)")
        cats = by_category(stats)
        for name, secs in sorted(cats.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<46} {secs / n * 1e6:8.1f}  ({secs / wall * 100:4.1f}% of wall)")
    heading(f"{title}, event loop thread: top {TOP} functions by self time")
    loop.sort_stats("tottime").print_stats(TOP)
    if writer.total_tt > 0.05 * loop.total_tt:  # type: ignore[attr-defined]
        heading(f"{title}, writer thread: top {TOP // 2} functions by self time")
        writer.sort_stats("tottime").print_stats(TOP // 2)
    heading(f"{title}: cumulative time of key functions (us/run; both threads) and calls/run")
    loop_cum, writer_cum = cumulative(loop, WATCH), cumulative(writer, WATCH)
    raw: dict[Any, Any] = loop.stats  # type: ignore[attr-defined]
    for name in WATCH:
        secs = loop_cum[name] + writer_cum[name]
        file_part, _, func = name.rpartition(":")
        calls = sum(v[1] for (f, _l, fn), v in raw.items() if fn == func and f.endswith(file_part))
        if secs:
            print(f"  {name:<46} {secs / n * 1e6:10.1f} us  {calls / n:6.2f} calls")


async def profile_parking_and_resume(root: Path, n: int) -> None:
    store = await open_store(root)
    engine = new_engine(root, store)
    await engine.start()
    prof = ThreadProfiles()
    prof.install(store)
    try:
        await park(engine, BATCH)  # warm caches; not profiled
        wall = await prof.profiled(lambda: park(engine, n))
        print_profile("parking", pstats.Stats(prof.loop), pstats.Stats(prof.writer), n, wall)
        engine, store = await restart(engine, store, root)
        prof = ThreadProfiles()
        prof.install(store)
        total = n + BATCH

        async def resume() -> None:
            await engine.start()
            await engine.wait_idle()

        wall = await prof.profiled(resume)
        print_profile(
            "resume (engine.start + wait_idle)",
            pstats.Stats(prof.loop),
            pstats.Stats(prof.writer),
            total,
            wall,
        )
    finally:
        await engine.stop(drain=0)
        await store.close()


async def memory_of_parked(root: Path, n: int) -> None:
    """Where the memory of ``n`` parked runs goes: tracemalloc, by line, of what parking
    allocated and kept."""
    store = await open_store(root)
    engine = new_engine(root, store)
    await engine.start()
    try:
        await park(engine, BATCH)  # warm: caches, the scheduler, statement cache
        gc.collect()
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        await park(engine, n)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        diff = after.compare_to(before, "lineno")
        total = sum(d.size_diff for d in diff)
        heading(
            f"memory kept by {n:,} parked runs (tracemalloc, Python heap): "
            f"{total / 2**20:.1f} MB, {total / n / 1024:.1f} kB/run; top lines"
        )
        for d in diff[:TOP]:
            frame = d.traceback[0]
            where = f"{_short(frame.filename)}:{frame.lineno}"
            print(f"  {where:<60} {d.size_diff / n:8.0f} B/run  {d.count_diff / n:6.1f} obj/run")
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        await engine.stop(drain=0)
        await store.close()


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def profile_all() -> None:
    with tempfile.TemporaryDirectory(prefix="baton-bench-prof-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        await profile_parking_and_resume(root, PROFILE_RUNS)
    with tempfile.TemporaryDirectory(prefix="baton-bench-mem-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        await memory_of_parked(root, PROFILE_RUNS)


def profile_main() -> None:
    asyncio.run(profile_all())


async def run_all() -> None:
    print("durability benchmarks (SQLite WAL in a temp dir, real Engine + SchedulerTimers)")
    with tempfile.TemporaryDirectory(prefix="baton-bench-wake-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        await bench_wake(root)
    with tempfile.TemporaryDirectory(prefix="baton-bench-park-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        await bench_parked(root, PARKED)


def main() -> None:
    asyncio.run(run_all())
