"""The statements behind ``engine.views.analytics``: every one reads the runs of a window along
an index that begins with what it filters by (``ix_runs_created``,
``ix_runs_playbook_created``, ``ix_runs_trigger_created``), then their steps and alerts by
the run id their keys begin with; no statement reads ``runs`` or ``steps`` end to end
(``tests/integration/test_stats_plans.py`` checks the plans). Durations come back as
seconds, computed by the database; percentiles and counts over the rows of one pass are
Python's. What costs more than the window (steps, critical paths) reads a sample: the
newest runs of the window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import tables as t

STEP_RUNS = 1_000  # the newest runs of a playbook whose steps are looked at
PATH_SAMPLE = 200  # the newest finished runs whose critical path is looked at
RECENT_ALERT_RUNS = 10_000  # alert-started runs read at most for their times


def seconds(conn: sa.Connection, end: Any, start: Any) -> sa.ColumnElement[Any]:
    """``end - start`` in seconds, by the database (its own date arithmetic)."""
    if conn.dialect.name == "sqlite":
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    return sa.extract("epoch", end - start)


def day(conn: sa.Connection, column: Any) -> sa.ColumnElement[Any]:
    """The UTC date of a timestamp (``YYYY-MM-DD`` on SQLite, a date on PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        return sa.func.date(column)
    return sa.cast(sa.func.timezone("UTC", column), sa.Date)


def _window(since: datetime, playbook: str | None) -> list[sa.ColumnElement[bool]]:
    found = [t.runs.c.created_at >= since]
    if playbook is not None:
        found.append(t.runs.c.playbook == playbook)
    return found


def window_runs(conn: sa.Connection, since: datetime, playbook: str | None) -> list[t.AnyRow]:
    """(playbook, status, day, seconds) of every run created since ``since``, along the
    window's index: one pass gives the counts, the runs per day and the durations
    (``seconds`` is None while a run is in progress). Counting with GROUP BY would read
    the same rows again for each grouping, and tempts SQLite (which keeps no statistics)
    to walk all of ``ix_runs_playbook_created``, the whole history, to save a sort."""
    c = t.runs.c
    q = sa.select(
        c.playbook,
        c.status,
        day(conn, c.created_at).label("day"),
        seconds(conn, c.finished_at, c.started_at).label("seconds"),
    ).where(*_window(since, playbook))
    return list(conn.execute(q).all())


def recent_steps(conn: sa.Connection, since: datetime, playbook: str) -> list[t.AnyRow]:
    """(step_id, status, attempts, seconds) of the steps that started in ``playbook``'s
    newest STEP_RUNS runs of the window: per-step figures cost a sample, not a month."""
    s, r = t.steps.c, t.runs.c
    newest = (
        sa.select(r.id)
        .where(*_window(since, playbook))
        .order_by(r.created_at.desc())
        .limit(STEP_RUNS)
        .scalar_subquery()
    )
    q = sa.select(
        s.step_id, s.status, s.attempts, seconds(conn, s.finished_at, s.started_at).label("seconds")
    ).where(s.run_id.in_(newest), s.started_at.is_not(None))
    return list(conn.execute(q).all())


def recent_finished(conn: sa.Connection, since: datetime, playbook: str) -> list[t.AnyRow]:
    """The newest finished runs of ``playbook`` (PATH_SAMPLE), with their definitions'
    digests (``storage.definitions``)."""
    r = t.runs.c
    q = (
        sa.select(r.id, r.definition_digest, r.started_at, r.finished_at)
        .where(*_window(since, playbook))
        .order_by(r.created_at.desc())
        .limit(PATH_SAMPLE)
    )
    return [row for row in conn.execute(q).all() if row.finished_at and row.started_at]


def step_spans(conn: sa.Connection, run_ids: list[str]) -> list[t.AnyRow]:
    """(run_id, step_id, started_at, finished_at) of the main steps that ran."""
    s = t.steps.c
    q = sa.select(s.run_id, s.step_id, s.started_at, s.finished_at).where(
        s.run_id.in_(run_ids),
        s.phase == "main",
        s.started_at.is_not(None),
        s.finished_at.is_not(None),
    )
    return list(conn.execute(q).all())


def alert_repair_times(
    conn: sa.Connection, since: datetime, playbook: str | None
) -> list[t.AnyRow]:
    """(playbook, seconds) of finished alert-started runs: from the first alert that
    names the run (when it began firing, else when Baton received it) to the run's end."""
    r, a = t.runs.c, t.alerts.c
    runs = (
        sa.select(r.id, r.playbook, r.finished_at)
        .where(*_window(since, None), r.trigger == "alert", r.finished_at.is_not(None))
        .order_by(r.created_at.desc())
        .limit(RECENT_ALERT_RUNS)
    )
    if playbook is not None:
        runs = runs.where(r.playbook == playbook)
    found = runs.subquery()
    began = sa.func.min(sa.func.coalesce(a.starts_at, a.received_at))
    first = (
        sa.select(a.run_id, began.label("began"))
        .where(a.run_id.in_(sa.select(found.c.id)))
        .group_by(a.run_id)
        .subquery()
    )
    took = seconds(conn, found.c.finished_at, first.c.began).label("seconds")
    q: sa.Select[Any] = sa.select(found.c.playbook, took).join(first, first.c.run_id == found.c.id)
    return list(conn.execute(q).all())
