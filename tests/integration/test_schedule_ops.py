"""Pausing, resuming and triggering schedules (``engine.schedules.ops``), on SQLite and
PostgreSQL with time moved by the test; and the same as chat commands, under the access
rules and into the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from bot.commands import Commands
from engine.access import config as accessconfig
from engine.access.rules import Actor
from engine.schedules import ops as schedule_ops
from engine.schedules.service import ScheduleError
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness

HELLO = """
    name: hello
    params:
      who: {type: string, default: world}
      token: {type: secret, default: ""}
    steps:
      - id: greet
        action: log
        with: {message: "hello {{ params.who }}"}
"""

START = datetime(2026, 1, 1, tzinfo=UTC)  # the harness clock starts here


async def runs_of(h: Harness) -> list[sa.Row]:  # type: ignore[type-arg]
    return await h.store.all(
        sa.select(t.runs.c.id, t.runs.c.params, t.runs.c.requested_by, t.runs.c.source)
        .where(t.runs.c.trigger == "schedule")
        .order_by(t.runs.c.created_at)
    )


async def audit_of(h: Harness, target: str) -> list[tuple[str, str, str]]:
    rows = await h.store.all(
        sa.select(t.audit.c.actor, t.audit.c.action, t.audit.c.outcome)
        .where(t.audit.c.target == target)
        .order_by(t.audit.c.id)
    )
    return [(r.actor, r.action, r.outcome) for r in rows]


async def test_a_paused_schedule_skips_its_fires_and_resumes_from_now(
    harness: HarnessFactory,
) -> None:
    h = await harness({"hello": HELLO})
    made = await h.schedules.add_cron("hello", "0 * * * *", {"who": "ops"}, "alice")
    assert made.next_fire_at == datetime(2026, 1, 1, 1, tzinfo=UTC)

    paused = await schedule_ops.pause(h.schedules, made.id, "bob")
    assert paused.paused and paused.next_fire_at is None
    await h.advance(3 * 3600 + 60)  # three fires pass while paused
    assert await runs_of(h) == []
    with pytest.raises(ScheduleError, match="already paused"):
        await schedule_ops.pause(h.schedules, made.id, "bob")

    resumed = await schedule_ops.resume(h.schedules, made.id, "bob")
    assert not resumed.paused
    assert resumed.next_fire_at == datetime(2026, 1, 1, 4, tzinfo=UTC)  # the next after now
    await h.advance(3600)
    [run] = await runs_of(h)
    assert run.params["who"] == "ops"
    row = await h.store.one(sa.select(t.schedules).where(t.schedules.c.id == made.id))
    assert row is not None and row.missed == 0  # skipped while paused, not missed
    with pytest.raises(ScheduleError, match="is not paused"):
        await schedule_ops.resume(h.schedules, made.id, "bob")
    assert await audit_of(h, made.id) == [
        ("bob", "schedule-pause", "ok"),
        ("bob", "schedule-resume", "ok"),
    ]


async def test_a_pause_survives_a_restart(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    made = await h.schedules.add_cron("hello", "0 * * * *", {}, "alice")
    await schedule_ops.pause(h.schedules, made.id, "bob")
    await h.restart()
    await h.advance(2 * 3600)
    assert await runs_of(h) == []
    [view] = await h.schedules.list()
    assert view.paused


async def test_trigger_runs_the_schedule_now_and_leaves_it_as_it_was(
    harness: HarnessFactory,
) -> None:
    h = await harness({"hello": HELLO})
    made = await h.schedules.add_cron(
        "hello", "0 9 * * *", {"who": "ops", "token": "sekrit-token"}, "alice"
    )
    run_id = await schedule_ops.trigger(h.schedules, made.id, "bob")
    await h.engine.wait_for(run_id)
    [run] = await runs_of(h)
    assert (run.id, run.requested_by) == (run_id, "bob")
    assert run.source == {"schedule_id": made.id, "triggered_by": "bob"}
    assert run.params["token"] == "***"  # the stored secret reached the run, masked
    [view] = await h.schedules.list()
    assert view.next_fire_at == made.next_fire_at and view.last_fire_at is None
    assert ("bob", "schedule-trigger", "ok") in await audit_of(h, made.id)


async def test_a_one_time_schedule_is_removed_not_paused(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    once = await h.schedules.add_once("hello", START.replace(hour=5), {}, "alice")
    with pytest.raises(ScheduleError, match=f"runs once: remove it with `unschedule {once.id}`"):
        await schedule_ops.pause(h.schedules, once.id, "bob")
    with pytest.raises(ScheduleError, match="No schedule with id 'nope'"):
        await schedule_ops.trigger(h.schedules, "nope", "bob")


RULES = """
access:
  default: deny
  rules:
    - playbooks: "*"
      users: [alice]
"""


async def test_pause_resume_and_trigger_in_chat_follow_the_access_rules(
    harness: HarnessFactory,
) -> None:
    h = await harness({"hello": HELLO})
    rules = accessconfig.parse(RULES, "test")
    commands = Commands(engine=h.engine, schedules=h.schedules, rules=rules)
    made = await h.schedules.add_cron("hello", "0 * * * *", {}, "alice")
    where = {"front_end": "console"}
    mallory, alice = Actor(id="mallory"), Actor(id="alice")

    for verb in ("pause", "trigger"):
        reply = await commands.handle(mallory, f"{verb} {made.id}", where)
        assert not reply.ok and reply.data.get("refused"), reply.text
    assert not (await h.schedules.list())[0].paused and await runs_of(h) == []

    reply = await commands.handle(alice, f"pause {made.id}", where)
    assert reply.ok
    assert reply.text == f"paused schedule {made.id} (hello); `resume {made.id}` to go on"
    reply = await commands.handle(alice, f"resume {made.id}", where)
    assert reply.ok and "next run 2026-01-01 01:00:00 UTC" in reply.text
    reply = await commands.handle(alice, f"trigger {made.id}", where)
    assert reply.ok and reply.data["started"] == reply.run_id
    reply = await commands.handle(alice, "pause", where)
    assert not reply.ok and reply.text == "usage: pause ID"
    outcomes = await audit_of(h, made.id)
    assert ("mallory", "command:pause", "refused") in outcomes
    assert ("alice", "command:trigger", "ok") in outcomes
