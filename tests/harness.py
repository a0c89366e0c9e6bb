"""Test harness: a real engine on a real database, with time the test moves itself."""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.actions.registry import Registry
from engine.bus import Subscription
from engine.events import Event
from engine.playbooks.catalog import Catalog
from engine.runs.engine import Engine
from engine.runs.requests import RunRequest
from engine.schedules.service import Schedules
from engine.secrets import SecretBox
from engine.timing import ManualClock, ManualTimers
from storage import tables as t
from storage.store import Store

GRACE = 300.0  # seconds a missed cron fire may be late and still run at start
POLL = 10.0  # seconds between looks at the schedules table


@dataclass
class Harness:
    root: Path
    db_url: str
    store: Store
    engine: Engine
    clock: ManualClock
    timers: ManualTimers
    events: Subscription
    schedules: Schedules
    secrets: dict[str, str] = field(default_factory=dict)

    async def run(
        self,
        playbook: str,
        params: dict[str, Any] | None = None,
        requested_by: str = "alice",
        trigger: str = "cli",
    ) -> str:
        run_id = await self.engine.start_run(
            RunRequest(
                playbook=playbook, params=params or {}, requested_by=requested_by, trigger=trigger
            )
        )
        await self.engine.wait_idle()
        return run_id

    async def advance(self, seconds: float) -> None:
        self.timers.advance(timedelta(seconds=seconds))
        await self.engine.wait_idle()

    async def run_row(self, run_id: str) -> sa.Row[Any]:
        row = await self.store.one(sa.select(t.runs).where(t.runs.c.id == run_id))
        assert row is not None
        return row

    async def steps(self, run_id: str) -> dict[str, sa.Row[Any]]:
        rows = await self.store.all(sa.select(t.steps).where(t.steps.c.run_id == run_id))
        return {r.step_id: r for r in rows}

    async def statuses(self, run_id: str) -> dict[str, str]:
        return {k: v.status for k, v in (await self.steps(run_id)).items()}

    async def attempts(self, run_id: str) -> list[sa.Row[Any]]:
        return await self.store.all(
            sa.select(t.attempts).where(t.attempts.c.run_id == run_id).order_by(t.attempts.c.id)
        )

    def seen(self) -> list[Event]:
        return self.events.drain()

    async def restart(self, between: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop this engine and start a new one on the same database and playbooks.

        ``between`` runs while no engine is up: a test uses it to leave the rows as a
        crash (rather than a clean stop) would have left them."""
        self.schedules.stop()
        await self.engine.stop(drain=0)
        self.events.close()
        if between is not None:
            await between()
        self.engine = _engine(self.root, self.store, self.clock, self.timers, self.secrets)
        self.events = self.engine.bus.subscribe()
        await self.engine.start()
        self.schedules = Schedules(self.engine, grace=GRACE, poll=POLL)
        await self.schedules.start()
        await self.engine.wait_idle()


def _engine(
    root: Path, store: Store, clock: ManualClock, timers: ManualTimers, secrets: dict[str, str]
) -> Engine:
    registry = Registry.from_entry_points()
    return Engine(
        store=store,
        catalog=Catalog.load(root / "playbooks", registry),
        registry=registry,
        secret_box=SecretBox.from_settings(None, root / "key"),
        clock=clock,
        timers=timers,
        secrets=secrets,
    )


def write_playbooks(root: Path, playbooks: dict[str, str]) -> None:
    folder = root / "playbooks"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


async def open_harness(
    root: Path, db_url: str, playbooks: dict[str, str], secrets: dict[str, str] | None = None
) -> Harness:
    write_playbooks(root, playbooks)
    store = Store(db_url)
    await store.open()
    clock = ManualClock()
    timers = ManualTimers(clock)
    engine = _engine(root, store, clock, timers, secrets or {})
    problems = engine.catalog.problems
    assert not problems, "\n".join(map(str, problems))
    events = engine.bus.subscribe()
    await engine.start()
    schedules = Schedules(engine, grace=GRACE, poll=POLL)
    await schedules.start()
    await engine.wait_idle()
    return Harness(root, db_url, store, engine, clock, timers, events, schedules, secrets or {})
