"""Schedules: playbook runs that come back, on a cron or once at a time.

The ``schedules`` table is the source of truth. Each schedule's ``next_fire_at`` is armed
as one timer (an APScheduler ``date`` job with the schedule's id); when it fires, the run
is created in the same commit that moves ``next_fire_at`` on, guarded on its old value,
so a fire runs once even if two processes or a restart race for it. Cron times come from
APScheduler's ``CronTrigger`` (time zones and DST included).

Missed fires (Baton was down): at start, the latest runs once if within the grace time;
every other is counted in ``missed`` and audited. Never dropped, never run twice.

Declared schedules (``triggers: - schedule: ...``) follow the catalog: their id is a
digest of playbook, cron, zone and params (``schedule_rows.declared_id``). Schedules made
at run time are rows like any other, re-read every ``poll`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import audit
from engine.errors import BatonError, ShuttingDown
from engine.events import ScheduleFired
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets
from engine.runs.requests import RunRequest, Trigger
from engine.runs.state import new_id
from engine.schedules import cron
from storage import tables as t
from storage.store import Op

if TYPE_CHECKING:
    from engine.runs.engine import Engine

from engine.schedules.rows import (
    FireTaken,
    NewSchedule,
    ScheduleError,
    ScheduleNotFound,
    ScheduleView,
    declared_id,
    fire_claim,
    parse_when,
    timer_key,
    view_of,
)

log = logging.getLogger(__name__)


class Schedules:
    def __init__(self, engine: Engine, *, grace: float = 300.0, poll: float = 10.0) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = engine.clock
        self.timers = engine.timers
        self.grace = timedelta(seconds=grace)
        self.poll = timedelta(seconds=poll)
        self._armed: dict[str, datetime] = {}
        self._running = False

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Bring declared schedules in line with the catalog, catch up on missed fires,
        arm every schedule's next fire, and start watching the table."""
        self._running = True
        await self.sync_declared()
        await self._catch_up()
        await self.refresh()

    def stop(self) -> None:
        self._running = False
        for sid in list(self._armed):
            self.timers.cancel(timer_key(sid))
        self.timers.cancel("schedules:poll")
        self._armed.clear()

    # --- the API behind `schedule`, `schedules`, `unschedule` ---------------------------

    async def add_cron(
        self,
        playbook: str,
        expression: str,
        params: dict[str, Any],
        by: str,
        *,
        timezone: str = "UTC",
        origin: str = "cli",
    ) -> ScheduleView:
        try:
            nxt = cron.next_fire(expression, timezone, self.clock.now())
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
        if nxt is None:
            raise ScheduleError(
                f"cron {expression!r} never fires (a day that no month has, such as 30 "
                "February?): check the day and month fields"
            )
        return await self._add(playbook, "cron", expression, timezone, nxt, params, by, origin)

    async def add_once(
        self,
        playbook: str,
        at: datetime,
        params: dict[str, Any],
        by: str,
        *,
        origin: str = "cli",
    ) -> ScheduleView:
        if at <= self.clock.now():
            raise ScheduleError(f"{at.isoformat()} is in the past: pick a time to come")
        zone = str(getattr(at.tzinfo, "key", "UTC"))
        return await self._add(playbook, "once", None, zone, at, params, by, origin)

    async def add(
        self,
        playbook: str,
        params: dict[str, Any],
        by: str,
        *,
        cron_expression: str | None = None,
        when: str | None = None,
        timezone: str = "UTC",
        origin: str = "cli",
    ) -> ScheduleView:
        """What `schedule P "CRON"` and `schedule P in 30m | at 18:00` mean, for every
        front end: a cron schedule, or one time (``when`` read by ``parse_when``)."""
        if when is not None:
            at = parse_when(when, self.clock.now(), timezone)
            return await self.add_once(playbook, at, params, by, origin=origin)
        if not cron_expression:
            raise ScheduleError('say when: "CRON", in 30m or at 18:00')
        return await self.add_cron(
            playbook, cron_expression, params, by, timezone=timezone, origin=origin
        )

    async def list(self, playbook: str | None = None) -> list[ScheduleView]:
        q = sa.select(t.schedules).order_by(t.schedules.c.next_fire_at, t.schedules.c.id)
        if playbook:
            q = q.where(t.schedules.c.playbook == playbook)
        return [view_of(r) for r in await self.store.all(q)]

    async def remove(self, schedule_id: str, by: str) -> ScheduleView:
        row = await self.store.one(sa.select(t.schedules).where(t.schedules.c.id == schedule_id))
        if row is None:
            known = [r.id for r in await self.store.all(sa.select(t.schedules.c.id))]
            raise ScheduleNotFound(schedule_id, known)
        if row.origin == "playbook":
            raise ScheduleError(
                f"schedule {schedule_id} is declared in playbook {row.playbook!r}: remove the "
                "trigger from its file and reload"
            )
        await self.store.write(
            t.schedules.delete().where(t.schedules.c.id == schedule_id),
            audit.op(self.clock.now(), by, "unschedule", schedule_id, {"playbook": row.playbook}),
        )
        self._disarm(schedule_id)
        return view_of(row)

    # --- declared schedules --------------------------------------------------------------

    async def sync_declared(self) -> None:
        """Make the rows of declared schedules match the playbooks' triggers."""
        wanted: dict[str, tuple[str, Any]] = {}
        for playbook in self.engine.catalog:
            for trig in playbook.triggers:
                if trig.schedule is None:
                    continue
                spec = trig.schedule.model_dump(mode="json")
                wanted[declared_id(playbook.name, spec)] = (playbook.name, trig.schedule)
        rows = await self.store.all(
            sa.select(t.schedules.c.id).where(t.schedules.c.origin == "playbook")
        )
        have = {r.id for r in rows}
        now = self.clock.now()
        ops: list[Op] = []
        for sid in have - set(wanted):
            ops.append(t.schedules.delete().where(t.schedules.c.id == sid))
            self._disarm(sid)
        for sid in set(wanted) - have:
            name, spec = wanted[sid]
            ops.append(
                t.schedules.insert().values(
                    id=sid,
                    playbook=name,
                    kind="cron",
                    cron=spec.cron,
                    timezone=spec.timezone,
                    params=dict(spec.params),
                    origin="playbook",
                    created_by=f"playbook:{name}",
                    created_at=now,
                    next_fire_at=cron.next_fire(spec.cron, spec.timezone, now),
                )
            )
        if ops:
            await self.store.write(*ops)
            log.info(
                "declared schedules: %d added, %d removed",
                len(set(wanted) - have),
                len(have - set(wanted)),
            )

    # --- arming and firing -----------------------------------------------------------

    async def refresh(self) -> None:
        """Arm what the table says (rows other processes added included), disarm what is
        gone, and come back in ``poll`` seconds."""
        if not self._running:
            return
        try:
            rows = await self.store.all(sa.select(t.schedules.c.id, t.schedules.c.next_fire_at))
        finally:  # the database down: look again next time all the same
            self.timers.set("schedules:poll", self.clock.now() + self.poll, self._poll)
        seen = set()
        for row in rows:
            seen.add(row.id)
            if row.next_fire_at is None:
                self._disarm(row.id)
            elif self._armed.get(row.id) != row.next_fire_at:
                self._arm(row.id, row.next_fire_at)
        for sid in set(self._armed) - seen:
            self._disarm(sid)

    def _poll(self) -> None:
        self.engine.spawn(self.refresh(), "schedules-refresh")

    def _arm(self, schedule_id: str, at: datetime) -> None:
        self._armed[schedule_id] = at
        self.timers.set(
            timer_key(schedule_id),
            at,
            lambda: self.engine.spawn(self.fire(schedule_id, at), f"fire-{schedule_id}"),
        )

    def _disarm(self, schedule_id: str) -> None:
        if self._armed.pop(schedule_id, None) is not None:
            self.timers.cancel(timer_key(schedule_id))

    async def fire(self, schedule_id: str, fire_time: datetime) -> str | None:
        """Run the fire due at ``fire_time`` once; returns the run id (None if another
        process took it, or the schedule is gone or moved)."""
        self._armed.pop(schedule_id, None)
        if not self._running:
            return None
        row = await self.store.one(sa.select(t.schedules).where(t.schedules.c.id == schedule_id))
        if row is None:
            return None
        if row.next_fire_at != fire_time:
            # Another process took this fire (or the schedule moved): follow the table,
            # so this process fires the next one if that process is gone by then.
            if row.next_fire_at is not None:
                self._arm(schedule_id, row.next_fire_at)
            return None
        now = self.clock.now()
        nxt = self._after(row, fire_time, now)
        # A late fire (the database was down at its time, say) runs once; the fires
        # that fell due since are missed: counted and audited, never silently dropped.
        skipped = (
            cron.fires_between(row.cron, row.timezone, fire_time, now) if row.kind == "cron" else []
        )
        note: list[Op] = []
        if skipped:
            log.warning(
                "schedule %s (%s) fired %s late; %d fire(s) missed meanwhile",
                row.id,
                row.playbook,
                now - fire_time,
                len(skipped),
            )
            note.append(
                audit.op(
                    now,
                    "baton",
                    "schedule-missed",
                    row.id,
                    {
                        "playbook": row.playbook,
                        "count": len(skipped),
                        "first": skipped[0].isoformat(),
                        "last": skipped[-1].isoformat(),
                        "ran_latest": False,
                    },
                    outcome="missed",
                )
            )
            self._fired(row, "missed", len(skipped))
        run_id = await self._run(row, fire_time, nxt, missed=len(skipped), also=note)
        if nxt is not None and self._running:
            self._arm(schedule_id, nxt)
        return run_id

    def _fired(self, row: sa.Row[Any], outcome: str, count: int = 1, run_id: str = "") -> None:
        """Tell the bus what a fire came to (``bot.metrics`` counts them)."""
        at = self.clock.now()
        self.engine.bus.tally(
            ScheduleFired(
                run_id=run_id,
                playbook=row.playbook,
                at=at,
                schedule_id=row.id,
                outcome=outcome,
                count=count,
            )
        )

    def _after(self, row: sa.Row[Any], fire_time: datetime, now: datetime) -> datetime | None:
        if row.kind != "cron":
            return None
        return cron.next_fire(row.cron, row.timezone, max(now, fire_time))

    async def _run(
        self,
        row: sa.Row[Any],
        fire_time: datetime,
        nxt: datetime | None,
        missed: int = 0,
        also: Sequence[Op] = (),
    ) -> str | None:
        claim = fire_claim(
            row.id, row.next_fire_at, fire_time, nxt, missed, once=row.kind == "once"
        )
        params = dict(row.params)
        if row.secret_params:
            params.update(self.engine.secret_box.decrypt(row.secret_params))
        request = RunRequest(
            playbook=row.playbook,
            params=params,
            requested_by=row.created_by,
            trigger=Trigger.SCHEDULE,
            source={"schedule_id": row.id, "fire_time": fire_time.isoformat()},
        )
        try:
            run_id = await self.engine.start_run(request, also=[claim, *also])
        except (FireTaken, ShuttingDown):
            return None  # taken elsewhere, or it stays due for the next start
        except BatonError as exc:  # the playbook changed under the schedule: say so
            log.warning("schedule %s could not start %s: %s", row.id, row.playbook, exc)
            await self.store.write(
                t.schedules.update()
                .where(t.schedules.c.id == row.id, t.schedules.c.next_fire_at == row.next_fire_at)
                .values(next_fire_at=nxt, last_fire_at=fire_time, last_error=str(exc)),
                audit.op(
                    self.clock.now(),
                    row.created_by,
                    "schedule-failed",
                    row.id,
                    {"playbook": row.playbook, "error": str(exc)},
                    outcome="error",
                ),
            )
            self._fired(row, "failed")
            return None
        self._fired(row, "started", run_id=run_id)
        await self.store.write(
            t.schedules.update().where(t.schedules.c.id == row.id).values(last_run_id=run_id)
        )
        log.info(
            "schedule %s fired (due %s): run %s of %s",
            row.id,
            fire_time.isoformat(timespec="seconds"),
            run_id,
            row.playbook,
            extra={"run_id": run_id, "playbook": row.playbook},
        )
        return run_id

    async def _catch_up(self) -> None:
        """Fires that fell due while Baton was down: the latest runs once if within the
        grace time; the others are counted as missed and audited."""
        now = self.clock.now()
        rows = await self.store.all(sa.select(t.schedules).where(t.schedules.c.next_fire_at <= now))
        for row in rows:
            due = [row.next_fire_at]
            if row.kind == "cron":
                due += cron.fires_between(row.cron, row.timezone, row.next_fire_at, now)
            latest = due[-1]
            runnable = now - latest <= self.grace
            missed = len(due) - (1 if runnable else 0)
            nxt = cron.next_fire(row.cron, row.timezone, now) if row.kind == "cron" else None
            if missed:
                log.warning(
                    "schedule %s (%s) missed %d fire(s) while Baton was down",
                    row.id,
                    row.playbook,
                    missed,
                )
                await self.store.write(
                    audit.op(
                        now,
                        "baton",
                        "schedule-missed",
                        row.id,
                        {
                            "playbook": row.playbook,
                            "count": missed,
                            "first": due[0].isoformat(),
                            "last": due[-1].isoformat(),
                            "ran_latest": runnable,
                        },
                        outcome="missed",
                    )
                )
                self._fired(row, "missed", missed)
            if runnable:
                await self._run(row, latest, nxt, missed=missed)
            else:
                await self.store.write(
                    t.schedules.update()
                    .where(
                        t.schedules.c.id == row.id, t.schedules.c.next_fire_at == row.next_fire_at
                    )
                    .values(next_fire_at=nxt, missed=t.schedules.c.missed + missed)
                )

    # --- helpers ---------------------------------------------------------------------

    async def _add(
        self,
        playbook: str,
        kind: str,
        expression: str | None,
        timezone: str,
        at: datetime | None,
        params: dict[str, Any],
        by: str,
        origin: str,
    ) -> ScheduleView:
        pb = self.engine.catalog.get(playbook)
        typed = paramlib.coerce(pb, params)  # bad params are refused now, not at 2 a.m.
        secret_names = paramsecrets.secret_names(pb)
        secret = {k: str(v) for k, v in typed.items() if k in secret_names and v is not None}
        shown = {k: v for k, v in params.items() if k not in secret}
        now = self.clock.now()
        sid = new_id()
        sealed = self.engine.secret_box.encrypt(secret) if secret else None
        masked = paramsecrets.masked(pb, typed)
        made = NewSchedule(sid, playbook, kind, expression, timezone, at, origin, by, now)
        await self.store.write(*made.ops(shown, sealed, masked))
        if self._running and at is not None:
            self._arm(sid, at)
        row = await self.store.one(sa.select(t.schedules).where(t.schedules.c.id == sid))
        assert row is not None
        return view_of(row)
