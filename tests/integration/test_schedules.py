"""Schedules on SQLite and PostgreSQL, with time moved by the test: cron and one-time
fires, declared triggers following their playbook, missed fires, and no fire run twice."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.chat import schedules as chat_schedules
from engine.errors import ParamError, PlaybookNotFound
from engine.schedules import service as schedlib
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

NIGHTLY = """
    name: nightly
    triggers:
      - schedule: {cron: "0 2 * * *", timezone: Europe/Paris, params: {who: night}}
    params:
      who: {type: string, default: world}
    steps:
      - id: greet
        action: log
        with: {message: "hello {{ params.who }}"}
"""

START = datetime(2026, 1, 1, tzinfo=UTC)  # the harness clock starts here


async def scheduled_runs(h: Harness) -> list[sa.Row]:  # type: ignore[type-arg]
    return await h.store.all(
        sa.select(t.runs.c.id, t.runs.c.source, t.runs.c.params, t.runs.c.requested_by)
        .where(t.runs.c.trigger == "schedule")
        .order_by(t.runs.c.created_at)
    )


async def schedule_row(h: Harness, sid: str) -> sa.Row:  # type: ignore[type-arg]
    row = await h.store.one(sa.select(t.schedules).where(t.schedules.c.id == sid))
    assert row is not None
    return row


async def test_a_declared_cron_fires_at_its_time_in_its_zone(harness: HarnessFactory) -> None:
    h = await harness({"nightly": NIGHTLY})
    [view] = await h.schedules.list()
    assert (view.playbook, view.when, view.timezone, view.origin) == (
        "nightly",
        "0 2 * * *",
        "Europe/Paris",
        "playbook",
    )
    assert view.next_fire_at == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)  # 02:00 in Paris
    await h.advance(3599)
    assert await scheduled_runs(h) == []
    await h.advance(1)
    [run] = await scheduled_runs(h)
    assert run.params == {"who": "night"}
    assert run.source["schedule_id"] == view.id
    row = await schedule_row(h, view.id)
    assert row.last_fire_at == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert row.next_fire_at == datetime(2026, 1, 2, 1, 0, tzinfo=UTC)
    assert row.last_run_id == run.id
    await h.advance(86400)
    assert len(await scheduled_runs(h)) == 2


async def test_schedules_made_at_run_time(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    cron = await h.schedules.add_cron("hello", "*/15 * * * *", {"who": "ops"}, "alice")
    once = await h.schedules.add_once(
        "hello", START + timedelta(minutes=5), {"who": "later", "token": "s3cr3t"}, "bob"
    )
    assert [v.id for v in await h.schedules.list()] == [once.id, cron.id]
    assert once.params == {"who": "later"}  # the secret is not kept in clear
    await h.advance(300)
    [first] = await scheduled_runs(h)
    assert (first.params, first.requested_by) == ({"who": "later", "token": "***"}, "bob")
    assert [v.id for v in await h.schedules.list()] == [cron.id]  # a one-time schedule ends
    await h.advance(600)
    assert [r.params["who"] for r in await scheduled_runs(h)] == ["later", "ops"]
    await h.schedules.remove(cron.id, "alice")
    await h.advance(3600)
    assert len(await scheduled_runs(h)) == 2
    audit = await h.store.all(sa.select(t.audit.c.action, t.audit.c.actor))
    assert ("schedule", "alice") in [tuple(a) for a in audit]
    assert ("unschedule", "alice") in [tuple(a) for a in audit]


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda s: s.add_cron("hello", "61 * * * *", {}, "a"), schedlib.ScheduleError, "61"),
        (
            lambda s: s.add_cron("hello", "0 2 * * *", {}, "a", timezone="Mars/Base"),
            schedlib.ScheduleError,
            "time zone",
        ),
        (lambda s: s.add_cron("helo", "0 2 * * *", {}, "a"), PlaybookNotFound, "hello"),
        (lambda s: s.add_cron("hello", "0 2 * * *", {"whom": "x"}, "a"), ParamError, "who"),
        (
            lambda s: s.add_once("hello", START - timedelta(1), {}, "a"),
            schedlib.ScheduleError,
            "past",
        ),
        (lambda s: s.remove("nope", "a"), schedlib.ScheduleError, "nope"),
        (lambda s: s.add_cron("hello", "0 0 30 2 *", {}, "a"), schedlib.ScheduleError, "never"),
    ],
    ids=[
        "bad-cron",
        "bad-zone",
        "unknown-playbook",
        "bad-param",
        "in-the-past",
        "unknown-id",
        "never-fires",
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_stored(
    harness: HarnessFactory,
    call,
    error,
    needle,  # type: ignore[no-untyped-def]
) -> None:
    h = await harness({"hello": HELLO})
    with pytest.raises(error, match=needle):
        await call(h.schedules)
    assert await h.schedules.list() == []


async def test_declared_schedules_cannot_be_removed_by_hand(harness: HarnessFactory) -> None:
    h = await harness({"nightly": NIGHTLY})
    [view] = await h.schedules.list()
    with pytest.raises(schedlib.ScheduleError, match="trigger"):
        await h.schedules.remove(view.id, "alice")


async def test_editing_or_removing_a_trigger_replaces_or_removes_its_schedule(
    harness: HarnessFactory,
) -> None:
    h = await harness({"nightly": NIGHTLY})
    [before] = await h.schedules.list()
    path = h.root / "playbooks" / "nightly.yaml"
    path.write_text(textwrap.dedent(NIGHTLY).replace('"0 2 * * *"', '"30 3 * * *"'))
    h.engine.catalog = h.engine.catalog.reload()
    await h.schedules.sync_declared()
    await h.schedules.refresh()
    [after] = await h.schedules.list()
    assert after.id != before.id and after.when == "30 3 * * *"
    await h.advance(3600)  # the old 02:00 fire is gone
    assert await scheduled_runs(h) == []
    await h.advance(5400)
    assert len(await scheduled_runs(h)) == 1
    untriggered = [
        ln
        for ln in textwrap.dedent(NIGHTLY).splitlines()
        if "trigger" not in ln and "schedule:" not in ln
    ]
    path.write_text("\n".join(untriggered))
    h.engine.catalog = h.engine.catalog.reload()
    await h.schedules.sync_declared()
    assert await h.schedules.list() == []


async def test_a_fire_runs_once_even_when_asked_twice(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    view = await h.schedules.add_cron("hello", "0 * * * *", {}, "alice")
    assert view.next_fire_at is not None
    first = await h.schedules.fire(view.id, view.next_fire_at)
    second = await h.schedules.fire(view.id, view.next_fire_at)
    assert first is not None and second is None
    assert len(await scheduled_runs(h)) == 1


async def test_missed_fires_the_latest_runs_once_within_grace(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    view = await h.schedules.add_cron("hello", "0 * * * *", {}, "alice")  # hourly

    async def down_for_three_hours_and_a_minute() -> None:
        h.clock.advance(timedelta(hours=3, minutes=1))

    await h.restart(between=down_for_three_hours_and_a_minute)
    runs = await scheduled_runs(h)
    assert len(runs) == 1  # the 03:00 fire, 1 minute late, within the 5-minute grace
    assert runs[0].source["fire_time"] == "2026-01-01T03:00:00+00:00"
    row = await schedule_row(h, view.id)
    assert row.missed == 2  # 01:00 and 02:00
    assert row.next_fire_at == datetime(2026, 1, 1, 4, tzinfo=UTC)
    [audit] = await h.store.all(
        sa.select(t.audit.c.detail).where(t.audit.c.action == "schedule-missed")
    )
    assert audit.detail["count"] == 2


async def test_missed_fires_beyond_grace_are_recorded_not_run(harness: HarnessFactory) -> None:
    h = await harness({"hello": HELLO})
    view = await h.schedules.add_cron("hello", "0 * * * *", {}, "alice")

    async def down_for_hours() -> None:
        h.clock.advance(timedelta(hours=2, minutes=30))

    await h.restart(between=down_for_hours)
    assert await scheduled_runs(h) == []
    row = await schedule_row(h, view.id)
    assert (row.missed, row.next_fire_at) == (2, datetime(2026, 1, 1, 3, tzinfo=UTC))


async def test_schedules_written_by_another_process_are_picked_up(
    harness: HarnessFactory,
) -> None:
    h = await harness({"hello": HELLO})
    await h.store.write(
        t.schedules.insert().values(
            id="elsewhere",
            playbook="hello",
            kind="once",
            timezone="UTC",
            params={},
            origin="cli",
            created_by="carol",
            created_at=START,
            next_fire_at=START + timedelta(seconds=30),
        )
    )
    await h.advance(10)  # the next look at the table arms it
    await h.advance(20)
    [run] = await scheduled_runs(h)
    assert run.requested_by == "carol"


async def test_a_playbook_that_changed_under_a_schedule_is_reported(
    harness: HarnessFactory,
) -> None:
    h = await harness({"hello": HELLO})
    view = await h.schedules.add_cron("hello", "0 * * * *", {"who": "x"}, "alice")
    (h.root / "playbooks" / "hello.yaml").write_text(
        textwrap.dedent(HELLO).replace(
            "who: {type: string, default: world}", "who: {type: int, default: 1}"
        )
    )
    h.engine.catalog = h.engine.catalog.reload()
    await h.advance(3600)
    assert await scheduled_runs(h) == []
    row = await schedule_row(h, view.id)
    assert "who" in (row.last_error or "")
    assert row.next_fire_at == datetime(2026, 1, 1, 2, tzinfo=UTC)  # it keeps its cron


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 30m", datetime(2026, 1, 1, 10, 30, tzinfo=UTC)),
        ("at 18:00", datetime(2026, 1, 1, 18, 0, tzinfo=UTC)),
        ("at 09:00", datetime(2026, 1, 2, 9, 0, tzinfo=UTC)),
        ("2026-03-01T08:00", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
    ],
    ids=["in", "at-later-today", "at-tomorrow", "iso"],
)
def test_parse_when(text: str, expected: datetime) -> None:
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert schedlib.parse_when(text, now) == expected


def test_parse_when_in_a_zone() -> None:
    now = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # 12:00 in Paris (summer time)
    at = schedlib.parse_when("at 18:00", now, "Europe/Paris")
    assert at.astimezone(UTC) == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["at 25:00", "in 3x", "tomorrow-ish"], ids=str)
def test_parse_when_refuses_nonsense(text: str) -> None:
    with pytest.raises(schedlib.ScheduleError):
        schedlib.parse_when(text, datetime(2026, 1, 1, tzinfo=UTC))


async def test_the_shipped_nightly_backup_is_scheduled_at_two(harness: HarnessFactory) -> None:
    shipped = Path(__file__).parents[2] / "playbooks" / "nightly-backup.yaml"
    h = await harness({"nightly-backup": shipped.read_text()})
    [view] = await h.schedules.list()
    assert (view.playbook, view.when, view.origin) == ("nightly-backup", "0 2 * * *", "playbook")
    assert view.next_fire_at == datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


async def test_reload_refuses_an_invalid_edit_and_keeps_the_previous_version(
    harness: HarnessFactory,
) -> None:
    h = await harness({"nightly": NIGHTLY})
    path = h.root / "playbooks" / "nightly.yaml"
    path.write_text(textwrap.dedent(NIGHTLY).replace('"0 2 * * *"', '"0 2 * *"'))
    problems = h.engine.reload()
    assert any("fields" in p.message and p.line == 4 for p in problems), problems
    await h.schedules.sync_declared()
    [kept] = await h.schedules.list()
    assert kept.when == "0 2 * * *"  # the previous version keeps running
    run_id = await h.run("nightly")
    assert (await h.run_row(run_id)).status == "succeeded"
    path.write_text(textwrap.dedent(NIGHTLY).replace('"0 2 * * *"', '"0 3 * * *"'))
    assert h.engine.reload() == []
    await h.schedules.sync_declared()
    [edited] = await h.schedules.list()
    assert edited.when == "0 3 * * *"


async def test_a_one_time_schedule_is_shown_in_its_own_zone(harness: HarnessFactory) -> None:
    """`schedule P in 30m` or `at 18:00` made in Europe/Paris (BATON_TIMEZONE in chat)
    reads in Paris everywhere its `when` is shown (chat, the command line, the dashboard,
    the API), not as the UTC the row keeps beside the word Europe/Paris."""
    h = await harness({"hello": HELLO})
    soon = await h.schedules.add("hello", {}, "bob", when="in 30m", timezone="Europe/Paris")
    evening = await h.schedules.add("hello", {}, "bob", when="at 18:00", timezone="Europe/Paris")
    assert (soon.when, soon.timezone) == ("2026-01-01T01:30:00+01:00", "Europe/Paris")
    assert (evening.when, evening.timezone) == ("2026-01-01T18:00:00+01:00", "Europe/Paris")
    listed = {v.id: v for v in await h.schedules.list()}  # as read back from the row
    assert listed[evening.id].when == "2026-01-01T18:00:00+01:00"
    assert listed[evening.id].next_fire_at == datetime(2026, 1, 1, 17, tzinfo=UTC)
    reply = await chat_schedules.listing(h.schedules)
    row = next(line for line in reply.lines if line.startswith(evening.id))
    assert "2026-01-01T18:00:00+01:00 (Europe/Paris)" in row
    assert "17:00" not in row
