"""Helpers shared by the engine contract suites (``test_engine*.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from engine import events as ev
from engine.runs.requests import RunRequest
from storage import tables as t
from tests.fakes.processes import alive, wait_until
from tests.harness import Harness

E = TypeVar("E", bound=ev.Event)

LONG_STEP = 'echo $$ > "$PARAM_DIR/pid"; exec sleep 30'
"""A shell script that records its pid, then runs until killed (YAML: single-quote it)."""


async def start(
    h: Harness, playbook: str, params: dict[str, Any] | None = None, requested_by: str = "alice"
) -> str:
    """Start a run without waiting for the engine to be idle (for steps that run long)."""
    return await h.engine.start_run(
        RunRequest(playbook=playbook, params=params or {}, requested_by=requested_by)
    )


async def started_pid(folder: Path) -> int:
    """The pid LONG_STEP wrote, once it has written it."""
    path = folder / "pid"
    await wait_until(lambda: path.exists() and path.read_text().strip() != "")
    return int(path.read_text())


async def gone(pid: int) -> None:
    await wait_until(lambda: not alive(pid))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def of_type(events: list[ev.Event], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def trace(events: list[ev.Event], run_id: str | None = None) -> list[tuple[str, str | None]]:
    """``(event class name, step id or None)`` for each event (of one run, if given)."""
    return [
        (type(e).__name__, getattr(e, "step_id", None))
        for e in events
        if run_id is None or e.run_id == run_id
    ]


async def approval_id(h: Harness, run_id: str, step_id: str) -> str:
    row = await h.store.one(
        sa.select(t.approvals.c.id).where(
            t.approvals.c.run_id == run_id, t.approvals.c.step_id == step_id
        )
    )
    assert row is not None, f"no approval for {run_id}/{step_id}"
    return str(row.id)


async def approval_row(h: Harness, approval: str) -> sa.Row[Any]:
    row = await h.store.one(sa.select(t.approvals).where(t.approvals.c.id == approval))
    assert row is not None
    return row


async def decisions(h: Harness, approval: str) -> list[tuple[str, str, str]]:
    rows = await h.store.all(
        sa.select(t.decisions)
        .where(t.decisions.c.approval_id == approval)
        .order_by(t.decisions.c.id)
    )
    return [(r.user, r.decision, r.comment) for r in rows]


async def count_runs(h: Harness) -> int:
    return int(await h.store.scalar(sa.select(sa.func.count()).select_from(t.runs)))


async def children(h: Harness, parent: str) -> list[sa.Row[Any]]:
    return await h.store.all(sa.select(t.runs).where(t.runs.c.parent_run_id == parent))


async def assert_settled(h: Harness, run_id: str) -> None:
    """A finished run leaves nothing in flight: every step and attempt ended, with a time."""
    run = await h.run_row(run_id)
    assert run.status in ("succeeded", "failed", "cancelled", "timed_out"), run.status
    assert run.finished_at is not None
    unsettled = {k: v for k, v in (await h.statuses(run_id)).items() if v in OPEN_STEP}
    assert not unsettled, f"steps still open in a {run.status} run: {unsettled}"
    for a in await h.attempts(run_id):
        assert a.status not in OPEN_STEP and a.finished_at is not None, tuple(a)


OPEN_STEP = frozenset({"pending", "running", "waiting"})
