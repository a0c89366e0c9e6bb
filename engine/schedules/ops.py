"""Pausing, resuming and triggering a schedule now: ``pause ID``, ``resume ID`` and
``trigger ID`` in chat, the buttons of the dashboard's schedules page.

A paused schedule is a cron schedule with no next fire (``ScheduleView.paused``): nothing
arms it, a start does not catch it up, and every process sees it in the table. Resuming
sets its next fire from now, so the fires that fell while it was paused are skipped, not
run late. A one-time schedule is not paused (remove it instead). Triggering runs the
schedule's playbook with its params now, as the person who asks, and leaves the schedule
as it was. Each writes its audit row in the same commit as its change."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from engine import audit
from engine.runs.requests import RunRequest, Trigger
from engine.schedules import cron
from engine.schedules.service import ScheduleError, ScheduleNotFound, Schedules, ScheduleView
from storage import tables as t


async def _row(schedules: Schedules, schedule_id: str) -> sa.Row[Any]:
    row = await schedules.store.one(sa.select(t.schedules).where(t.schedules.c.id == schedule_id))
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return row


async def _view(schedules: Schedules, schedule_id: str) -> ScheduleView:
    (view,) = [v for v in await schedules.list() if v.id == schedule_id]
    return view


async def pause(schedules: Schedules, schedule_id: str, by: str) -> ScheduleView:
    """Stop a cron schedule firing until it is resumed."""
    row = await _row(schedules, schedule_id)
    if row.kind != "cron":
        raise ScheduleError(
            f"schedule {schedule_id} runs once: remove it with `unschedule {schedule_id}` "
            "instead of pausing it"
        )
    if row.next_fire_at is None:
        raise ScheduleError(f"schedule {schedule_id} is already paused: `resume {schedule_id}`")
    c = t.schedules.c
    await schedules.store.write(
        t.schedules.update()
        .where(c.id == schedule_id, c.next_fire_at == row.next_fire_at)
        .values(next_fire_at=None),
        audit.op(schedules.clock.now(), by, "schedule-pause", schedule_id, _detail(row)),
    )
    await schedules.refresh()
    return await _view(schedules, schedule_id)


async def resume(schedules: Schedules, schedule_id: str, by: str) -> ScheduleView:
    """Let a paused schedule fire again, from its next fire after now."""
    row = await _row(schedules, schedule_id)
    if row.kind != "cron" or row.next_fire_at is not None:
        raise ScheduleError(f"schedule {schedule_id} is not paused")
    now = schedules.clock.now()
    nxt = cron.next_fire(row.cron, row.timezone, now)
    c = t.schedules.c
    await schedules.store.write(
        t.schedules.update()
        .where(c.id == schedule_id, c.next_fire_at.is_(None))
        .values(next_fire_at=nxt),
        audit.op(now, by, "schedule-resume", schedule_id, _detail(row)),
    )
    await schedules.refresh()
    return await _view(schedules, schedule_id)


async def trigger(schedules: Schedules, schedule_id: str, by: str) -> str:
    """Start the schedule's playbook with its params now, requested by ``by``; the
    schedule itself does not move. Returns the run id."""
    row = await _row(schedules, schedule_id)
    params = dict(row.params or {})
    if row.secret_params:
        params.update(schedules.engine.secret_box.decrypt(row.secret_params))
    request = RunRequest(
        playbook=row.playbook,
        params=params,
        requested_by=by,
        trigger=Trigger.SCHEDULE,
        source={"schedule_id": row.id, "triggered_by": by},
    )
    note = audit.op(schedules.clock.now(), by, "schedule-trigger", schedule_id, _detail(row))
    return await schedules.engine.start_run(request, also=[note])


def _detail(row: sa.Row[Any]) -> dict[str, Any]:
    return {"playbook": row.playbook, "cron": row.cron}
