"""``BATON_RETENTION``: two ``serve`` replicas on one database prune once a day between
them (the day's claim is an audit row, taken under PostgreSQL's advisory lock), on
SQLite and PostgreSQL, with time the test moves."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.runs.requests import RunRequest
from engine.timing import ManualClock, ManualTimers
from storage import prune_log
from storage import tables as t

QUICK = """
name: quick
steps:
  - {id: hello, action: log, with: {message: hello}}
"""


class Replicas:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.nodes: list[tuple[Baton, ManualTimers]] = []

    async def advance(self, delta: timedelta) -> None:
        """Move the shared clock; every replica's due timers fire at once, and their
        looks at the day's prune race each other."""
        self.clock.advance(delta)
        for _, timers in self.nodes:
            timers.advance(timedelta(0))
        await asyncio.gather(*(baton.engine.wait_idle() for baton, _ in self.nodes))

    def pruned(self) -> list[int]:
        return [baton.retention.pruned for baton, _ in self.nodes if baton.retention]


@pytest.fixture
async def replicas(tmp_path: Path, db_url: str) -> AsyncIterator[Replicas]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "quick.yaml").write_text(textwrap.dedent(QUICK))
    settings = Settings(
        database_url=db_url, playbooks=folder, key_file=tmp_path / "key", retention="90d"
    )
    clock = ManualClock()
    group = Replicas(clock)
    async with AsyncExitStack() as stack:
        for _ in range(2):
            timers = ManualTimers(clock)
            baton = await stack.enter_async_context(
                open_baton(settings, clock=clock, timers=timers)
            )
            group.nodes.append((baton, timers))
        yield group


async def run_ids(baton: Baton) -> set[str]:
    rows = await baton.store.all(sa.select(t.runs.c.id))
    return {r.id for r in rows}


async def test_two_replicas_prune_once_a_day_between_them(replicas: Replicas) -> None:
    first, _ = replicas.nodes[0]
    old = await first.engine.start_run(RunRequest(playbook="quick", requested_by="amy"))
    await first.engine.audit("amy", "run", old, {})  # as a front end records it
    await first.engine.wait_idle()
    assert (await first.store.one(sa.select(t.runs).where(t.runs.c.id == old))).status == (
        "succeeded"
    )

    await replicas.advance(timedelta(days=100))  # both look, a minute after their start
    assert sorted(replicas.pruned()) == [0, 1]
    assert await run_ids(first) == set()
    young = await first.engine.start_run(RunRequest(playbook="quick", requested_by="amy"))
    await first.engine.wait_idle()

    await replicas.advance(timedelta(hours=1))  # the hourly look: today is done
    assert sorted(replicas.pruned()) == [0, 1]
    await replicas.advance(timedelta(days=1))  # a new day: one of them prunes again
    assert sum(replicas.pruned()) == 2
    assert await run_ids(first) == {young}  # 1 day old: kept

    marks = await first.store.all(
        sa.select(t.audit).where(t.audit.c.action == prune_log.DAILY).order_by(t.audit.c.id)
    )
    days = [(m.actor, m.target, m.outcome) for m in marks]
    assert days == [
        ("baton", "retention 2026-04-11", "ok"),
        ("baton", "retention 2026-04-12", "ok"),
    ]
    assert marks[0].detail["deleted"]["runs"] == 1
    assert "runs" not in marks[1].detail["deleted"]
    # the audit of the pruned run stays: who ran what outlives the runs
    ran = await first.store.all(sa.select(t.audit).where(t.audit.c.target == old))
    assert [(r.actor, r.action) for r in ran] == [("amy", "run")]


async def test_without_retention_serve_prunes_nothing(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "quick.yaml").write_text(textwrap.dedent(QUICK))
    settings = Settings(database_url=db_url, playbooks=folder, key_file=tmp_path / "key")
    clock = ManualClock()
    timers = ManualTimers(clock)
    async with open_baton(settings, clock=clock, timers=timers) as baton:
        assert baton.retention is None
        run = await baton.engine.start_run(RunRequest(playbook="quick", requested_by="amy"))
        await baton.engine.wait_idle()
        timers.advance(timedelta(days=1000))
        await baton.engine.wait_idle()
        assert await run_ids(baton) == {run}
