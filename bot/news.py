"""News for a console: runs it did not start, one line each.

A console shows live progress only of the runs it started. Besides those it announces
the runs started by alerts and schedules, and every run that failed or timed out,
wherever it was driven: another ``baton serve``, a ``baton run``, this process. The runs
of other processes are not on this process's bus, so the news is read from the database,
every ``POLL`` seconds while the console is open: the runs created since the last look
with trigger ``alert`` or ``schedule`` (index ``ix_runs_trigger_created``), and the runs
finished since then that failed (index on ``finished_at``). Each look reads a few rows
along an index, whatever the history. ``quiet`` in the console toggles the news; when
it comes back on, only what happens from then on is told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from storage import tables as t
from storage.errors import StorageError
from storage.store import Store

POLL = 1.0
STARTERS = ("alert", "schedule")
FAILED = ("failed", "timed_out")


LOOKBACK = timedelta(seconds=30)
"""How far before the newest instant seen each look reads again: a run is stamped when it
is made and committed a moment later (by another process, perhaps), so one made before
the last look may appear only after it."""


class News:
    def __init__(self, store: Store, *, watched: Callable[[str], bool] = lambda _: False) -> None:
        self.store = store
        self.watched = watched  # runs whose progress the console shows anyway
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.quiet = False
        self._created: datetime | None = None
        self._finished: datetime | None = None
        # (run, what) -> its instant, for the runs within LOOKBACK of the cursors
        self._told: dict[tuple[str, str], datetime] = {}
        self._generation = 0  # moves on at every `quiet`: a look begun before is dropped

    async def start(self) -> None:
        """From now on: what the database holds already is not news."""
        runs = t.runs.c
        self._created = await self.store.scalar(sa.select(sa.func.max(runs.created_at)))
        self._finished = await self.store.scalar(sa.select(sa.func.max(runs.finished_at)))
        self._told = {}
        await self.look(tell=False)  # the runs at those very instants are not news either

    async def toggle(self) -> str:
        self._generation += 1
        self.quiet = not self.quiet
        if self.quiet:
            return (
                "quiet: runs started by alerts and schedules, and failed runs, are no longer "
                "announced here (`quiet` again to hear of them)"
            )
        await self.start()
        return "announcing runs started by alerts and schedules, and failed runs, again"

    async def watch(self) -> None:
        """Look every ``POLL`` seconds, until cancelled; a database that does not answer
        is tried again at the next look."""
        while True:
            await asyncio.sleep(POLL)
            with contextlib.suppress(StorageError, sa.exc.SQLAlchemyError, OSError):
                await self.look()

    async def look(self, *, tell: bool = True) -> list[str]:
        """One look: queue (and return) the lines of what happened since the last one.
        The cursors are the newest instants seen; the rows at them come back at the next
        look, and are told once."""
        if self.quiet and tell:
            return []
        generation = self._generation
        runs = t.runs.c
        columns = (
            runs.id,
            runs.playbook,
            runs.trigger,
            runs.requested_by,
            runs.status,
            runs.error,
            runs.failed_step,
            runs.created_at,
            runs.finished_at,
        )
        started_q = sa.select(*columns).where(runs.trigger.in_(STARTERS))
        if self._created is not None:
            started_q = started_q.where(runs.created_at >= self._created - LOOKBACK)
        # along the index on finished_at; the status is checked here (an index on status
        # would read every failed run there ever was)
        finished_q = sa.select(*columns).where(runs.finished_at.is_not(None))
        if self._finished is not None:
            finished_q = finished_q.where(runs.finished_at >= self._finished - LOOKBACK)
        started = await self.store.all(started_q)
        finished = await self.store.all(finished_q)
        if generation != self._generation or (self.quiet and tell):
            return []
        said: list[str] = []
        for row in sorted(started, key=lambda r: (r.created_at, r.id)):
            self._created = max(self._created or row.created_at, row.created_at)
            new = (row.id, "started") not in self._told
            self._told[(row.id, "started")] = row.created_at
            if new and not self.watched(row.id):
                said.append(started_line(row))
        for row in sorted(finished, key=lambda r: (r.finished_at, r.id)):
            self._finished = max(self._finished or row.finished_at, row.finished_at)
            new = (row.id, "finished") not in self._told
            self._told[(row.id, "finished")] = row.finished_at
            if new and row.status in FAILED and not self.watched(row.id):
                said.append(failed_line(row))
        cursors = [x for x in (self._created, self._finished) if x is not None]
        if cursors:
            oldest = min(cursors) - LOOKBACK
            self._told = {key: at for key, at in self._told.items() if at >= oldest}
        if not tell:
            return []
        for text in said:
            self.lines.put_nowait(text)
        return said


def started_line(row: Any) -> str:
    by = "an alert" if row.trigger == "alert" else "a schedule"
    return f"» run {row.id}: {row.playbook} started by {by} ({row.requested_by})"


def failed_line(row: Any) -> str:
    """``✗ run ID: PLAYBOOK failed: ERROR`` (the error names the step that failed)."""
    lines = (row.error or "").strip().splitlines()
    why = f": {lines[0]}" if lines else (f" at step {row.failed_step}" if row.failed_step else "")
    return f"✗ run {row.id}: {row.playbook} {row.status.replace('_', ' ')}{why}"
