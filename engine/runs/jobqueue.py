"""The job queue workers take steps from: procrastinate 3 in Baton's PostgreSQL database.

One queue per worker label (a step's ``runs_on: dc1`` is a job in queue ``dc1``), one
task (``TASK``) whose only argument is the step's spec (``engine.runs.remote``). Its
tables and functions are installed by revision ``0007_job_queue``, so ``baton db
upgrade`` (and ``baton serve`` at start) covers them.

Procrastinate's stalled-job recovery is not automatic: a worker killed mid-step leaves
its job ``doing`` with a heartbeat that stops. ``stalled`` finds those jobs (the
driver's sweeper asks), ``fail`` closes one so that nobody reports on it any more.

Imported only where a step goes to a worker or a ``baton worker`` starts: procrastinate
takes about half a second to import, which no other command should pay.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import procrastinate
from procrastinate import jobs

from storage.db import normalize_url

TASK = "baton.step"
STALLED_BEATS = 5
"""A worker whose heartbeat is this many heartbeats old is taken for dead."""

log = logging.getLogger(__name__)


def conninfo(database_url: str) -> str:
    """``BATON_DATABASE_URL`` as libpq reads it (the same database, options included)."""
    url = normalize_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def app(database_url: str, *, max_size: int = 4) -> procrastinate.App:
    """A procrastinate app on Baton's database (open it with ``open_async``)."""
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(database_url), min_size=1, max_size=max_size
    )
    return procrastinate.App(connector=connector)


async def defer(queue: procrastinate.App, label: str, spec: dict[str, Any]) -> int:
    """Put a step in the queue of ``label``; returns the job's id."""
    return await queue.configure_task(TASK, queue=label).defer_async(spec=spec)


async def abort(queue: procrastinate.App, job_id: int) -> None:
    """Take a job back: a job nobody took is cancelled, a running one is aborted (its
    worker cancels the step)."""
    try:
        await queue.job_manager.cancel_job_by_id_async(job_id, abort=True)
    except Exception as exc:  # gone already: nothing to stop
        log.debug("job %s: abort not needed (%s)", job_id, exc)


async def fail(queue: procrastinate.App, job_id: int) -> None:
    """Close a job whose worker is gone, so that it is neither taken nor reported on."""
    try:
        await queue.job_manager.finish_job_by_id_async(
            job_id, status=jobs.Status.FAILED, delete_job=False
        )
    except Exception as exc:  # finished meanwhile
        log.debug("job %s: already closed (%s)", job_id, exc)


async def states(queue: procrastinate.App, ids: Iterable[int]) -> dict[int, str]:
    """The status of each job (``todo``, ``doing``, ``failed``...); a job deleted once it
    succeeded is missing."""
    wanted = list(ids)
    if not wanted:
        return {}
    rows = await queue.connector.execute_query_all_async(
        "SELECT id, status::text AS status FROM procrastinate_jobs WHERE id = ANY(%(ids)s)",
        ids=wanted,
    )
    return {int(r["id"]): str(r["status"]) for r in rows}


async def older(queue: procrastinate.App, run_id: str, epoch: int) -> list[int]:
    """The jobs of ``run_id`` not yet ended that were sent under an epoch before
    ``epoch`` (by a driver that has since lost the run)."""
    rows = await queue.connector.execute_query_all_async(
        "SELECT id FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
        "AND task_name = %(task)s AND args->'spec'->>'run_id' = %(run)s "
        "AND (args->'spec'->>'epoch')::int < %(epoch)s",
        task=TASK,
        run=run_id,
        epoch=epoch,
    )
    return [int(r["id"]) for r in rows]


async def stalled(queue: procrastinate.App, heartbeat: float) -> set[int]:
    """The jobs in progress whose worker has not beaten for ``STALLED_BEATS`` heartbeats
    (or whose worker row is gone)."""
    found = await queue.job_manager.get_stalled_jobs(
        task_name=TASK, seconds_since_heartbeat=STALLED_BEATS * heartbeat
    )
    return {int(job.id) for job in found if job.id is not None}
