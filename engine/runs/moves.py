"""The moves of one step, shared by the run machine's parts: an attempt starts, a step
succeeds, fails (and maybe waits to retry), or is skipped. Each changes the in-memory
step and adds its rows and its event to the batch. No I/O here."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from engine import events as ev
from engine.playbooks.model import Phase
from engine.runs.batch import Batch, Launch, attempt_op, insert_attempt, step_op
from engine.runs.state import RunState, StepState, StepStatus
from engine.timing import Clock

Jitter = Callable[[float, float], float]
"""A random number between its two bounds (``random.uniform``)."""

JITTER = (0.5, 1.0)
"""A retry delay with ``jitter`` is the delay times a random factor in these bounds."""


class Moves:
    def __init__(
        self, *, clock: Clock, stopping: Callable[[], bool], jitter: Jitter = random.uniform
    ) -> None:
        """``stopping``: this node is stopping (no retry waits, nothing new starts)."""
        self.clock = clock
        self.stopping = stopping
        self.jitter = jitter

    def event_base(self, run: RunState, step: StepState) -> dict[str, Any]:
        return {
            "run_id": run.id,
            "playbook": run.playbook.name,
            "at": self.clock.now(),
            "step_id": step.id,
            "phase": step.phase.value,
        }

    def start_attempt(self, run: RunState, step: StepState, batch: Batch) -> None:
        now = self.clock.now()
        step.status = StepStatus.RUNNING
        step.attempts += 1
        step.attempt_started = now
        step.started_at = step.started_at or now
        step.finished_at = None
        step.wake_at = None
        step.wake_reason = None
        step.cancel_reason = None
        batch.ops += [step_op(run, step), insert_attempt(run, step)]
        batch.events.append(ev.StepStarted(**self.event_base(run, step), attempt=step.attempts))
        batch.effects.append(Launch(step.id))

    def complete(
        self,
        run: RunState,
        step: StepState,
        batch: Batch,
        output: dict[str, Any],
        attachments: dict[str, Any] | None = None,
    ) -> None:
        now = self.clock.now()
        duration = (now - (step.attempt_started or now)).total_seconds()
        step.status = StepStatus.SUCCEEDED
        step.output = output
        step.error = None
        step.finished_at = now
        step.wake_at = None
        step.wake_reason = None
        batch.ops += [
            step_op(run, step),
            attempt_op(
                run,
                step,
                status="succeeded",
                finished_at=now,
                output=output,
                attachments=attachments,
            ),
        ]
        batch.events.append(
            ev.StepSucceeded(
                **self.event_base(run, step),
                attempt=step.attempts,
                output=output,
                duration=duration,
            )
        )

    def fail(
        self,
        run: RunState,
        step: StepState,
        batch: Batch,
        error: str,
        output: dict[str, Any] | None = None,
        attachments: dict[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        """The attempt failed: the step waits to retry when ``retryable`` and it has
        attempts left (and the run is not stopping), else it fails."""
        now = self.clock.now()
        duration = (now - (step.attempt_started or now)).total_seconds()
        output = output or {}
        retry = step.spec.retry
        will_retry = (
            retryable
            and step.attempts < retry.attempts
            and not run.stop_reason
            and not self.stopping()
        )
        batch.ops.append(
            attempt_op(
                run,
                step,
                status="failed",
                finished_at=now,
                error=error,
                output=output,
                attachments=attachments,
            )
        )
        step.error = error
        step.output = output
        retry_at = None
        if will_retry:
            delay = retry.delay_before(step.attempts + 1).total_seconds()
            if retry.jitter:
                delay *= self.jitter(*JITTER)
            retry_at = now + timedelta(seconds=delay)
            step.status = StepStatus.WAITING
            step.wake_at = retry_at
            step.wake_reason = "retry"
            batch.set_timer(step, "retry", retry_at)
        else:
            step.status = StepStatus.FAILED
            step.finished_at = now
            step.wake_at = None
            step.wake_reason = None
            if step.phase is Phase.MAIN and not step.spec.continue_on_error and not run.failing:
                run.failed_step = step.id
                run.error = f"step {step.id} failed: {error}"
        batch.ops.append(step_op(run, step))
        batch.events.append(
            ev.StepFailed(
                **self.event_base(run, step),
                attempt=step.attempts,
                error=error,
                output=output,
                duration=duration,
                will_retry=will_retry,
                retry_at=retry_at,
            )
        )

    def skip(self, run: RunState, step: StepState, batch: Batch, reason: str) -> None:
        step.status = StepStatus.SKIPPED
        step.error = None
        step.finished_at = self.clock.now()
        batch.ops.append(step_op(run, step))
        batch.events.append(ev.StepSkipped(**self.event_base(run, step), reason=reason))

    def interrupted_fails_run(self, run: RunState, step: StepState) -> None:
        """An interrupted main step fails the run (unless it may fail), as a failed one."""
        if step.phase is Phase.MAIN and not step.spec.continue_on_error and not run.failing:
            run.failed_step = step.id
            run.error = f"step {step.id} {step.error}"
