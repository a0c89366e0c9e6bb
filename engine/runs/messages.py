"""What reaches a run's driver: results of steps, timers, decisions, requests to stop."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.actions import Suspend


@dataclass(frozen=True)
class Finished:
    """An attempt ended. ``outcome``: succeeded, failed, timed_out, cancelled, interrupted."""

    step_id: str
    attempt: int
    outcome: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    attachments: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Logged:
    """A line an action wrote to the run's log; committed with the driver's next batch."""

    step_id: str
    message: str
    level: str
    at: datetime


@dataclass(frozen=True)
class Suspended:
    step_id: str
    attempt: int
    suspend: Suspend


@dataclass(frozen=True)
class WorkerNote:
    """What a step sent to a worker waits for (``a worker labelled dc1``), shown on the
    step while it lasts; None: a worker took it (``engine.runs.remote``)."""

    step_id: str
    attempt: int
    waiting_for: str | None


@dataclass(frozen=True)
class Wake:
    """A timer fired: ``reason`` is retry, wait, timeout or approval."""

    step_id: str
    reason: str


@dataclass(frozen=True)
class Stop:
    """Cancel the run (``status`` cancelled) or time it out (``status`` timed_out)."""

    status: str
    by: str


@dataclass(frozen=True)
class GateClosed:
    step_id: str
    approval_id: str
    outcome: str
    reason: str = ""
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChildEnded:
    step_id: str
    child_run_id: str
    status: str
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Command:
    """A command from the run's inbox (``engine.runs.inbox``): applied by the driver,
    which then writes its answer in the same commit."""

    id: int
    kind: str
    by: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Abandon:
    """This node no longer holds the run's lease: stop driving it, change nothing."""

    reason: str
