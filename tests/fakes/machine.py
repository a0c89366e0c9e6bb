"""The pure run machine driven by hand: runs built from playbook dicts, a fake driver
that applies messages and keeps what the effects ask for (timers, launches, cancels) in
plain collections, and a table of approvals the machine's ops are applied to. No asyncio,
no database."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine import events as ev
from engine.actions import ApprovalSpec, ChildRunSpec, Suspend
from engine.errors import BatonError
from engine.playbooks.model import Playbook
from engine.runs import messages as msg
from engine.runs.batch import (
    Batch,
    CancelTask,
    CancelTimer,
    Launch,
    SetTimer,
    StartChild,
    StopChild,
)
from engine.runs.machine import RunMachine
from engine.runs.state import RunState, RunStatus, StepState, new_steps
from engine.secrets import Masker
from engine.timing import ManualClock
from storage import tables as t
from storage.store import Op

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def playbook(
    steps: list[dict[str, Any]],
    *,
    on_failure: Iterable[dict[str, Any]] = (),
    finally_: Iterable[dict[str, Any]] = (),
    timeout: str | None = None,
) -> Playbook:
    data: dict[str, Any] = {"name": "pb", "steps": steps}
    if on_failure:
        data["on_failure"] = list(on_failure)
    if finally_:
        data["finally"] = list(finally_)
    if timeout:
        data["timeout"] = timeout
    return Playbook.model_validate(data)


def step(sid: str, *needs: str, **more: Any) -> dict[str, Any]:
    """A step of action ``noop`` (the machine never looks at the action)."""
    return {"id": sid, "action": "noop", "needs": list(needs), **more}


def new_run(pb: Playbook, run_id: str = "r1", requested_by: str = "alice") -> RunState:
    return RunState(
        id=run_id,
        playbook=pb,
        status=RunStatus.RUNNING,
        params={},
        masked_params={},
        masker=Masker(),
        trigger="test",
        requested_by=requested_by,
        source={},
        created_at=T0,
        started_at=T0,
        steps=new_steps(pb),
    )


def gate_spec(**more: Any) -> ApprovalSpec:
    return ApprovalSpec(
        approvers=more.pop("approvers", {"users": ["bob"], "usergroups": [], "groups": []}),
        min_approvals=more.pop("min_approvals", 1),
        message=more.pop("message", "ok?"),
        **more,
    )


def no_child(parent: RunState, step: StepState, spec: ChildRunSpec) -> tuple[RunState, list[Op]]:
    raise BatonError(f"no playbook {spec.playbook!r}")


@dataclass
class Driver:
    """The machine and what a driver would do with its batches, in memory."""

    spawn_child: Callable[[RunState, StepState, ChildRunSpec], tuple[RunState, list[Op]]] = no_child
    jitter: Callable[[float, float], float] = lambda lo, hi: hi
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    stopping: bool = False
    timers: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    running: dict[tuple[str, str], int] = field(default_factory=dict)
    """(run, step) -> attempt, for each attempt launched and not ended."""
    task_cancels: list[tuple[str, str, str]] = field(default_factory=list)
    children_stopped: list[StopChild] = field(default_factory=list)
    children_started: list[RunState] = field(default_factory=list)
    ended: dict[str, bool] = field(default_factory=dict)
    approvals: ApprovalsTable = field(default_factory=lambda: ApprovalsTable())

    def __post_init__(self) -> None:
        ids = (f"g{n}" for n in itertools.count(1))
        self.machine = RunMachine(
            clock=self.clock,
            spawn_child=self.spawn_child,
            stopping=lambda: self.stopping,
            jitter=self.jitter,
            new_id=lambda: next(ids),
        )

    def turn(self, run: RunState, *messages: Any) -> Batch:
        """One driver turn: apply ``messages``, advance, carry the effects out."""
        batch = Batch()
        for m in messages:
            self.machine.apply(run, m, batch)
        self.ended[run.id] = self.machine.advance(run, batch)
        for effect in batch.effects:
            if isinstance(effect, SetTimer):
                self.timers[run.id, effect.step_id, effect.reason] = effect.at
            elif isinstance(effect, CancelTimer):
                self.timers.pop((run.id, effect.step_id, effect.reason), None)
            elif isinstance(effect, Launch):
                self.running[run.id, effect.step_id] = run.steps[effect.step_id].attempts
            elif isinstance(effect, CancelTask):
                self.task_cancels.append((run.id, effect.step_id, effect.reason))
            elif isinstance(effect, StopChild):
                self.children_stopped.append(effect)
            elif isinstance(effect, StartChild):
                self.children_started.append(effect.child)
        self.approvals.apply(batch.ops)
        return batch

    def finish(self, run: RunState, sid: str, outcome: str = "succeeded", **more: Any) -> Batch:
        """The running attempt of ``sid`` ends as ``outcome``."""
        attempt = self.running.pop((run.id, sid))
        return self.turn(run, msg.Finished(sid, attempt, outcome, **more))

    def suspend(self, run: RunState, sid: str, **suspend: Any) -> Batch:
        attempt = self.running.pop((run.id, sid))
        return self.turn(run, msg.Suspended(sid, attempt, Suspend(**suspend)))

    def wait_at_gate(self, run: RunState, sid: str, **spec: Any) -> str:
        """``sid`` (running) opens an approval gate; returns the gate's id."""
        self.suspend(run, sid, approval=gate_spec(**spec))
        approval_id = run.steps[sid].approval_id
        assert approval_id is not None
        return approval_id

    def fire(self, run: RunState, sid: str, reason: str) -> Batch:
        """The step's ``reason`` timer is due: time moves to it and it fires."""
        at = self.timers.pop((run.id, sid, reason))
        if at > self.clock.now():
            self.clock.advance(at - self.clock.now())
        return self.turn(run, msg.Wake(sid, reason))

    def later(self, seconds: float) -> None:
        self.clock.advance(timedelta(seconds=seconds))


class ApprovalsTable:
    """The approvals rows, as the machine's ops leave them: an insert adds a row, an
    update changes the rows its ``where`` (column = value, and-ed) matches."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def apply(self, ops: list[Op]) -> None:
        for op in ops:
            if isinstance(op, sa.Insert) and op.table is t.approvals:
                row = statement_values(op)
                self.rows[row["id"]] = row
            elif isinstance(op, sa.Update) and op.table is t.approvals:
                where = conditions(op)
                for row in self.rows.values():
                    if all(row.get(k) == v for k, v in where.items()):
                        row.update(statement_values(op))

    def status(self, approval_id: str) -> str:
        return str(self.rows[approval_id]["status"])


def conditions(stmt: sa.Update) -> dict[str, Any]:
    """An update's ``where`` as column -> value (it must be equalities, and-ed)."""
    clause = stmt.whereclause
    assert clause is not None, "an update of every row"
    parts = getattr(clause, "clauses", [clause])
    out = {}
    for part in parts:
        assert part.operator is operator.eq
        out[part.left.name] = part.right.value
    return out


def statement_values(stmt: sa.Insert | sa.Update) -> dict[str, Any]:
    """What an insert or update sets, by column (read from the statement: compiling
    it would cost a mutation run minutes)."""
    return {
        (k if isinstance(k, str) else k.key): getattr(v, "value", v)
        for k, v in stmt._values.items()
    }


def updates_of(batch: Batch, table: sa.Table) -> list[sa.Update]:
    return [op for op in batch.ops if isinstance(op, sa.Update) and op.table is table]


def events(batch: Batch, kind: type[ev.Event]) -> list[Any]:
    return [e for e in batch.events if isinstance(e, kind)]


def started(batch: Batch) -> list[str]:
    return [e.step_id for e in batch.effects if isinstance(e, Launch)]


def rows(batch: Batch, kind: str) -> list[dict[str, Any]]:
    """The rows of the batch's ``Rows`` ops of ``kind`` (step, attempt_end, audit_new, ...)."""
    return [r for op in batch.ops if getattr(op, "kind", None) == kind for r in op.rows]


def audits(batch: Batch) -> list[tuple[Any, ...]]:
    """The audit rows of a batch as (actor, action, target, detail)."""
    return [(r["actor"], r["action"], r["target"], r["detail"]) for r in rows(batch, "audit_new")]
