"""Retention on a big history: prune 100,000 finished runs of 10 steps while ``serve`` runs.

The history is written straight into the tables in bulk (driving 100,000 runs through the
engine would take most of an hour): per run 10 steps, 10 attempts, 2 log lines, a chat
post and an audit row, finished 200 days ago; beside them 1,000 runs of today. Then Baton
is composed as ``baton serve`` composes it with ``BATON_RETENTION=90d``, and its daily
prune is started by hand (it would start a minute after start). While it runs:

- a client process GETs ``/healthz`` one request after another (5 ms apart): its p99
  against the same client on the idle server;
- 10-step runs, one after another, end to end: against the same runs on the idle server.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import chain, figure, heading, pct, write_playbooks
from bench.served import composed, run_as_served, settings_in
from engine.runs.requests import RunRequest
from storage import definitions, schema, sizes
from storage.db import create_engine

RUNS = 100_000
RECENT = 1_000
STEPS = 10
CHUNK = 2_000  # runs per bulk insert transaction


def main() -> None:
    heading(f"prune: {RUNS:,} finished runs of {STEPS} steps, SQLite, while serve runs")
    with tempfile.TemporaryDirectory(prefix="baton-bench-prune-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", {"ten": chain("ten", "log", STEPS)})
        settings = settings_in(root, retention="90d")
        started = time.perf_counter()
        fill(settings.database_url)
        figure("history written in bulk", time.perf_counter() - started, "s")
        run_as_served(lambda: measure(settings))


def fill(url: str) -> None:
    """The history, through the driver's ``executemany`` with the values as SQLite stores
    them (SQLAlchemy's per-value conversion would take minutes for 2.4 million rows)."""
    engine = create_engine(url)
    schema.prepare(engine, upgrade=True)
    old = datetime.now(UTC) - timedelta(days=200)
    new = datetime.now(UTC) - timedelta(hours=1)
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(
            "INSERT INTO definitions (digest, body, used_at) VALUES (?, '{}', ?)",
            (EMPTY, _stamp(new)),
        )
        driver.commit()
        for first in range(0, RUNS + RECENT, CHUNK):
            numbers = range(first, min(first + CHUNK, RUNS + RECENT))
            driver.execute("BEGIN IMMEDIATE")
            for sql, rows in _rows(numbers, old, new):
                driver.executemany(sql, rows)
            driver.execute("COMMIT")
    engine.dispose()


def _insert(table: str, columns: str) -> str:
    names = columns.split()
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


_RUN = _insert(
    "runs",
    "id playbook status attempt params trigger source requested_by definition_digest created_at "
    "started_at finished_at epoch drive_failures",
)
_STEP = _insert(
    "steps",
    "run_id step_id phase position status attempts output started_at finished_at",
)
_ATTEMPT = _insert(
    "attempts",
    "run_id step_id number run_attempt status started_at finished_at output",
)
EMPTY = definitions.digest({})  # the definition of every run written in bulk
_LOG = _insert("run_logs", "run_id step_id at level message")
_POST = _insert("chat_posts", "run_id step_id kind channel ts state created_at")
_AUDIT = _insert("audit", "at actor action target source detail outcome")


def _rows(numbers: range, old: datetime, new: datetime) -> list[tuple[str, list[tuple[Any, ...]]]]:
    runs: list[tuple[Any, ...]] = []
    steps: list[tuple[Any, ...]] = []
    attempts: list[tuple[Any, ...]] = []
    logs: list[tuple[Any, ...]] = []
    posts: list[tuple[Any, ...]] = []
    audit: list[tuple[Any, ...]] = []
    stamps = {when: (_stamp(when), _stamp(when + timedelta(seconds=2))) for when in (old, new)}
    source = json.dumps({"front_end": "api"})
    for n in numbers:
        at, done = stamps[old if n < RUNS else new]
        run = f"r{n:011d}"
        params = json.dumps({"n": n})
        runs.append(
            (run, "ten", "succeeded", 1, params, "api", source, "bench", EMPTY, at, at, done, 0, 0)
        )
        for i in range(STEPS):
            output = json.dumps({"message": f"step {i}"})
            steps.append((run, f"s{i}", "main", i, "succeeded", 1, output, at, done))
            attempts.append((run, f"s{i}", 1, 1, "succeeded", at, done, output))
        logs += [(run, None, at, "info", "started"), (run, None, done, "info", "finished")]
        posts.append((run, "", "card", "C0BENCH", f"{n}.000100", "posted", at))
        audit.append((at, "bench", "run", run, "{}", "{}", "ok"))
    return [
        (_RUN, runs),
        (_STEP, steps),
        (_ATTEMPT, attempts),
        (_LOG, logs),
        (_POST, posts),
        (_AUDIT, audit),
    ]


def _stamp(at: datetime) -> str:
    """A UTC time as Baton's SQLite columns hold it."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def measure(settings: Any) -> None:
    async with composed(settings, slack=False) as served:
        baton = served.baton
        assert baton.retention is not None
        before = await asyncio.to_thread(sizes.measure, baton.store.engine)
        figure("database before", sizes.human(before.bytes))

        idle_ms, _ = await with_healthz(served.url, runs(baton, 20))
        idle_runs = await runs(baton, 20)
        figure("/healthz on the idle server, p99", pct(idle_ms, 99), "ms")
        figure("10-step run on the idle server, median", statistics.median(idle_runs), "ms")

        pruning = asyncio.ensure_future(baton.retention.look())
        busy_runs: list[float] = []

        async def alongside() -> None:
            while not pruning.done():
                busy_runs.extend(await runs(baton, 1))

        busy_ms, _ = await with_healthz(served.url, asyncio.gather(pruning, alongside()))
        report = pruning.result()
        assert report is not None, "another node had pruned today"
        figure(f"prune of {report.counts['runs']:,} runs", report.seconds, "s")
        figure(
            "rows deleted",
            f"{report.total:,} ({report.total / report.seconds:,.0f}/s, "
            f"{report.batches:,} batches)",
        )
        figure(
            "/healthz while pruning, p99 / max",
            f"{pct(busy_ms, 99):.1f} / {max(busy_ms):.1f}",
            "ms",
            "p99 < 50 ms",
        )
        figure(
            f"/healthz requests while pruning ({len(busy_ms):,}), median",
            statistics.median(busy_ms),
            "ms",
        )
        figure(
            f"10-step run while pruning ({len(busy_runs)}), median / p99",
            f"{statistics.median(busy_runs):.1f} / {pct(busy_runs, 99):.1f}",
            "ms",
        )
        after = await asyncio.to_thread(sizes.measure, baton.store.engine)
        kept = next(s.rows for s in after.tables if s.name == "runs")
        figure("runs kept (today's, and the ones run here)", kept)
        figure("database after (pages free for reuse, file not shrunk)", sizes.human(after.bytes))


async def runs(baton: Any, n: int) -> list[float]:
    """``n`` 10-step runs one after another: each one's time end to end (ms)."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        run_id = await baton.engine.start_run(RunRequest(playbook="ten", requested_by="bench"))
        await baton.engine.wait_for(run_id)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def with_healthz(url: str, work: Any) -> tuple[list[float], Any]:
    """``work`` awaited while a client process polls ``url``/healthz; its latencies (ms)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.healthz_client",
        url,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert json.loads(await proc.stdout.readline()) == {"ready": True}
    try:
        result = await work
    finally:
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
    answer = json.loads(await proc.stdout.read())  # one long line: read to the end
    await proc.wait()
    if answer["failed"]:
        figure("/healthz answers other than 200", answer["failed"])
    return answer["ms"], result


if __name__ == "__main__":
    main()
