"""Retention: delete old history in small batches (``baton db prune``, ``BATON_RETENTION``).

What goes, given a cutoff (``Policy.before``):

- **Finished runs**, a *family* at a time: a run started by a step of another run (its
  ``parent_run_id``) is pruned only with its root, and a family goes only when every run
  in it is finished (a status in ``Policy.finished``) and finished before the cutoff. So a
  finished parent whose child still runs stays, and so does the child; a parent's
  ``steps.child_run_id`` never points at a pruned run. With a run go its steps,
  attempts, logs, approval gates and their decisions, inbox commands, chat posts (the
  Slack outbox) and its alert links (``alert_runs``).
- **Alerts linked to a pruned run** go with it when they are older than the cutoff;
  younger ones stay with their run link cleared (``run_id`` NULL): no alert points at a
  run that is gone. A schedule's ``last_run_id`` is cleared the same way.
- **Settled alerts** (any outcome but ``pending``) older than the cutoff, unless the run
  they link to is still there: an alert lives as long as its run.
- **Playbook definitions** (``definitions``, stored once per version for the runs that
  began with it: ``storage.definitions``) that no run refers to any more, once the last
  run began with them before the cutoff. The delete re-checks both on each row as it
  reaches it: a run being started meanwhile moves the definition's ``used_at`` on (or,
  the delete first, stores the row again), so no run ever points at a deleted one.
- **Chat posts and alert links without a run** (alert summaries post under run ``""``),
  older than the cutoff; **processed Slack event ids** older than the cutoff.
- **Worker jobs** (PostgreSQL's job queue, ``procrastinate_jobs``) of a pruned run,
  reported as ``jobs``: the queue deletes a job that succeeded, and keeps one that failed,
  was cancelled or aborted until its run goes.
- **Audit rows** follow their own cutoff (``Policy.audit_before``): who ran and approved
  what outlives the runs.

Every batch is its own short transaction, which re-checks what it deletes under the
write lock (SQLite) or row locks (PostgreSQL's ``FOR UPDATE`` on the runs), so a run
retried between the look and the delete is kept. Batches are sized to hold the database
for about ``HOLD`` (from one family up to ``Policy.batch``: the size halves after a slow
batch and doubles after a quick one), and the pruner pauses between them for as long as a
batch took, and at least ``PAUSE``: SQLite's busy handler retries a waiting writer every
25 ms at most, so a server's commits always get their turn within a pause. Batches walk
each table by its key (keyset), never by ``OFFSET``, so the whole prune reads each table
once.

``dry_run`` counts the same rows in read-only transactions and deletes nothing.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from storage import tables as t

# The tables a prune touches, in the order its report lists them.
TABLES = (
    "runs",
    "steps",
    "attempts",
    "step_items",
    "run_logs",
    "approvals",
    "decisions",
    "run_commands",
    "chat_posts",
    "alert_runs",
    "alerts",
    "slack_events",
    "definitions",
    "audit",
)

# The tables whose rows belong to one run (``run_id``), deleted with it (decisions go
# through their approval).
_BY_RUN = (
    t.approvals,
    t.attempts,
    t.step_items,
    t.steps,
    t.run_logs,
    t.run_commands,
    t.chat_posts,
    t.alert_runs,
)

BATCH = 200  # the most families (or rows of the other tables) one transaction takes
HOLD = 0.020  # seconds a batch aims to hold the database
PAUSE = 0.025  # seconds between two batches, at least


@dataclass(frozen=True)
class Policy:
    """What to prune. ``before``: finished runs, settled alerts and chat bookkeeping older
    than this go (None: none of them); ``audit_before``: audit rows older than this go
    (None: keep the audit). ``finished``: the run statuses that are final."""

    before: datetime | None
    audit_before: datetime | None
    finished: frozenset[str]
    batch: int = BATCH


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    spared: int = 0  # families past the age kept because a run in them is not finished
    unlinked: int = 0  # alerts and schedules whose run link was cleared
    batches: int = 0
    seconds: float = 0.0
    stopped: bool = False  # asked to stop before the end
    error: str | None = None  # why the prune stopped early (the database failed)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, table: str, n: int) -> None:
        self.counts[table] += n


def prune(
    engine: sa.Engine,
    policy: Policy,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> Report:
    """Prune by ``policy``; returns the rows deleted (or, ``dry_run``, that would be)
    per table. ``stop``: set from another thread to end after the current batch. A
    database error ends it early, with the report of what was done and ``error``."""
    pruner = _Pruner(engine, policy, dry_run, stop or threading.Event(), pause)
    started = time.monotonic()
    try:
        pruner.run()
    except sa.exc.DBAPIError as exc:  # what earlier batches deleted stays deleted
        pruner.report.error = str(exc.orig if exc.orig is not None else exc).strip()
    pruner.report.seconds = time.monotonic() - started
    return pruner.report


_r = t.runs.c


class _Pruner:
    def __init__(
        self,
        engine: sa.Engine,
        policy: Policy,
        dry_run: bool,
        stop: threading.Event,
        pause: Callable[[float], None],
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.dry_run = dry_run
        self.stop = stop
        self.pause = pause
        self.jobs = engine.dialect.name == "postgresql"  # the job queue is there
        self.tables = (*TABLES, "jobs") if self.jobs else TABLES
        self.report = Report(counts=dict.fromkeys(self.tables, 0))
        self.size = max(1, min(policy.batch, 50))  # grows to policy.batch, or shrinks
        self.batch = Report()  # the counts of the batch under way, until it commits
        # a dry run's runs that would go, per definition: it deletes none, so it counts
        # the definitions they would leave unused at the end (``_definitions``)
        self.freed: dict[str, int] = {}

    def run(self) -> None:
        before = self.policy.before
        if before is not None:
            self._runs(before)
            self._sweep(t.alerts, t.alerts.c.id, _settled_alerts(before))
            self._sweep(t.chat_posts, t.chat_posts.c.id, _runless(t.chat_posts, before))
            self._sweep(t.alert_runs, t.alert_runs.c.id, _runless(t.alert_runs, before))
            self._sweep(
                t.slack_events, t.slack_events.c.event_id, t.slack_events.c.received_at < before
            )
            self._definitions(before)
        if self.policy.audit_before is not None:
            self._sweep(t.audit, t.audit.c.id, t.audit.c.at < self.policy.audit_before)

    # --- the walk -------------------------------------------------------------------

    def _batches(
        self, key: sa.ColumnElement[Any], where: sa.ColumnElement[bool]
    ) -> Iterable[list[Any]]:
        """Keys of the rows matching ``where``, ``size`` at a time, in key order."""
        after: Any = None
        while not self.stop.is_set():
            query = sa.select(key).where(where).order_by(key).limit(self.size)
            if after is not None:
                query = query.where(key > after)
            with self.engine.connect().execution_options(baton_read=True) as conn:
                keys = list(conn.execute(query).scalars())
            if not keys:
                return
            after = keys[-1]
            yield keys
        self.report.stopped = True

    def _batch(self, work: Callable[[sa.Connection], None]) -> None:
        """``work`` in one transaction: a write one, or a read one for a dry run; then
        the next batch's size, and a pause (none in a dry run: it takes no lock)."""
        started = time.monotonic()
        self.batch = Report(counts=dict.fromkeys(self.tables, 0))
        if self.dry_run:
            with self.engine.connect().execution_options(baton_read=True) as conn, conn.begin():
                work(conn)
        else:
            with self.engine.begin() as conn:
                work(conn)
        took = time.monotonic() - started
        self._count(self.batch)  # committed: a batch that failed counts nothing
        if self.dry_run:
            return
        if took > 2 * HOLD:
            self.size = max(1, self.size // 2)
        elif took < HOLD / 2:
            self.size = min(self.policy.batch, self.size * 2)
        self.pause(max(took, PAUSE))

    def _count(self, batch: Report) -> None:
        for table, n in batch.counts.items():
            self.report.counts[table] += n
        self.report.spared += batch.spared
        self.report.unlinked += batch.unlinked
        self.report.batches += 1

    def _apply(
        self, conn: sa.Connection, table: str, stmt: sa.Delete, args: dict[str, Any] | None = None
    ) -> None:
        """Delete (or count, in a dry run) the rows of ``stmt``."""
        if self.dry_run:
            n = int(conn.execute(_counting(stmt), args).scalar() or 0)
        else:
            n = conn.execute(stmt, args).rowcount
        self.batch.add(table, n)

    # --- runs -----------------------------------------------------------------------

    def _runs(self, before: datetime) -> None:
        for roots in self._batches(_r.id, _old_root(self.policy.finished, before)):
            self._batch(functools.partial(self._families, roots=roots, before=before))

    def _families(self, conn: sa.Connection, roots: list[str], before: datetime) -> None:
        """Delete the families of ``roots`` whose every run is finished and old."""
        finished = self.policy.finished
        lock = not self.dry_run
        rows = list(conn.execute(_RUNS[lock], {"ids": roots}))
        family = {r.id: r.id for r in rows}  # run -> its root
        digests = {r.id: r.definition_digest for r in rows}
        ok = {r.id: _gone_by(r, finished, before) for r in rows}
        frontier = list(family)
        while frontier:
            children = list(conn.execute(_CHILDREN[lock], {"ids": frontier}))
            frontier = []
            for child in children:
                if child.id in family:  # a cycle of links: never follow it twice
                    continue
                root = family[child.parent_run_id]
                family[child.id] = root
                digests[child.id] = child.definition_digest
                ok[root] = ok[root] and _gone_by(child, finished, before)
                frontier.append(child.id)
        doomed = [run for run, root in family.items() if ok[root]]
        if self.dry_run:
            for run in doomed:
                self.freed[digests[run]] = self.freed.get(digests[run], 0) + 1
        self.batch.spared += sum(1 for root in roots if root in ok and not ok[root])
        if doomed:
            self._delete_runs(conn, doomed, before)

    def _delete_runs(self, conn: sa.Connection, ids: Sequence[str], before: datetime) -> None:
        args = {"ids": list(ids), "before": before}
        for name, stmt in _DELETE_RUN:
            self._apply(conn, name, stmt, args)
        if self.jobs:
            self._apply(conn, "jobs", _DELETE_JOBS, args)
        if not self.dry_run:
            for unlink in _UNLINK_RUN:
                self.batch.unlinked += conn.execute(unlink, args).rowcount

    # --- definitions ----------------------------------------------------------------

    def _definitions(self, before: datetime) -> None:
        if not self.dry_run:
            self._sweep(t.definitions, _d.digest, _unused(before))
        elif not self.stop.is_set():
            self._batch(functools.partial(self._count_definitions, before=before))

    def _count_definitions(self, conn: sa.Connection, before: datetime) -> None:
        """A dry run's count: the definitions unused now, and those whose every run the
        prune would delete."""
        n = int(
            conn.execute(_counting(t.definitions.delete().where(_unused(before)))).scalar() or 0
        )
        if self.freed:
            refs = (
                sa.select(sa.func.count())
                .where(_r.definition_digest == _d.digest)
                .scalar_subquery()
            )
            rows = conn.execute(
                sa.select(_d.digest, refs).where(
                    _d.digest.in_(sorted(self.freed)), _d.used_at < before
                )
            )
            n += sum(1 for digest, runs in rows if runs == self.freed[digest])
        self.batch.add("definitions", n)

    # --- everything else ------------------------------------------------------------

    def _sweep(
        self, table: sa.Table, key: sa.ColumnElement[Any], where: sa.ColumnElement[bool]
    ) -> None:
        for keys in self._batches(key, where):
            stmt = table.delete().where(key.in_(keys), where)
            self._batch(functools.partial(self._apply, table=table.name, stmt=stmt))


def _gone_by(run: t.AnyRow, finished: frozenset[str], before: datetime) -> bool:
    """True when ``run`` is finished, and was before ``before``."""
    return run.status in finished and run.finished_at is not None and run.finished_at < before


_IDS: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
_BEFORE: sa.BindParameter[datetime] = sa.bindparam("before")
_FAMILY = sa.select(_r.id, _r.status, _r.finished_at, _r.parent_run_id, _r.definition_digest)
# The runs of a batch and their children, [False] as they are, [True] locked against a
# retry until the batch commits (PostgreSQL; SQLite's write transaction holds it all).
_RUNS = {False: _FAMILY.where(_r.id.in_(_IDS))}
_RUNS[True] = _RUNS[False].with_for_update()
_CHILDREN = {False: _FAMILY.where(_r.parent_run_id.in_(_IDS))}
_CHILDREN[True] = _CHILDREN[False].with_for_update()

# What deleting the runs ``ids`` deletes, in order (statements built once: building one
# costs more than running it). Alerts older than ``before`` go with their run.
_DELETE_RUN: list[tuple[str, sa.Delete]] = [
    (
        "decisions",
        t.decisions.delete().where(
            t.decisions.c.approval_id.in_(
                sa.select(t.approvals.c.id).where(t.approvals.c.run_id.in_(_IDS))
            )
        ),
    ),
    *((table.name, table.delete().where(table.c.run_id.in_(_IDS))) for table in _BY_RUN),
    (
        "alerts",
        t.alerts.delete().where(t.alerts.c.run_id.in_(_IDS), t.alerts.c.received_at < _BEFORE),
    ),
    ("runs", t.runs.delete().where(_r.id.in_(_IDS))),
]
# The worker jobs of the runs ``ids`` that are over (PostgreSQL: procrastinate's table,
# installed by the revision 0007_job_queue; its events go with a job).
_jobs = sa.table("procrastinate_jobs", sa.column("args", JSONB), sa.column("status"))
_DELETE_JOBS = _jobs.delete().where(
    _jobs.c.args["spec"]["run_id"].astext.in_(_IDS),
    sa.cast(_jobs.c.status, sa.Text).not_in(("todo", "doing")),  # an enum of its own
)
# Links to the runs ``ids`` from rows that stay, cleared.
_UNLINK_RUN = [
    t.alerts.update().where(t.alerts.c.run_id.in_(_IDS)).values(run_id=None),
    t.schedules.update().where(t.schedules.c.last_run_id.in_(_IDS)).values(last_run_id=None),
]


def _counting(stmt: sa.Delete) -> sa.Select[Any]:
    """A dry run's count of the rows ``stmt`` would delete."""
    where = stmt.whereclause
    assert where is not None
    return sa.select(sa.func.count()).select_from(stmt.table).where(where)


def _old_root(finished: frozenset[str], before: datetime) -> sa.ColumnElement[bool]:
    """A finished run, old, that no other run started (or whose parent is gone)."""
    parent = t.runs.alias("parent")
    # status wrapped in coalesce: the walk goes by the primary key (``id > after``,
    # ``ORDER BY id``), which reads each run once over the whole prune. Given the status
    # index, SQLite would read every finished run and sort them again for every batch.
    # No parent: NOT EXISTS holds for a NULL parent_run_id too (no run has a NULL id);
    # spelt without an OR, PostgreSQL plans it as an anti-join on the primary key.
    return sa.and_(
        sa.func.coalesce(_r.status, "").in_(sorted(finished)),
        _r.finished_at < before,
        ~sa.exists().where(parent.c.id == _r.parent_run_id),
    )


def _run_gone(run_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """No run ``run_id`` (also true when ``run_id`` is NULL)."""
    return ~sa.exists().where(_r.id == run_id)


_d = t.definitions.c


def _unused(before: datetime) -> sa.ColumnElement[bool]:
    """A definition no run refers to, last used before ``before``."""
    return sa.and_(_d.used_at < before, ~sa.exists().where(_r.definition_digest == _d.digest))


def _settled_alerts(before: datetime) -> sa.ColumnElement[bool]:
    a = t.alerts.c
    return sa.and_(a.outcome != "pending", a.received_at < before, _run_gone(a.run_id))


def _runless(table: sa.Table, before: datetime) -> sa.ColumnElement[bool]:
    """Rows of ``table`` older than ``before`` whose run is gone (or never was)."""
    at = table.c.created_at if table is t.chat_posts else table.c.last_at
    return sa.and_(at < before, _run_gone(table.c.run_id))
