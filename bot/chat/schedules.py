"""``schedule``, ``schedules``, ``unschedule``, ``pause``, ``resume`` and ``trigger``."""

from __future__ import annotations

from bot import zoned
from bot.chat.replies import Reply, params_text
from bot.grammar import Pause, Resume, Schedule, Trigger, Unschedule
from bot.tables import table
from engine.access.rules import Actor
from engine.schedules import ops as schedule_ops
from engine.schedules.service import Schedules


async def schedule(book: Schedules, actor: Actor, command: Schedule, timezone: str) -> Reply:
    made = await book.add(
        command.playbook,
        command.params,
        actor.id,
        cron_expression=command.cron,
        when=command.when,
        timezone=timezone,
        origin=actor.via,
    )
    nxt = zoned.zoned(made.next_fire_at, made.timezone) or "never"
    return Reply(
        [f"scheduled {made.playbook} as {made.id}: {made.when} ({made.timezone}); next run {nxt}"],
        data={"schedule_id": made.id},
    )


async def unschedule(book: Schedules, actor: Actor, command: Unschedule) -> Reply:
    gone = await book.remove(command.schedule_id, actor.id)
    return Reply([f"removed schedule {gone.id} ({gone.playbook}, {gone.when})"])


async def operate(book: Schedules, actor: Actor, command: Pause | Resume | Trigger) -> Reply:
    sid = command.schedule_id
    if isinstance(command, Trigger):
        run_id = await schedule_ops.trigger(book, sid, actor.id)
        line = f"triggered schedule {sid}: run {run_id}"
        return Reply([line], run_id=run_id, follow=True, data={"started": run_id})
    if isinstance(command, Pause):
        view = await schedule_ops.pause(book, sid, actor.id)
        return Reply([f"paused schedule {sid} ({view.playbook}); `resume {sid}` to go on"])
    view = await schedule_ops.resume(book, sid, actor.id)
    nxt = zoned.zoned(view.next_fire_at, view.timezone)
    return Reply([f"resumed schedule {sid} ({view.playbook}); next run {nxt}"])


async def listing(book: Schedules) -> Reply:
    views = await book.list()
    if not views:
        return Reply(["no schedules"])
    rows = [
        [
            v.id,
            v.playbook,
            f"{v.when} ({v.timezone})",
            zoned.zoned(v.next_fire_at, v.timezone) or "-",
            v.created_by,
            params_text(v.params),
        ]
        for v in views
    ]
    header = ("SCHEDULE", "PLAYBOOK", "WHEN", "NEXT", "BY", "PARAMS")
    return Reply(table(header, rows), data={"schedules": [v.id for v in views]}, table_at=0)
