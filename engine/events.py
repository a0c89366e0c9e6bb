"""What happened, in the past tense. The engine publishes these; front ends render them.

Every event is frozen and carries the run id, the playbook and the time; values are
already masked (no secret ever reaches a subscriber).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Event:
    run_id: str
    playbook: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class RunQueued(Event):
    key: str
    ahead: int


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    params: dict[str, Any]
    requested_by: str
    trigger: str
    attempt: int = 1
    resumed: bool = False
    parent_run_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunWaiting(Event):
    reason: str


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """Base of the terminal run events; ``status`` is the run's final status."""

    status: str
    error: str | None = None
    failed_step: str | None = None
    duration: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RunSucceeded(RunFinished):
    pass


@dataclass(frozen=True, kw_only=True)
class RunFailed(RunFinished):
    pass


@dataclass(frozen=True, kw_only=True)
class RunCancelled(RunFinished):
    by: str = ""


@dataclass(frozen=True, kw_only=True)
class RunTimedOut(RunFinished):
    pass


@dataclass(frozen=True, kw_only=True)
class StepEvent(Event):
    step_id: str
    phase: str = "main"


@dataclass(frozen=True, kw_only=True)
class StepStarted(StepEvent):
    attempt: int


@dataclass(frozen=True, kw_only=True)
class StepSucceeded(StepEvent):
    attempt: int
    output: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StepFailed(StepEvent):
    attempt: int
    error: str
    output: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    will_retry: bool = False
    retry_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class StepSkipped(StepEvent):
    reason: str


@dataclass(frozen=True, kw_only=True)
class StepWaiting(StepEvent):
    reason: str
    until: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class StepCancelled(StepEvent):
    pass


@dataclass(frozen=True, kw_only=True)
class StepInterrupted(StepEvent):
    attempt: int
    rerun: bool


@dataclass(frozen=True, kw_only=True)
class ItemsProgressed(StepEvent):
    """A ``for_each`` step's items moved: ``text`` reads "12/40 done, 1 failed, 5
    running"; ``failed_names`` are the first failed items (``failed`` counts them all)."""

    total: int
    done: int
    failed: int
    running: int
    failed_names: tuple[str, ...] = ()
    text: str = ""
    failures: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalRequested(StepEvent):
    approval_id: str
    approvers: dict[str, list[str]]
    min_approvals: int
    message: str
    requested_by: str
    deadline: datetime | None = None
    show: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ApprovalDecided(StepEvent):
    approval_id: str
    user: str
    decision: str
    comment: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalClosed(StepEvent):
    approval_id: str
    outcome: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalEscalated(StepEvent):
    """Nobody decided in time: ``added`` were asked too, until ``deadline``."""

    approval_id: str
    approvers: dict[str, list[str]]
    added: dict[str, list[str]]
    deadline: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ApprovalReminded(StepEvent):
    approval_id: str
    approvers: dict[str, list[str]]
    deadline: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class AlertRepeated(Event):
    """The alert that started this run fired again: counted, not a new run."""

    fingerprint: str
    name: str
    repeats: int


@dataclass(frozen=True, kw_only=True)
class AlertResolved(Event):
    """The alert that started this run is resolved, ``after`` seconds after it began."""

    fingerprint: str
    name: str
    after: float


@dataclass(frozen=True, kw_only=True)
class AlertsHeld(Event):
    """Alerts beyond a rate limit, stored but not run: ``held`` so far in this window.
    ``run_id`` is empty; ``key`` names the trigger and window."""

    key: str
    name: str
    held: int
    channel: str | None = None
    limit: str = ""


@dataclass(frozen=True, kw_only=True)
class RunLogged(Event):
    step_id: str | None
    message: str
    level: str = "info"


@dataclass(frozen=True, kw_only=True)
class AlertSettled(Event):
    """An alert received from ``source`` ended with ``outcome`` (``engine.alerts.model.OUTCOMES``).
    ``run_id`` is the run it started or attached to, or empty. Told to the bus's watchers
    only (``EventBus.tally``)."""

    source: str
    outcome: str


@dataclass(frozen=True, kw_only=True)
class ScheduleFired(Event):
    """A schedule's fire: ``started`` a run, ``failed`` to start one (the reason is in the
    schedule's ``last_error``), or ``missed`` (Baton was down; ``count`` fires). Told to
    the bus's watchers only (``EventBus.tally``)."""

    schedule_id: str
    outcome: str
    count: int = 1
