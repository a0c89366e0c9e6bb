"""A worker's step logs written while the step runs (``engine.runs.livelog``), on SQLite
and PostgreSQL: lines land in the run's log as they come, masked, and stop landing once
the run moved to another epoch (a takeover) or the step to another attempt."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from engine.runs.livelog import LiveLog
from engine.secrets import Masker
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness

GATE = {
    "gate": """
        name: gate
        steps:
          - id: ask
            action: approval
            with: {message: "go?", timeout: 1h}
    """
}


async def logged(h: Harness, run_id: str) -> list[str]:
    rows = await h.store.all(
        sa.select(t.run_logs.c.message)
        .where(t.run_logs.c.run_id == run_id)
        .order_by(t.run_logs.c.id)
    )
    return [r.message for r in rows]


async def until(check: Any, within: float = 10.0) -> None:
    """Await ``check()`` every 10 ms until it holds, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_lines_land_as_they_come_until_the_run_is_taken_over(
    harness: HarnessFactory,
) -> None:
    h = await harness(GATE)
    run_id = await h.run("gate")
    steps = t.steps.update().where(t.steps.c.run_id == run_id, t.steps.c.step_id == "ask")
    await h.store.write(steps.values(status="running", attempts=1))  # as a worker's step
    spec = {"run_id": run_id, "step_id": "ask", "attempt": 1, "epoch": 1}
    live = LiveLog(h.store, spec, Masker(["hunter2"]))

    await live.add("token hunter2 accepted")

    async def first() -> bool:
        return await logged(h, run_id) == ["token *** accepted"]

    await until(first)
    await h.store.write(t.runs.update().where(t.runs.c.id == run_id).values(epoch=2))
    await live.add("from a worker that lost the step")

    async def refused() -> bool:
        return not live._live

    await until(refused)
    assert await live.remainder() == [["from a worker that lost the step", "info"]]
    assert await logged(h, run_id) == ["token *** accepted"]  # nothing more landed
