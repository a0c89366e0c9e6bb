"""The daily prune of ``baton serve`` (``BATON_RETENTION``), once a day across replicas.

A minute after start, and every hour after that, a ``serve`` node asks the database
whether today's prune (the UTC date) is still to do; the first node to ask on a date
claims it with an audit row (``storage.prune_log.claim_day``, under a PostgreSQL advisory
lock) and prunes, in the background, in small batches. The others find the claim and do
nothing until the next date. A node that stops mid-prune stops after its current batch
(its claim says ``stopped``); what it left is old enough for the next day's prune. The
hourly look costs one indexed query, and means a day is not skipped because the replica
that would have pruned it was down at midnight. A claim whose node stopped beating (it
died mid-prune) is marked ``abandoned`` at the next look of another node, which prunes the
day again.

What a prune removes, and how links stay consistent, is ``storage.prune``'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from engine.runs.state import TERMINAL_RUN
from storage import prune, prune_log

if TYPE_CHECKING:
    from engine.runs.engine import Engine

log = logging.getLogger(__name__)

FIRST = timedelta(minutes=1)  # after start: let the start-up's own work go first
EVERY = timedelta(hours=1)
TIMER = "baton-retention"

FINISHED = frozenset(s.value for s in TERMINAL_RUN)
"""Run statuses a prune may delete; every other one (queued, running, waiting) is active."""


def policy(
    now: datetime, age: timedelta | None, audit_age: timedelta | None, batch: int = prune.BATCH
) -> prune.Policy:
    """What a prune at ``now`` deletes: runs (and the rest) older than ``age``, audit rows
    older than ``audit_age`` (None: keep them)."""
    return prune.Policy(
        before=now - age if age is not None else None,
        audit_before=now - audit_age if audit_age is not None else None,
        finished=FINISHED,
        batch=batch,
    )


class Retention:
    """Arms the hourly look on the engine's timers; each look that wins the day prunes."""

    def __init__(self, engine: Engine, age: timedelta, audit_age: timedelta | None) -> None:
        self.engine = engine
        self.age = age
        self.audit_age = audit_age
        self.pruned = 0  # prunes this node made
        self.last: prune.Report | None = None
        self._stop = threading.Event()
        self._running = False
        self._work: asyncio.Future[prune.Report | None] | None = None

    def start(self) -> None:
        self._arm(self.engine.clock.now() + FIRST)

    async def stop(self) -> None:
        """Cancel the next look; a prune under way ends after its current batch, and
        this waits for it (before the store closes)."""
        self._stop.set()
        self.engine.timers.cancel(TIMER)
        if self._work is not None and not self._work.done():
            await asyncio.wait([self._work])

    def _arm(self, at: datetime) -> None:
        if not self._stop.is_set():
            self.engine.timers.set(TIMER, at, self._fire)

    def _fire(self) -> None:
        self._arm(self.engine.clock.now() + EVERY)
        if not self._running:  # a prune longer than an hour is still the same day's
            self._running = True
            self.engine.spawn(self.look(), "retention")

    async def look(self) -> prune.Report | None:
        """Prune if today's prune is still to do; the report, or None."""
        self._work = asyncio.get_running_loop().run_in_executor(None, self._look)
        try:  # shielded: the engine's stop cancels its tasks, the thread goes on
            return await asyncio.shield(self._work)
        finally:
            self._running = False

    def _look(self) -> prune.Report | None:
        db = self.engine.store.engine
        now = self.engine.clock.now()
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        alive_since = now - self.engine.leases.lease  # a claimer silent that long is dead
        row = prune_log.claim_day(db, day, node=self.engine.owner, at=now, alive_since=alive_since)
        if row is None:
            return None
        log.info("retention: pruning runs finished before %s", (now - self.age).isoformat())
        report = prune.prune(db, policy(now, self.age, self.audit_age), stop=self._stop)
        prune_log.record(db, report, actor="baton", target="", at=now, row=row)
        self.pruned += 1
        self.last = report
        deleted = ", ".join(f"{n} {table}" for table, n in report.counts.items() if n)
        log.info(
            "retention: deleted %s in %.1fs%s",
            deleted or "nothing",
            report.seconds,
            " (stopped early)" if report.stopped else "",
        )
        if report.error:
            log.warning("retention: the prune stopped early: %s (tomorrow's goes on)", report.error)
        return report
