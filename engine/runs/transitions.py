"""How a run moves: the state machine a run's driver applies, one batch at a time.

``RunMachine.apply`` takes one message (a step's result, a timer, a closed gate, a stop)
and ``RunMachine.advance`` decides what the DAG allows next. Both only change the
in-memory ``RunState`` and add to a ``Batch``: the ops to commit, the events to publish
once committed, the steps to launch and the timers to set after the commit. No I/O here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from engine import audit, storable
from engine import events as ev
from engine.actions import ApprovalSpec, ChildRunSpec, Suspend
from engine.errors import BatonError, TemplateError
from engine.playbooks import templating
from engine.playbooks.model import Phase
from engine.runs import items
from engine.runs import messages as msg
from engine.runs.state import RunState, RunStatus, StepState, StepStatus, new_id
from engine.timing import Clock, Timers
from storage import tables as t
from storage.rows import Rows
from storage.store import Op

SpawnChild = Callable[[RunState, StepState, ChildRunSpec], tuple[RunState, list[Op]]]


@dataclass
class Batch:
    """What one turn of a driver produces; committed as one unit."""

    ops: list[Op] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)
    launches: list[StepState] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    children: list[RunState] = field(default_factory=list)


class RunMachine:
    def __init__(
        self,
        *,
        clock: Clock,
        timers: Timers,
        post: Callable[[RunState, Any], None],
        spawn_child: SpawnChild,
        live: Callable[[str], RunState | None],
        stopping: Callable[[], bool],
        stop_elsewhere: Callable[[str, str], None] = lambda run_id, by: None,
    ) -> None:
        self.clock = clock
        self.timers = timers
        self._post = post
        self._spawn_child = spawn_child
        self._live = live
        self._stop_elsewhere = stop_elsewhere
        self._stopping = stopping

    def _step_op(self, run: RunState, step: StepState) -> Op:
        """The step's whole state, as held in memory."""
        return Rows("step", [{"run_id": run.id, "step_id": step.id, **step.row()}])

    def _attempt_op(
        self,
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

    def _event_base(self, run: RunState, step: StepState) -> dict[str, Any]:
        return {
            "run_id": run.id,
            "playbook": run.playbook.name,
            "at": self.clock.now(),
            "step_id": step.id,
            "phase": step.phase.value,
        }

    def apply(self, run: RunState, m: Any, batch: Batch) -> None:
        if isinstance(m, msg.Stop):
            self._apply_stop(run, m, batch)
            return
        if isinstance(m, msg.Logged):
            m = msg.Logged(m.step_id, storable.clean_text(m.message), m.level, m.at)
            row = {
                "run_id": run.id,
                "step_id": m.step_id,
                "at": m.at,
                "level": m.level,
                "message": m.message,
            }
            batch.ops.append(Rows("log_new", [row]))
            batch.events.append(
                ev.RunLogged(
                    run_id=run.id,
                    playbook=run.playbook.name,
                    at=m.at,
                    step_id=m.step_id,
                    message=m.message,
                    level=m.level,
                )
            )
            return
        if isinstance(m, items.ItemNews):
            self._apply_items(run, m, batch)
            return
        step = run.steps.get(getattr(m, "step_id", ""))
        if step is None:
            return
        if isinstance(m, msg.Finished):
            if step.status is StepStatus.RUNNING and m.attempt == step.attempts:
                self._apply_finished(run, step, m, batch)
        elif isinstance(m, msg.Suspended):
            if step.status is StepStatus.RUNNING and m.attempt == step.attempts:
                self._apply_suspend(run, step, m.suspend, batch)
        elif isinstance(m, msg.Wake):
            self._apply_wake(run, step, m, batch)
        elif isinstance(m, msg.WorkerNote):
            if step.status is StepStatus.RUNNING and m.attempt == step.attempts:
                self._note_worker_wait(run, step, m.waiting_for, batch)
        elif isinstance(m, msg.GateClosed):
            if step.status is StepStatus.WAITING and step.approval_id == m.approval_id:
                self.timers.cancel(self.timer_key(run, step, "approval"))
                self.timers.cancel(self.timer_key(run, step, "remind"))
                batch.events.append(
                    ev.ApprovalClosed(
                        **self._event_base(run, step),
                        approval_id=m.approval_id,
                        outcome=m.outcome,
                        reason=m.reason,
                    )
                )
                if m.outcome == "approved":
                    self._complete(run, step, batch, output=m.output)
                else:
                    self._fail(run, step, batch, error=m.reason, output=m.output)
        elif (
            isinstance(m, msg.ChildEnded)
            and step.status is StepStatus.WAITING
            and step.child_run_id == m.child_run_id
        ):
            if m.status == RunStatus.SUCCEEDED.value:
                self._complete(run, step, batch, output=m.output)
            else:
                self._fail(
                    run,
                    step,
                    batch,
                    output=m.output,
                    error=f"child run {m.child_run_id} {m.status}"
                    + (f": {m.error}" if m.error else ""),
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
            batch.after.append(partial(items.settle, news.committed))

    def _apply_finished(
        self, run: RunState, step: StepState, m: msg.Finished, batch: Batch
    ) -> None:
        self.timers.cancel(self.timer_key(run, step, "timeout"))
        # what an action returns is made storable here: a lone surrogate or a NUL must
        # not fail the driver's commit (engine.storable)
        output = storable.clean(run.masker.mask(m.output))
        attachments = storable.clean(run.masker.mask(m.attachments)) if m.attachments else None
        if m.outcome == "succeeded":
            self._complete(run, step, batch, output=output, attachments=attachments)
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
                self._interrupted_fails_run(run, step)
                batch.events.append(
                    ev.StepInterrupted(
                        **self._event_base(run, step), attempt=step.attempts, rerun=False
                    )
                )
            batch.ops += [
                self._step_op(run, step),
                self._attempt_op(
                    run,
                    step,
                    status=m.outcome,
                    finished_at=now,
                    error=error,
                    output=output,
                    attachments=attachments,
                ),
            ]
            event_cls = ev.StepCancelled if m.outcome == "cancelled" else None
            if event_cls is not None:
                batch.events.append(event_cls(**self._event_base(run, step)))
            return
        again = step.spec.for_each is None  # a fan-out retries each item, not itself
        self._fail(
            run, step, batch, error=error, output=output, attachments=attachments, retryable=again
        )

    def _complete(
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
            self._step_op(run, step),
            self._attempt_op(
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
                **self._event_base(run, step),
                attempt=step.attempts,
                output=output,
                duration=duration,
            )
        )

    def _fail(
        self,
        run: RunState,
        step: StepState,
        batch: Batch,
        error: str,
        output: dict[str, Any] | None = None,
        attachments: dict[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        now = self.clock.now()
        duration = (now - (step.attempt_started or now)).total_seconds()
        output = output or {}
        retry = step.spec.retry
        will_retry = (
            retryable
            and step.attempts < retry.attempts
            and not run.stop_reason
            and not self._stopping()
        )
        batch.ops.append(
            self._attempt_op(
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
                delay *= random.uniform(0.5, 1.0)
            retry_at = now + timedelta(seconds=delay)
            step.status = StepStatus.WAITING
            step.wake_at = retry_at
            step.wake_reason = "retry"
            batch.after.append(lambda: self.set_timer(run, step, retry_at, "retry"))
        else:
            step.status = StepStatus.FAILED
            step.finished_at = now
            step.wake_at = None
            step.wake_reason = None
            if step.phase is Phase.MAIN and not step.spec.continue_on_error and not run.failing:
                run.failed_step = step.id
                run.error = f"step {step.id} failed: {error}"
        batch.ops.append(self._step_op(run, step))
        batch.events.append(
            ev.StepFailed(
                **self._event_base(run, step),
                attempt=step.attempts,
                error=error,
                output=output,
                duration=duration,
                will_retry=will_retry,
                retry_at=retry_at,
            )
        )

    def _apply_suspend(
        self, run: RunState, step: StepState, suspend: Suspend, batch: Batch
    ) -> None:
        self.timers.cancel(self.timer_key(run, step, "timeout"))
        now = self.clock.now()
        step.status = StepStatus.WAITING
        batch.ops.append(self._attempt_op(run, step, status="waiting"))
        if suspend.until is not None:
            step.wake_at = suspend.until
            step.wake_reason = "wait"
            until = suspend.until
            batch.after.append(lambda: self.set_timer(run, step, until, "wait"))
            batch.events.append(
                ev.StepWaiting(**self._event_base(run, step), reason="wait", until=until)
            )
        elif suspend.approval is not None:
            self._open_gate(run, step, suspend.approval, batch, now)
        elif suspend.child is not None:
            self._start_child(run, step, suspend.child, batch)
            if step.status is not StepStatus.WAITING:
                return
        batch.ops.append(self._step_op(run, step))

    def _open_gate(
        self, run: RunState, step: StepState, spec: ApprovalSpec, batch: Batch, now: datetime
    ) -> None:
        approval_id = new_id()
        deadline = now + timedelta(seconds=spec.timeout_s) if spec.timeout_s else None
        message = run.masker.mask_text(spec.message)
        show = run.masker.mask(spec.show)
        remind_at = now + timedelta(seconds=spec.remind_s) if spec.remind_s else None
        gate = {
            "approvers": spec.approvers,
            "min_approvals": spec.min_approvals,
            "message": message,
            "allow_self_approval": spec.allow_self_approval,
            "on_timeout": spec.on_timeout,
            "show": show,
            "escalate": spec.escalate,
            "remind_s": spec.remind_s,
            "remind_at": remind_at.isoformat() if remind_at else None,
            "stage": 0,
        }
        step.approval_id = approval_id
        step.on_timeout = spec.on_timeout
        step.gate = gate
        step.wake_reason = "approval"
        step.wake_at = deadline
        batch.ops.append(
            t.approvals.insert().values(
                id=approval_id,
                run_id=run.id,
                step_id=step.id,
                status="pending",
                spec=gate,
                requested_by=run.requested_by,
                created_at=now,
                deadline_at=deadline,
            )
        )
        batch.ops.append(
            audit.op(now, run.requested_by, "approval-request", approval_id, {"step": step.id})
        )
        if deadline is not None:
            batch.after.append(lambda: self.set_timer(run, step, deadline, "approval"))
        if remind_at is not None:
            batch.after.append(lambda: self.set_timer(run, step, remind_at, "remind"))
        batch.events.append(
            ev.ApprovalRequested(
                **self._event_base(run, step),
                approval_id=approval_id,
                approvers=spec.approvers,
                min_approvals=spec.min_approvals,
                message=message,
                requested_by=run.requested_by,
                deadline=deadline,
                show=show,
            )
        )
        batch.events.append(
            ev.StepWaiting(**self._event_base(run, step), reason="approval", until=deadline)
        )

    def _start_child(
        self, run: RunState, step: StepState, spec: ChildRunSpec, batch: Batch
    ) -> None:
        try:
            child, ops = self._spawn_child(run, step, spec)
        except BatonError as exc:
            self._fail(run, step, batch, error=str(exc))
            return
        batch.ops += ops
        batch.children.append(child)
        step.child_run_id = child.id
        step.wake_reason = "child"
        batch.events.append(
            ev.StepWaiting(**self._event_base(run, step), reason=f"child run {child.id}")
        )

    def _apply_wake(self, run: RunState, step: StepState, m: msg.Wake, batch: Batch) -> None:
        if m.reason == "timeout":
            if step.status is StepStatus.RUNNING and step.task is not None:
                step.cancel_reason = "timeout"
                step.task.cancel()
            return
        if m.reason == "remind":
            if step.status is StepStatus.WAITING and step.wake_reason == "approval":
                self._gate_reminder(run, step, batch)
            return
        if step.status is not StepStatus.WAITING or step.wake_reason != m.reason:
            return
        if m.reason == "retry":
            if run.stop_reason:
                return
            self._start_attempt(run, step, batch)
        elif m.reason == "wait":
            self._complete(
                run,
                step,
                batch,
                output={"waited_until": step.wake_at.isoformat() if step.wake_at else None},
            )
        elif m.reason == "approval":
            self._gate_timeout(run, step, batch)

    def _gate_update(self, step: StepState, batch: Batch, **values: Any) -> None:
        """Write the open gate's spec (and ``values``) while it is still pending."""
        batch.ops.append(
            t.approvals.update()
            .where(t.approvals.c.id == step.approval_id, t.approvals.c.status == "pending")
            .values(spec=dict(step.gate or {}), **values)
        )

    def _gate_reminder(self, run: RunState, step: StepState, batch: Batch) -> None:
        gate = step.gate = {**(step.gate or {}), "remind_at": None}
        self._gate_update(step, batch)
        now = self.clock.now()
        batch.ops.append(audit.op(now, "baton", "approval-reminder", step.approval_id or "", {}))
        batch.events.append(
            ev.ApprovalReminded(
                **self._event_base(run, step),
                approval_id=step.approval_id or "",
                approvers=gate.get("approvers") or {},
                deadline=step.wake_at,
            )
        )

    def _gate_escalate(self, run: RunState, step: StepState, batch: Batch) -> None:
        """Nobody decided in time: ask the escalation's approvers too, with a new
        deadline and the escalation's own ``on_timeout``."""
        now = self.clock.now()
        gate = dict(step.gate or {})
        more = gate.get("escalate") or {}
        before = gate.get("approvers") or {}
        added = more.get("approvers") or {}
        merged = {
            kind: list(dict.fromkeys([*(before.get(kind) or []), *(added.get(kind) or [])]))
            for kind in ("users", "usergroups", "groups")
        }
        deadline = now + timedelta(seconds=float(more.get("timeout_s") or 0))
        remind_s = gate.get("remind_s")
        remind_at = now + timedelta(seconds=remind_s) if remind_s else None
        gate.update(
            approvers=merged,
            on_timeout=more.get("on_timeout", "reject"),
            escalate=None,
            stage=int(gate.get("stage") or 0) + 1,
            escalated_at=now.isoformat(),
            remind_at=remind_at.isoformat() if remind_at else None,
        )
        step.gate, step.on_timeout, step.wake_at = gate, gate["on_timeout"], deadline
        self._gate_update(step, batch, deadline_at=deadline)
        batch.ops.append(self._step_op(run, step))
        batch.ops.append(
            audit.op(now, "baton", "approval-escalated", step.approval_id or "", {"added": added})
        )
        batch.after.append(lambda: self.set_timer(run, step, deadline, "approval"))
        if remind_at is not None:
            batch.after.append(lambda: self.set_timer(run, step, remind_at, "remind"))
        batch.events.append(
            ev.ApprovalEscalated(
                **self._event_base(run, step),
                approval_id=step.approval_id or "",
                approvers=merged,
                added=added,
                deadline=deadline,
            )
        )

    def _gate_timeout(self, run: RunState, step: StepState, batch: Batch) -> None:
        if step.on_timeout == "escalate" and (step.gate or {}).get("escalate"):
            self._gate_escalate(run, step, batch)
            return
        self.timers.cancel(self.timer_key(run, step, "remind"))
        now = self.clock.now()
        outcome = "approved" if step.on_timeout == "approve" else "timed_out"
        batch.ops.append(
            t.approvals.update()
            .where(t.approvals.c.id == step.approval_id, t.approvals.c.status == "pending")
            .values(status=outcome, closed_at=now, outcome_reason="timeout")
        )
        batch.ops.append(
            audit.op(
                self.clock.now(),
                "baton",
                "approval-timeout",
                step.approval_id or "",
                {"outcome": outcome},
            )
        )
        batch.events.append(
            ev.ApprovalClosed(
                **self._event_base(run, step),
                approval_id=step.approval_id or "",
                outcome=outcome,
                reason="timeout",
            )
        )
        output: dict[str, Any] = {
            "approval_id": step.approval_id,
            "approved_by": [],
            "timed_out": True,
        }
        if outcome == "approved":
            self._complete(run, step, batch, output=output)
        else:
            self._fail(run, step, batch, output=output, error="approval timed out with no decision")

    def _apply_stop(self, run: RunState, m: msg.Stop, batch: Batch) -> None:
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
        for step in run.steps.values():
            if step.phase is Phase.FINALLY:
                continue
            if step.status is StepStatus.RUNNING and step.task is not None:
                step.cancel_reason = "cancelled"
                step.task.cancel()
            elif step.status in (StepStatus.WAITING, StepStatus.PENDING):
                for reason in ("retry", "wait", "approval", "remind", "timeout"):
                    self.timers.cancel(self.timer_key(run, step, reason))
                if step.approval_id and step.status is StepStatus.WAITING:
                    batch.ops.append(
                        t.approvals.update()
                        .where(
                            t.approvals.c.id == step.approval_id, t.approvals.c.status == "pending"
                        )
                        .values(status="cancelled", closed_at=now, outcome_reason=m.by)
                    )
                if step.child_run_id and step.status is StepStatus.WAITING:
                    child = self._live(step.child_run_id)
                    if child is not None:
                        self._post(child, msg.Stop(status=m.status, by=m.by))
                    else:  # driven by another node, or by nobody until a server adopts it
                        batch.after.append(partial(self._stop_elsewhere, step.child_run_id, m.by))
                was_waiting = step.status is StepStatus.WAITING
                step.status = StepStatus.CANCELLED
                step.finished_at = now
                step.wake_at = None
                batch.ops.append(self._step_op(run, step))
                if was_waiting:
                    batch.ops.append(
                        self._attempt_op(run, step, status="cancelled", finished_at=now)
                    )
                batch.events.append(ev.StepCancelled(**self._event_base(run, step)))

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
                    self._attempt_op(
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
                    **self._event_base(run, step), attempt=step.attempts, rerun=rerun
                )
            )
            if rerun:
                step.status = StepStatus.PENDING
                step.wake_reason = None
                self._start_attempt(run, step, batch)
            else:
                step.status = StepStatus.INTERRUPTED
                step.wake_reason = None
                step.finished_at = now
                step.error = (
                    "interrupted: Baton stopped while this step ran, and it is not "
                    "idempotent and has no attempts left"
                )
                batch.ops.append(self._step_op(run, step))
                self._interrupted_fails_run(run, step)

    def _interrupted_fails_run(self, run: RunState, step: StepState) -> None:
        """An interrupted main step fails the run (unless it may fail), as a failed one."""
        if step.phase is Phase.MAIN and not step.spec.continue_on_error and not run.failing:
            run.failed_step = step.id
            run.error = f"step {step.id} {step.error}"

    def _note_worker_wait(
        self, run: RunState, step: StepState, waiting_for: str | None, batch: Batch
    ) -> None:
        """A step sent to a worker waits for one (``a worker labelled dc1``; None: a
        worker took it): shown in its output while it runs, and on its card."""
        step.output = {"waiting_for": waiting_for} if waiting_for else None
        batch.ops.append(self._step_op(run, step))
        if waiting_for:
            batch.events.append(ev.StepWaiting(**self._event_base(run, step), reason=waiting_for))

    # --- deciding what runs next -----------------------------------------------------

    def advance(self, run: RunState, batch: Batch) -> bool:
        """Start, skip or cancel what the DAG allows now; returns True once the run ended."""
        if self._stopping():
            return False
        while True:
            seen = 0
            while True:
                fresh = len(batch.events)
                if not self._advance_phase(run, batch, seen):
                    break
                seen = fresh
            active = [run.steps[i] for i in run.live if run.steps[i].phase is run.phase]
            if active:
                self._set_run_status(run, active, batch)
                return False
            pending = [s for s in run.in_phase(run.phase) if s.status is StepStatus.PENDING]
            if pending:  # what remains cannot run
                reason = (
                    "the run is stopping"
                    if run.stop_reason
                    else f"not run: step {run.failed_step} failed"
                )
                for step in pending:
                    self._skip(run, step, batch, reason)
            nxt = self._next_phase(run)
            if run.phase is Phase.MAIN and nxt is Phase.FINALLY:  # on_failure is not needed
                for step in run.in_phase(Phase.ON_FAILURE):
                    if step.status is StepStatus.PENDING:
                        self._skip(run, step, batch, "not needed: no step failed")
            if nxt is None:
                self._end_run(run, batch)
                return True
            run.phase = nxt
            run.full_scan = True

    def _next_phase(self, run: RunState) -> Phase | None:
        if run.phase is Phase.MAIN:
            if run.failing and not run.stop_reason and run.in_phase(Phase.ON_FAILURE):
                return Phase.ON_FAILURE
            return Phase.FINALLY
        if run.phase is Phase.ON_FAILURE:
            return Phase.FINALLY
        return None

    def _candidates(self, run: RunState, batch: Batch, seen: int) -> list[StepState]:
        """Pending steps of the current phase worth a look: all of them after a phase
        change or a (re)start, else the dependents of steps that moved in this batch."""
        if run.full_scan:
            run.full_scan = False
            return [s for s in run.in_phase(run.phase) if s.status is StepStatus.PENDING]
        ids: set[str] = set()
        for event in batch.events[seen:]:
            step_id = getattr(event, "step_id", None)
            if step_id is not None:
                ids.update(run.dependents.get(step_id, ()))
        found = [
            s
            for s in (run.steps[i] for i in ids)
            if s.status is StepStatus.PENDING and s.phase is run.phase
        ]
        if len(found) > 1:
            found.sort(key=lambda s: s.position)
        return found

    def _advance_phase(self, run: RunState, batch: Batch, seen: int) -> bool:
        changed = False
        blocked = run.phase is Phase.MAIN and (run.failing or bool(run.stop_reason))
        blocked = blocked or (run.phase is Phase.ON_FAILURE and bool(run.stop_reason))
        for step in self._candidates(run, batch, seen):
            if step.status is not StepStatus.PENDING:
                continue
            deps = [run.steps[n] for n in step.spec.needs if n in run.steps]
            if not all(d.status.terminal for d in deps):
                continue
            broken = [d.id for d in deps if d.broken]
            if broken:
                self._skip(run, step, batch, f"needs {', '.join(broken)}, which did not succeed")
                changed = True
                continue
            if blocked:
                continue
            if step.spec.when is not None:
                try:
                    go = templating.evaluate(step.spec.when, run.context())
                except TemplateError as exc:
                    step.attempts += 1
                    step.attempt_started = self.clock.now()
                    batch.ops.append(self._insert_attempt(run, step))
                    self._fail(run, step, batch, error=f"when: {exc}")
                    changed = True
                    continue
                if not go:
                    self._skip(run, step, batch, f"when: {step.spec.when} is false")
                    changed = True
                    continue
            self._start_attempt(run, step, batch)
            changed = True
        return changed

    def _skip(self, run: RunState, step: StepState, batch: Batch, reason: str) -> None:
        step.status = StepStatus.SKIPPED
        step.error = None
        step.finished_at = self.clock.now()
        batch.ops.append(self._step_op(run, step))
        batch.events.append(ev.StepSkipped(**self._event_base(run, step), reason=reason))

    def _insert_attempt(self, run: RunState, step: StepState) -> Op:
        row = {
            "run_id": run.id,
            "step_id": step.id,
            "number": step.attempts,
            "run_attempt": run.attempt,
            "status": "running",
            "started_at": step.attempt_started,
        }
        return Rows("attempt_new", [row])

    def _start_attempt(self, run: RunState, step: StepState, batch: Batch) -> None:
        now = self.clock.now()
        step.status = StepStatus.RUNNING
        step.attempts += 1
        step.attempt_started = now
        step.started_at = step.started_at or now
        step.finished_at = None
        step.wake_at = None
        step.wake_reason = None
        step.cancel_reason = None
        batch.ops += [
            self._step_op(run, step),
            self._insert_attempt(run, step),
        ]
        batch.events.append(ev.StepStarted(**self._event_base(run, step), attempt=step.attempts))
        batch.launches.append(step)

    def _set_run_status(self, run: RunState, active: list[StepState], batch: Batch) -> None:
        waiting = all(s.status is StepStatus.WAITING for s in active)
        status = RunStatus.WAITING if waiting else RunStatus.RUNNING
        if status is run.status:
            return
        run.status = status
        batch.ops.append(t.runs.update().where(t.runs.c.id == run.id).values(status=status.value))
        if waiting:
            reasons = sorted({s.wake_reason or "waiting" for s in active})
            batch.events.append(
                ev.RunWaiting(
                    run_id=run.id,
                    playbook=run.playbook.name,
                    at=self.clock.now(),
                    reason=", ".join(reasons),
                )
            )

    def _end_run(self, run: RunState, batch: Batch) -> None:
        now = self.clock.now()
        final_broken = [s for s in run.in_phase(Phase.FINALLY) if s.broken]
        if run.stop_reason:
            status = RunStatus(run.stop_reason)
            if status is RunStatus.CANCELLED and not run.error:
                run.error = f"cancelled by {run.stopped_by}"
        elif run.failing:
            status = RunStatus.FAILED
        elif final_broken:
            status = RunStatus.FAILED
            run.failed_step = final_broken[0].id
            run.error = f"step {final_broken[0].id} failed: {final_broken[0].error}"
        else:
            status = RunStatus.SUCCEEDED
        run.status = status
        batch.ops.append(
            t.runs.update()
            .where(t.runs.c.id == run.id)
            .values(
                status=status.value, finished_at=now, error=run.error, failed_step=run.failed_step
            )
        )
        duration = (now - (run.started_at or now)).total_seconds()
        base: dict[str, Any] = {
            "run_id": run.id,
            "playbook": run.playbook.name,
            "at": now,
            "status": status.value,
            "error": run.error,
            "failed_step": run.failed_step,
            "duration": duration,
        }
        event: ev.RunFinished
        if status is RunStatus.SUCCEEDED:
            event = ev.RunSucceeded(**base)
        elif status is RunStatus.CANCELLED:
            event = ev.RunCancelled(**base, by=run.stopped_by or "")
        elif status is RunStatus.TIMED_OUT:
            event = ev.RunTimedOut(**base)
        else:
            event = ev.RunFailed(**base)
        batch.events.append(event)

    # --- timers ------------------------------------------------------------------------

    def timer_key(self, run: RunState, step: StepState, reason: str) -> str:
        return f"step:{run.id}:{step.id}:{reason}"

    def set_timer(self, run: RunState, step: StepState, at: datetime, reason: str) -> None:
        self.timers.set(
            self.timer_key(run, step, reason),
            at,
            lambda: self._post(run, msg.Wake(step.id, reason)),
        )
