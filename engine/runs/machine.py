"""How a run moves: the state machine a run's driver applies, one batch at a time.

``RunMachine.apply`` takes one message (a step's result, a timer, a closed gate, a stop)
and ``RunMachine.advance`` decides what the DAG allows next (``engine.runs.dag``). Both
only change the in-memory ``RunState`` and add to a ``Batch`` (``engine.runs.batch``):
the ops to commit, the events to publish once committed, and the effects the driver
carries out: timers to set or cancel, attempts to launch or cancel, child runs to start
or stop. Pure: no I/O, no asyncio, no timers here; approval gates are
``engine.runs.approvals``'s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from engine import events as ev
from engine import storable
from engine.actions import ChildRunSpec, Suspend
from engine.errors import BatonError
from engine.playbooks.model import Phase
from engine.runs import items
from engine.runs import messages as msg
from engine.runs.approvals import Approvals
from engine.runs.batch import (
    TIMER_REASONS,
    Batch,
    CancelTask,
    Settle,
    StartChild,
    StopChild,
    attempt_op,
    step_op,
)
from engine.runs.dag import Dag
from engine.runs.moves import Jitter, Moves
from engine.runs.state import RunState, RunStatus, StepState, StepStatus, new_id
from engine.timing import Clock
from storage import tables as t
from storage.rows import Rows
from storage.store import Op

SpawnChild = Callable[[RunState, StepState, ChildRunSpec], tuple[RunState, list[Op]]]
"""A child run for a ``playbook`` step and the ops that start it (``BatonError``: it
cannot be started)."""


class RunMachine:
    def __init__(
        self,
        *,
        clock: Clock,
        spawn_child: SpawnChild,
        stopping: Callable[[], bool],
        jitter: Jitter = random.uniform,
        new_id: Callable[[], str] = new_id,
    ) -> None:
        """``stopping``: this node is stopping; ``jitter``: a random factor between two
        bounds (retry delays); ``new_id``: the id of a new approval gate."""
        self.clock = clock
        self._spawn_child = spawn_child
        self.moves = Moves(clock=clock, stopping=stopping, jitter=jitter)
        self.dag = Dag(self.moves)
        self.approvals = Approvals(self.moves, new_id)

    def advance(self, run: RunState, batch: Batch) -> bool:
        """Start, skip or cancel what the DAG allows now; returns True once the run ended."""
        return self.dag.advance(run, batch)

    def apply(self, run: RunState, m: Any, batch: Batch) -> None:
        if isinstance(m, msg.Stop):
            self._apply_stop(run, m, batch)
            return
        if isinstance(m, msg.Logged):
            self._apply_logged(run, m, batch)
            return
        if isinstance(m, items.ItemNews):
            self._apply_items(run, m, batch)
            return
        step = run.steps.get(getattr(m, "step_id", ""))
        if step is None:
            return
        current = step.status is StepStatus.RUNNING and getattr(m, "attempt", 0) == step.attempts
        if isinstance(m, msg.Finished):
            if current:
                self._apply_finished(run, step, m, batch)
        elif isinstance(m, msg.Suspended):
            if current:
                self._apply_suspend(run, step, m.suspend, batch)
        elif isinstance(m, msg.Wake):
            self._apply_wake(run, step, m, batch)
        elif isinstance(m, msg.WorkerNote):
            if current:
                self._note_worker_wait(run, step, m.waiting_for, batch)
        elif isinstance(m, msg.GateClosed):
            self.approvals.closed(run, step, m, batch)
        elif (
            isinstance(m, msg.ChildEnded)
            and step.status is StepStatus.WAITING
            and step.child_run_id == m.child_run_id
        ):
            if m.status == RunStatus.SUCCEEDED.value:
                self.moves.complete(run, step, batch, output=m.output)
            else:  # a failed child is final: never retried
                self.moves.fail(
                    run,
                    step,
                    batch,
                    output=m.output,
                    error=f"child run {m.child_run_id} {m.status}"
                    + (f": {m.error}" if m.error else ""),
                )

    def _apply_logged(self, run: RunState, m: msg.Logged, batch: Batch) -> None:
        message = storable.clean_text(m.message)
        row = {
            "run_id": run.id,
            "step_id": m.step_id,
            "at": m.at,
            "level": m.level,
            "message": message,
        }
        batch.ops.append(Rows("log_new", [row]))
        batch.events.append(
            ev.RunLogged(
                run_id=run.id,
                playbook=run.playbook.name,
                at=m.at,
                step_id=m.step_id,
                message=message,
                level=m.level,
            )
        )

    def _apply_items(self, run: RunState, news: items.ItemNews, batch: Batch) -> None:
        """Items of a fan-out moved: their rows, one progress event per step and turn."""
        ops, event = items.record(run, news, self.clock.now())
        batch.ops += ops
        last = batch.events[-1] if batch.events else None
        if isinstance(last, ev.ItemsProgressed) and last.step_id == event.step_id:
            batch.events[-1] = event
        else:
            batch.events.append(event)
        if news.committed is not None:
            batch.effects.append(Settle(news.committed))

    def _apply_finished(
        self, run: RunState, step: StepState, m: msg.Finished, batch: Batch
    ) -> None:
        batch.cancel_timers(step, "timeout")
        # what an action returns is made storable here: a lone surrogate or a NUL must
        # not fail the driver's commit (engine.storable)
        output = storable.clean(run.masker.mask(m.output))
        attachments = storable.clean(run.masker.mask(m.attachments)) if m.attachments else None
        if m.outcome == "succeeded":
            self.moves.complete(run, step, batch, output=output, attachments=attachments)
            return
        error = storable.clean_text(run.masker.mask_text(m.error or m.outcome))
        if m.outcome in ("cancelled", "interrupted"):
            now = self.clock.now()
            step.status = StepStatus(m.outcome)
            step.error = error
            step.output = output
            step.finished_at = now
            if m.outcome == "interrupted" and step.cancel_reason == "shutdown":
                step.wake_reason = "shutdown"  # this node stopped: the resume decides
            elif m.outcome == "interrupted":  # its worker died: final, as after a crash
                self.moves.interrupted_fails_run(run, step)
                batch.events.append(
                    ev.StepInterrupted(
                        **self.moves.event_base(run, step), attempt=step.attempts, rerun=False
                    )
                )
            batch.ops += [
                step_op(run, step),
                attempt_op(
                    run,
                    step,
                    status=m.outcome,
                    finished_at=now,
                    error=error,
                    output=output,
                    attachments=attachments,
                ),
            ]
            if m.outcome == "cancelled":
                batch.events.append(ev.StepCancelled(**self.moves.event_base(run, step)))
            return
        again = step.spec.for_each is None  # a fan-out retries each item, not itself
        self.moves.fail(
            run, step, batch, error=error, output=output, attachments=attachments, retryable=again
        )

    def _apply_suspend(
        self, run: RunState, step: StepState, suspend: Suspend, batch: Batch
    ) -> None:
        batch.cancel_timers(step, "timeout")
        step.status = StepStatus.WAITING
        batch.ops.append(attempt_op(run, step, status="waiting"))
        if suspend.until is not None:
            step.wake_at = suspend.until
            step.wake_reason = "wait"
            batch.set_timer(step, "wait", suspend.until)
            batch.events.append(
                ev.StepWaiting(
                    **self.moves.event_base(run, step), reason="wait", until=suspend.until
                )
            )
        elif suspend.approval is not None:
            self.approvals.open(run, step, suspend.approval, batch)
        elif suspend.child is not None:
            self._start_child(run, step, suspend.child, batch)
            if step.status is not StepStatus.WAITING:
                return
        batch.ops.append(step_op(run, step))

    def _start_child(
        self, run: RunState, step: StepState, spec: ChildRunSpec, batch: Batch
    ) -> None:
        try:
            child, ops = self._spawn_child(run, step, spec)
        except BatonError as exc:  # e.g. no such playbook, bad params: the step fails
            self.moves.fail(run, step, batch, error=str(exc))
            return
        batch.ops += ops
        batch.effects.append(StartChild(child))
        step.child_run_id = child.id
        step.wake_reason = "child"
        batch.events.append(
            ev.StepWaiting(**self.moves.event_base(run, step), reason=f"child run {child.id}")
        )

    def _apply_wake(self, run: RunState, step: StepState, m: msg.Wake, batch: Batch) -> None:
        if m.reason == "timeout":
            if step.status is StepStatus.RUNNING:
                batch.effects.append(CancelTask(step.id, "timeout"))
            return
        if m.reason == "remind":
            self.approvals.remind(run, step, batch)
            return
        if step.status is not StepStatus.WAITING or step.wake_reason != m.reason:
            return
        if m.reason == "retry":
            if run.stop_reason and step.phase is not Phase.FINALLY:
                return  # a stop leaves finally alone: its retry goes on
            self.moves.start_attempt(run, step, batch)
        elif m.reason == "wait":
            self.moves.complete(
                run,
                step,
                batch,
                output={"waited_until": step.wake_at.isoformat() if step.wake_at else None},
            )
        elif m.reason == "approval":
            self.approvals.timed_out(run, step, batch)

    def _apply_stop(self, run: RunState, m: msg.Stop, batch: Batch) -> None:
        """Cancel (or time out) the run: its running attempts are cancelled, its waiting
        and pending steps (but ``finally``'s) end cancelled, its open gates with them."""
        if run.stop_reason:
            return
        run.stop_reason = m.status
        run.stopped_by = m.by
        if m.status == "timed_out" and not run.failing:
            run.error = f"run timed out after {run.playbook.timeout}"
        batch.ops.append(
            t.runs.update()
            .where(t.runs.c.id == run.id)
            .values(stop_reason=run.stop_reason, stopped_by=run.stopped_by, error=run.error)
        )
        now = self.clock.now()
        for step in [s for s in run.steps.values() if s.phase is not Phase.FINALLY]:
            if step.status is StepStatus.RUNNING:
                batch.effects.append(CancelTask(step.id, "cancelled"))
            elif step.status in (StepStatus.WAITING, StepStatus.PENDING):
                batch.cancel_timers(step, *TIMER_REASONS)
                self.approvals.cancel(step, m.by, now, batch)
                if step.child_run_id and step.status is StepStatus.WAITING:
                    batch.effects.append(StopChild(step.child_run_id, m.status, m.by))
                was_waiting = step.status is StepStatus.WAITING
                step.status = StepStatus.CANCELLED
                step.finished_at = now
                step.wake_at = None
                batch.ops.append(step_op(run, step))
                if was_waiting:
                    batch.ops.append(attempt_op(run, step, status="cancelled", finished_at=now))
                batch.events.append(ev.StepCancelled(**self.moves.event_base(run, step)))

    def recover_running(self, run: RunState, batch: Batch) -> None:
        """At resume: a step that was running when the process died runs again only if
        it is idempotent or has attempts left; otherwise it is interrupted."""
        now = self.clock.now()
        for step in run.steps.values():
            died = step.status is StepStatus.RUNNING or (
                step.status is StepStatus.INTERRUPTED and step.wake_reason == "shutdown"
            )
            if not died:
                continue
            if step.status is StepStatus.RUNNING:
                batch.ops.append(
                    attempt_op(
                        run,
                        step,
                        status="interrupted",
                        finished_at=now,
                        error="Baton stopped during this attempt",
                    )
                )
            again = step.spec.idempotent or step.attempts < step.spec.retry.attempts
            again = again or step.spec.for_each is not None  # its items decide (fanout.resume)
            rerun = again and (not run.stop_reason or step.phase is Phase.FINALLY)
            batch.events.append(
                ev.StepInterrupted(
                    **self.moves.event_base(run, step), attempt=step.attempts, rerun=rerun
                )
            )
            if rerun:
                step.status = StepStatus.PENDING
                step.wake_reason = None
                self.moves.start_attempt(run, step, batch)
            else:
                step.status = StepStatus.INTERRUPTED
                step.wake_reason = None
                step.finished_at = now
                step.error = (
                    "interrupted: Baton stopped while this step ran, and it is not "
                    "idempotent and has no attempts left"
                )
                batch.ops.append(step_op(run, step))
                self.moves.interrupted_fails_run(run, step)

    def _note_worker_wait(
        self, run: RunState, step: StepState, waiting_for: str | None, batch: Batch
    ) -> None:
        """A step sent to a worker waits for one (``a worker labelled dc1``; None: a
        worker took it): shown in its output while it runs, and on its card."""
        step.output = {"waiting_for": waiting_for} if waiting_for else None
        batch.ops.append(step_op(run, step))
        if waiting_for:
            batch.events.append(
                ev.StepWaiting(**self.moves.event_base(run, step), reason=waiting_for)
            )
