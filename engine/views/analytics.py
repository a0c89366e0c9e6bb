"""How playbooks do over a window of days (README, "Stats"): runs, success rate and
durations per playbook; per step of one playbook its durations, failures, retries, the
flaky steps (succeeded only after retries) and the critical path; and for runs started
by alerts, the time from the alert to the run's end (MTTR as Baton sees it).

The rows come from ``engine.views.stats_queries`` (one pass over the window's runs, durations
computed by the database); percentiles, counts and the critical path
(``engine.views.critical_path``) are computed here. Every run of the window is counted; the
per-step figures read the playbook's newest 1,000 runs of the window and the critical path
its newest 200, so a busy month costs no more than a sample.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine.errors import BatonError, PlaybookNotFound
from engine.runs.state import RUNS_FINISHED
from engine.views import critical_path as cp
from engine.views import stats_queries as sq
from engine.views.critical_path import CriticalPath
from storage import definitions
from storage.store import Store

if TYPE_CHECKING:
    from engine.runs.engine import Engine

DEFAULT_DAYS = 30
MAX_DAYS = 366
FINISHED = RUNS_FINISHED


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (``p`` in 0..100): a value that occurred, so a p95
    of 20 runs is the 19th fastest."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass(frozen=True)
class Spread:
    """How many values, and their p50 and p95 (seconds)."""

    count: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(len(values), percentile(values, 50), percentile(values, 95))


@dataclass(frozen=True)
class StepStats:
    step: str
    started: int
    duration: Spread
    failure_rate: float
    retry_rate: float  # share of its executions that needed more than one attempt
    flaky: int  # executions that succeeded only after retries


@dataclass(frozen=True)
class PlaybookStats:
    playbook: str
    runs: int
    finished: int
    succeeded: int
    success_rate: float | None  # succeeded / finished
    duration: Spread
    per_day: dict[str, int]  # every day of the window, oldest first
    mttr: Spread  # alert-started runs: the alert's start to the run's end
    steps: list[StepStats] = field(default_factory=list)  # with ``playbook=`` only
    flaky: list[str] = field(default_factory=list)
    critical_path: CriticalPath | None = None


@dataclass(frozen=True)
class Stats:
    since: datetime
    until: datetime
    days: int
    playbooks: list[PlaybookStats]
    mttr: Spread  # over every playbook

    def to_json(self) -> dict[str, Any]:
        """The shape of ``GET /api/stats`` (times as ISO 8601, seconds as numbers)."""
        raw = asdict(self)
        raw["since"], raw["until"] = self.since.isoformat(), self.until.isoformat()
        return raw


def parse_days(text: str | None) -> int:
    """``days`` as typed (``?days=7``, ``stats P 7``); a BatonError saying what fits."""
    if text is None or text == "":
        return DEFAULT_DAYS
    try:
        days = int(text)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise BatonError(f"days must be a whole number from 1 to {MAX_DAYS}, not {text!r}")
    return days


async def of_engine(
    engine: Engine, *, days: int = DEFAULT_DAYS, playbook: str | None = None
) -> Stats:
    """``compute`` up to the engine's now; a playbook neither in the catalog nor in the
    window's runs is a PlaybookNotFound with the closest names."""
    stats = await compute(engine.store, engine.clock.now(), days=days, playbook=playbook)
    if playbook is not None and playbook not in engine.catalog and not stats.playbooks[0].runs:
        raise PlaybookNotFound(playbook, engine.catalog.names())
    return stats


async def compute(
    store: Store, now: datetime, *, days: int = DEFAULT_DAYS, playbook: str | None = None
) -> Stats:
    """The stats of the runs created in the ``days`` before ``now``; with ``playbook``,
    that playbook's alone and in detail (steps, flaky steps, critical path)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}")
    since = now - timedelta(days=days)

    def read(conn: sa.Connection) -> Stats:
        repairs = _grouped(sq.alert_repair_times(conn, since, playbook))
        found = _summaries(conn, since, now, days, playbook, repairs)
        if playbook is not None:
            found = [_detailed(conn, since, summary) for summary in found]
        every = [seconds for times in repairs.values() for seconds in times]
        return Stats(since, now, days, found, Spread.of(every))

    return await store.read(read)


def _summaries(
    conn: sa.Connection,
    since: datetime,
    now: datetime,
    days: int,
    playbook: str | None,
    repairs: dict[str, list[float]],
) -> list[PlaybookStats]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    daily: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    for row in sq.window_runs(conn, since, playbook):
        counts[row.playbook][row.status] += 1
        daily[row.playbook][str(row.day)] += 1
        if row.seconds is not None:
            durations[row.playbook].append(_seconds(row.seconds))
    names = sorted(counts) or ([playbook] if playbook else [])
    return [
        _summary(name, counts[name], _every_day(daily[name], now, days), durations, repairs)
        for name in names
    ]


def _summary(
    name: str,
    counts: Counter[str],
    per_day: dict[str, int],
    durations: dict[str, list[float]],
    repairs: dict[str, list[float]],
) -> PlaybookStats:
    finished = sum(counts.get(s, 0) for s in FINISHED)
    succeeded = counts.get("succeeded", 0)
    return PlaybookStats(
        playbook=name,
        runs=sum(counts.values()),
        finished=finished,
        succeeded=succeeded,
        success_rate=succeeded / finished if finished else None,
        duration=Spread.of(durations.get(name, [])),
        per_day=per_day,
        mttr=Spread.of(repairs.get(name, [])),
    )


def _grouped(rows: Iterable[sa.Row[Any]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.seconds is not None:
            found[row.playbook].append(_seconds(row.seconds))
    return found


def _seconds(value: Any) -> float:
    """A duration the database computed, to the millisecond: SQLite's ``julianday``
    differences carry ~50 microseconds of float noise, PostgreSQL answers a Decimal."""
    return max(round(float(value), 3), 0.0)


def _every_day(counted: Counter[str], now: datetime, days: int) -> dict[str, int]:
    """Runs per UTC day over the whole window, the days without runs as 0 (a chart's
    x axis has no holes)."""
    first = (now - timedelta(days=days)).date()
    span = (now.date() - first).days
    dates = [(first + timedelta(days=i)).isoformat() for i in range(span + 1)]
    return {d: counted.get(d, 0) for d in dates}


def _detailed(conn: sa.Connection, since: datetime, summary: PlaybookStats) -> PlaybookStats:
    """``summary`` with its steps (from its newest runs), flaky steps and critical path."""
    name = summary.playbook
    rows: dict[str, list[sa.Row[Any]]] = defaultdict(list)
    for row in sq.recent_steps(conn, since, name):
        rows[row.step_id].append(row)
    steps = [_step(step, rows[step]) for step in sorted(rows)]
    return dataclasses.replace(
        summary,
        steps=steps,
        flaky=[s.step for s in steps if s.flaky],
        critical_path=_critical_path(conn, since, name),
    )


def _step(step: str, rows: Sequence[sa.Row[Any]]) -> StepStats:
    """One step's executions: a retry is a second attempt; flaky, a success after one."""
    retried = [r for r in rows if r.attempts > 1]
    failed = sum(r.status in ("failed", "interrupted") for r in rows)
    took = [_seconds(r.seconds) for r in rows if r.seconds is not None]
    return StepStats(
        step=step,
        started=len(rows),
        duration=Spread.of(took),
        failure_rate=failed / len(rows),
        retry_rate=len(retried) / len(rows),
        flaky=sum(r.status == "succeeded" for r in retried),
    )


def _critical_path(conn: sa.Connection, since: datetime, playbook: str) -> CriticalPath | None:
    runs = sq.recent_finished(conn, since, playbook)
    found = definitions.fetch(conn, {r.definition_digest for r in runs})
    spans: dict[str, dict[str, cp.Span]] = defaultdict(dict)
    if runs:
        for row in sq.step_spans(conn, [r.id for r in runs]):
            spans[row.run_id][row.step_id] = (row.started_at, row.finished_at)
    return cp.aggregate(
        cp.RunTimes(
            span=(r.started_at, r.finished_at),
            steps=spans[r.id],
            needs=cp.needs_of(found[r.definition_digest]),
        )
        for r in runs
    )
