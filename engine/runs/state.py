"""A run as the engine holds it in memory while driving it, rebuilt from rows on resume."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from engine.playbooks.model import Phase, Playbook, Step
from engine.runs.gates import Gate
from engine.secrets import Masker, SecretBox


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN


TERMINAL_RUN = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
ACTIVE_RUN = frozenset({RunStatus.RUNNING, RunStatus.WAITING})

# The same sets as the database stores them, in a fixed order (for SQL's IN and lists):
RUNS_DRIVEN = tuple(s.value for s in RunStatus if s in ACTIVE_RUN)
"""A driver works on these (queued runs are admitted, not driven)."""
RUNS_IN_PROGRESS = (RunStatus.QUEUED.value, *RUNS_DRIVEN)
"""Runs not over: queued for their place, or driven."""
RUNS_FINISHED = tuple(s.value for s in RunStatus if s in TERMINAL_RUN)
"""Runs that are over."""


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STEP


TERMINAL_STEP = frozenset(
    {
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
        StepStatus.CANCELLED,
        StepStatus.INTERRUPTED,
    }
)
_BROKEN = frozenset({StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.INTERRUPTED})


def new_id() -> str:
    """Ids of runs and approvals: short enough to type in chat, 48 random bits."""
    return secrets.token_hex(6)


@dataclass
class StepState:
    spec: Step
    phase: Phase
    position: int
    _status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    output: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wake_at: datetime | None = None
    wake_reason: str | None = None
    approval_id: str | None = None
    child_run_id: str | None = None
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    gate: Gate | None = None
    """The open approval gate's rules (``approvals.spec``)."""
    templated: bool = True
    remote: asyncio.Future[dict[str, Any]] | None = None
    """The report a step running on a worker waits for (``engine.runs.remote``)."""
    _live: set[str] | None = field(default=None, repr=False)

    @property
    def status(self) -> StepStatus:
        return self._status

    @status.setter
    def status(self, value: StepStatus) -> None:
        """Also keeps the run's set of live (running or waiting) steps up to date."""
        self._status = value
        if self._live is not None:
            if value is StepStatus.RUNNING or value is StepStatus.WAITING:
                self._live.add(self.spec.id)
            else:
                self._live.discard(self.spec.id)

    attempt_started: datetime | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def broken(self) -> bool:
        """Ended badly in a way that stops its dependents (unless continue_on_error)."""
        return self.status in _BROKEN and not self.spec.continue_on_error

    def row(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "attempts": self.attempts,
            "output": self.output,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "wake_at": self.wake_at,
            "wake_reason": self.wake_reason,
            "approval_id": self.approval_id,
            "child_run_id": self.child_run_id,
        }


@dataclass
class RunState:
    id: str
    playbook: Playbook
    status: RunStatus
    params: dict[str, Any]
    masked_params: dict[str, Any]
    masker: Masker
    trigger: str
    requested_by: str
    source: dict[str, Any]
    created_at: datetime
    attempt: int = 1
    epoch: int = 0
    started_at: datetime | None = None
    deadline_at: datetime | None = None
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    concurrency_key: str | None = None
    error: str | None = None
    failed_step: str | None = None
    stop_reason: str | None = None
    stopped_by: str | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    phase: Phase = Phase.MAIN
    inbox: deque[Any] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    blocked: bool = False
    box: SecretBox | None = None
    """Seals what must be stored yet holds a secret (a ``for_each`` item's value)."""
    resuming: bool = False
    announced: bool = False
    done: asyncio.Future[RunStatus] | None = None
    secrets: dict[str, str] = field(default_factory=dict)
    full_scan: bool = True
    dependents: dict[str, list[str]] = field(default_factory=dict)
    _phases: dict[Phase, list[StepState]] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    """Ids of the steps running or waiting, kept by ``StepState.status``."""
    delivered: set[int] = field(default_factory=set)
    """Inbox commands handed to the driver (a command is applied once)."""
    waiters: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    """Callers in this process waiting for a command's answer."""
    abandoned: bool = False
    """This node lost the run's lease: nothing it does changes the run any more."""

    def __post_init__(self) -> None:
        for step in self.steps.values():
            step._live = self.live
            step.status = step.status
            self._phases.setdefault(step.phase, []).append(step)
            for need in step.spec.needs:
                self.dependents.setdefault(need, []).append(step.id)

    @property
    def failing(self) -> bool:
        return self.failed_step is not None

    def in_phase(self, phase: Phase) -> list[StepState]:
        return self._phases.get(phase, [])

    def context(self) -> dict[str, Any]:
        """What templates see: params, steps, run, secrets (and the failure, once failing)."""
        ctx: dict[str, Any] = {
            "params": self.params,
            "steps": {s.id: _step_context(s) for s in self.steps.values()},
            "run": {
                "id": self.id,
                "playbook": self.playbook.name,
                "trigger": self.trigger,
                "requested_by": self.requested_by,
                "attempt": self.attempt,
                "source": self.source,
            },
            "secrets": self.secrets,
        }
        ctx["failure"] = {"step": self.failed_step, "error": self.error}
        return ctx


def _step_context(step: StepState) -> dict[str, Any]:
    """What templates see of a step; a ``for_each`` step's ``items`` are its output's."""
    output = step.output or {}
    seen = {"output": output, "status": step.status.value, "error": step.error}
    if step.spec.for_each is not None:
        seen["items"] = output.get("items", [])
    return seen


def new_steps(playbook: Playbook) -> dict[str, StepState]:
    out: dict[str, StepState] = {}
    for position, (phase, step) in enumerate(playbook.all_steps()):
        out[step.id] = StepState(
            spec=step, phase=phase, position=position, templated=_has_template(step.with_)
        )
    return out


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def parallel_groups(playbook: Playbook, phase: Phase = Phase.MAIN) -> list[list[str]]:
    """Steps of a phase in waves: each wave can start once the previous ones are done."""
    steps = playbook.phase(phase)
    level: dict[str, int] = {}
    remaining = {s.id: s for s in steps}
    while remaining:
        progressed = False
        for sid, step in list(remaining.items()):
            if all(n in level for n in step.needs):
                level[sid] = 1 + max((level[n] for n in step.needs), default=-1)
                del remaining[sid]
                progressed = True
        if not progressed:  # a cycle: validation reports it; keep the rest visible
            for sid in remaining:
                level[sid] = len(steps)
            break
    waves: dict[int, list[str]] = {}
    for step in steps:
        waves.setdefault(level[step.id], []).append(step.id)
    return [waves[k] for k in sorted(waves)]
