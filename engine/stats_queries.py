"""The statements behind ``engine.analytics``: every one reads the runs of a window along
an index that begins with what it filters by (``ix_runs_created``,
``ix_runs_playbook_created``, ``ix_runs_trigger_created``), then their steps and alerts by
the run id their keys begin with; no statement reads ``runs`` or ``steps`` end to end
(``tests/integration/test_query_plans.py`` checks the plans). Counts are SQL's; the
durations come back as seconds, computed by the database, for percentiles in Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import tables as t

STEP_SAMPLE = 20_000  # step durations read at most, the newest runs' first
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


def _window_rows(
    since: datetime, playbook: str | None, columns: dict[str, sa.ColumnElement[Any]]
) -> sa.CTE:
    """The window's runs (``columns`` of them) as a MATERIALIZED common table: read first
    along the window's index, grouped after. Grouping the runs table itself by playbook
    tempts SQLite (which keeps no statistics) to walk all of ``ix_runs_playbook_created``,
    the whole history, to save a sort. (SQLite 3.35+, PostgreSQL 12+.)"""
    rows = sa.select(*(col.label(name) for name, col in columns.items()))
    return rows.where(*_window(since, playbook)).cte("window").prefix_with("MATERIALIZED")


def run_counts(conn: sa.Connection, since: datetime, playbook: str | None) -> list[sa.Row[Any]]:
    """(playbook, status, n) of the runs created since ``since``."""
    c = t.runs.c
    w = _window_rows(since, playbook, {"playbook": c.playbook, "status": c.status})
    q = sa.select(w.c.playbook, w.c.status, sa.func.count().label("n"))
    return list(conn.execute(q.group_by(w.c.playbook, w.c.status)).all())


def runs_per_day(conn: sa.Connection, since: datetime, playbook: str | None) -> list[sa.Row[Any]]:
    """(playbook, day, n): runs created per UTC day."""
    c = t.runs.c
    w = _window_rows(since, playbook, {"playbook": c.playbook, "day": day(conn, c.created_at)})
    q = sa.select(w.c.playbook, w.c.day, sa.func.count().label("n"))
    return list(conn.execute(q.group_by(w.c.playbook, w.c.day)).all())


def run_durations(conn: sa.Connection, since: datetime, playbook: str | None) -> list[sa.Row[Any]]:
    """(playbook, seconds) of the finished runs, start to end."""
    c = t.runs.c
    took = seconds(conn, c.finished_at, c.started_at).label("seconds")
    q = sa.select(c.playbook, took).where(
        *_window(since, playbook), c.finished_at.is_not(None), c.started_at.is_not(None)
    )
    return list(conn.execute(q).all())


def step_counts(conn: sa.Connection, since: datetime, playbook: str) -> list[sa.Row[Any]]:
    """Per step of ``playbook``'s runs: how many started, failed, needed more than one
    attempt, and succeeded only after retries (flaky)."""
    s = t.steps.c
    retried = s.attempts > 1
    q = (
        sa.select(
            s.step_id,
            sa.func.count().label("started"),
            sa.func.sum(sa.case((s.status.in_(["failed", "interrupted"]), 1), else_=0)).label(
                "failed"
            ),
            sa.func.sum(sa.case((retried, 1), else_=0)).label("retried"),
            sa.func.sum(sa.case((sa.and_(retried, s.status == "succeeded"), 1), else_=0)).label(
                "flaky"
            ),
        )
        .select_from(t.runs.join(t.steps, s.run_id == t.runs.c.id))
        .where(*_window(since, playbook), s.started_at.is_not(None))
        .group_by(s.step_id)
    )
    return list(conn.execute(q).all())


def step_durations(conn: sa.Connection, since: datetime, playbook: str) -> list[sa.Row[Any]]:
    """(step_id, seconds) of the finished steps of ``playbook``'s newest runs (at most
    STEP_SAMPLE rows: percentiles need a sample, not every row of a busy month)."""
    s, r = t.steps.c, t.runs.c
    took = seconds(conn, s.finished_at, s.started_at).label("seconds")
    q = (
        sa.select(s.step_id, took)
        .select_from(t.runs.join(t.steps, s.run_id == r.id))
        .where(*_window(since, playbook), s.finished_at.is_not(None), s.started_at.is_not(None))
        .order_by(r.created_at.desc())
        .limit(STEP_SAMPLE)
    )
    return list(conn.execute(q).all())


def recent_finished(conn: sa.Connection, since: datetime, playbook: str) -> list[sa.Row[Any]]:
    """The newest finished runs of ``playbook`` (PATH_SAMPLE), with their definitions."""
    r = t.runs.c
    q = (
        sa.select(r.id, r.definition, r.started_at, r.finished_at)
        .where(*_window(since, playbook))
        .order_by(r.created_at.desc())
        .limit(PATH_SAMPLE)
    )
    return [row for row in conn.execute(q).all() if row.finished_at and row.started_at]


def step_spans(conn: sa.Connection, run_ids: list[str]) -> list[sa.Row[Any]]:
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
) -> list[sa.Row[Any]]:
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
