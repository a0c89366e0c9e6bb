"""What one turn of a run's driver produces: the ops it commits as one unit, the events
it publishes once they are committed, and the effects it carries out.

The run machine (``engine.runs.machine``) only fills a ``Batch``; the driver
(``engine.runs.driver``) does what its effects say. Effects that withdraw something
(``CancelTimer``, ``CancelTask``, ``StopChild`` of a run driven here) are carried out as
soon as the machine returns, before the commit; the others once the batch is committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine import events as ev
from engine.runs.state import RunState, StepState
from storage.rows import Rows
from storage.store import Op

TIMER_REASONS = ("retry", "wait", "approval", "remind", "timeout")
"""The timers a step may have, one of each at most."""


@dataclass(frozen=True)
class SetTimer:
    """At ``at``, wake the step with ``reason`` (``msg.Wake``)."""

    step_id: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class CancelTimer:
    step_id: str
    reason: str


@dataclass(frozen=True)
class CancelTask:
    """Cancel the step's running attempt, if it has one here; it ends as ``reason`` says
    (timeout; else cancelled)."""

    step_id: str
    reason: str


@dataclass(frozen=True)
class StopChild:
    """Stop the step's child run (``status`` cancelled or timed_out), wherever it runs."""

    child_run_id: str
    status: str
    by: str


@dataclass(frozen=True)
class Launch:
    """Start the step's attempt (its action)."""

    step_id: str


@dataclass(frozen=True)
class StartChild:
    """Drive a child run whose rows this batch commits."""

    child: RunState


@dataclass(frozen=True)
class Settle:
    """Tell a fan-out its news is committed (``engine.runs.items.settle``)."""

    committed: Any


Effect = SetTimer | CancelTimer | CancelTask | StopChild | Launch | StartChild | Settle


@dataclass
class Batch:
    """What one turn of a driver produces; committed as one unit."""

    ops: list[Op] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def set_timer(self, step: StepState, reason: str, at: datetime) -> None:
        self.effects.append(SetTimer(step.id, reason, at))

    def cancel_timers(self, step: StepState, *reasons: str) -> None:
        self.effects += [CancelTimer(step.id, reason) for reason in reasons]


def step_op(run: RunState, step: StepState) -> Op:
    """The step's whole state, as held in memory."""
    return Rows("step", [{"run_id": run.id, "step_id": step.id, **step.row()}])


def attempt_op(
    run: RunState,
    step: StepState,
    *,
    status: str,
    finished_at: datetime | None = None,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    attachments: dict[str, Any] | None = None,
) -> Op:
    """How the step's current attempt stands (or ended)."""
    row = {
        "run_id": run.id,
        "step_id": step.id,
        "run_attempt": run.attempt,
        "number": step.attempts,
        "status": status,
        "finished_at": finished_at,
        "output": output,
        "error": error,
        "attachments": attachments,
    }
    return Rows("attempt_end", [row])


def insert_attempt(run: RunState, step: StepState) -> Op:
    """The row of the step's new attempt."""
    row = {
        "run_id": run.id,
        "step_id": step.id,
        "number": step.attempts,
        "run_attempt": run.attempt,
        "status": "running",
        "started_at": step.attempt_started,
    }
    return Rows("attempt_new", [row])
