"""Time for the engine: a clock and timers, with APScheduler 3.11 behind one small module.

Timers are APScheduler ``date`` jobs with explicit ids and ``replace_existing=True``; the
job function is module level and takes ids only. No state lives only in APScheduler: the
deadline of every timer is a column (``steps.wake_at``, ``runs.deadline_at``,
``approvals.deadline_at``), and the engine re-arms timers from those rows at start.
Tests use ``ManualTimers`` with a ``ManualClock`` and move time themselves.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler


SETTLE = 10.0
"""Seconds a stop waits, after the drain, for the work it counts to settle and for the
tasks it cancels (run drivers, the keeper) to end; past them it says what did not, and
stops anyway."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Timers(Protocol):
    def set(self, key: str, at: datetime, fire: Callable[[], None]) -> None: ...
    def cancel(self, key: str) -> None: ...
    def start(self) -> None: ...
    def shutdown(self) -> None: ...


_instances: dict[int, SchedulerTimers] = {}
_ids = itertools.count(1)


async def _fire(instance: int, key: str) -> None:
    """The APScheduler job: looks the callback up by ids and calls it on the loop.
    A coroutine on purpose: ``AsyncIOScheduler`` runs plain functions in a worker thread,
    where the callbacks (which touch asyncio objects and create tasks) must not run."""
    timers = _instances.get(instance)
    if timers is not None:
        timers.fired(key)


class SchedulerTimers:
    """Timers as APScheduler ``date`` jobs. The scheduler is created with the first timer:
    a short ``baton run`` that sets none does not pay for importing it."""

    def __init__(self) -> None:
        self._scheduler: AsyncIOScheduler | None = None
        self._callbacks: dict[str, Callable[[], None]] = {}
        self._id = next(_ids)
        self._started = False

    @property
    def scheduler(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._scheduler = AsyncIOScheduler(timezone=UTC)
            if self._started:
                self._scheduler.start()
        return self._scheduler

    def start(self) -> None:
        _instances[self._id] = self
        self._started = True
        if self._scheduler is not None:
            self._scheduler.start()

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._started = False
        _instances.pop(self._id, None)
        self._callbacks.clear()

    def set(self, key: str, at: datetime, fire: Callable[[], None]) -> None:
        from apscheduler.triggers.date import DateTrigger

        self._callbacks[key] = fire
        self.scheduler.add_job(
            _fire,
            trigger=DateTrigger(run_date=at, timezone=UTC),
            args=[self._id, key],
            id=key,
            replace_existing=True,
            misfire_grace_time=None,  # a deadline that passed still fires, at once
            coalesce=True,
        )

    def cancel(self, key: str) -> None:
        if self._callbacks.pop(key, None) is None:
            return  # never set, or already fired: no job to look up
        job = self.scheduler.get_job(key)
        if job is not None:
            job.remove()

    def fired(self, key: str) -> None:
        fire = self._callbacks.pop(key, None)
        if fire is not None:
            fire()


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class ManualTimers:
    """Timers driven by a ManualClock: ``advance`` moves time and fires what is due."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.pending: dict[str, tuple[datetime, Callable[[], None]]] = {}

    def start(self) -> None:
        pass

    def shutdown(self) -> None:
        self.pending.clear()

    def set(self, key: str, at: datetime, fire: Callable[[], None]) -> None:
        self.pending[key] = (at, fire)
        if at <= self.clock.now():
            self._fire_due()

    def cancel(self, key: str) -> None:
        self.pending.pop(key, None)

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self._fire_due()

    def next_at(self) -> datetime | None:
        return min((at for at, _ in self.pending.values()), default=None)

    def _fire_due(self) -> None:
        now = self.clock.now()
        due = sorted((at, k) for k, (at, _) in self.pending.items() if at <= now)
        for _, key in due:
            _, fire = self.pending.pop(key)
            fire()
