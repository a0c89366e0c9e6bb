"""The run machine's side of approval gates: a waiting step opens its gate, is reminded,
escalated, timed out, closed by a decision or cancelled with its run, as rows, events and
timers in the batch. The rules are the ``Gate``'s (``engine.runs.gates``). No I/O here.

Every update of a gate's row names its id and finds it still pending: a gate's move
never touches another gate, of this run or any other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine import audit
from engine import events as ev
from engine.actions import ApprovalSpec
from engine.runs import messages as msg
from engine.runs.batch import Batch, step_op
from engine.runs.gates import Escalation, Gate
from engine.runs.moves import Moves
from engine.runs.state import RunState, StepState, StepStatus
from storage import tables as t
from storage.store import Op


def pending_update(approval_id: str | None, **values: Any) -> Op:
    """Update the gate ``approval_id`` while it is still pending (and no other)."""
    return (
        t.approvals.update()
        .where(t.approvals.c.id == approval_id, t.approvals.c.status == "pending")
        .values(**values)
    )


class Approvals:
    def __init__(self, moves: Moves, new_id: Callable[[], str]) -> None:
        """``new_id``: the id of a new gate."""
        self.moves = moves
        self.clock = moves.clock
        self.new_id = new_id

    def open(self, run: RunState, step: StepState, spec: ApprovalSpec, batch: Batch) -> None:
        """The step waits at a new gate until it is decided or times out."""
        now = self.clock.now()
        approval_id = self.new_id()
        gate = Gate.opening(spec, run.masker, now)
        deadline = gate.deadline(now, spec.timeout_s)
        step.approval_id = approval_id
        step.gate = gate
        step.wake_reason = "approval"
        step.wake_at = deadline
        batch.ops.append(
            t.approvals.insert().values(
                id=approval_id,
                run_id=run.id,
                step_id=step.id,
                status="pending",
                spec=gate.spec(),
                requested_by=run.requested_by,
                created_at=now,
                deadline_at=deadline,
            )
        )
        batch.ops.append(
            audit.op(now, run.requested_by, "approval-request", approval_id, {"step": step.id})
        )
        if deadline is not None:
            batch.set_timer(step, "approval", deadline)
        if gate.remind_at is not None:
            batch.set_timer(step, "remind", gate.remind_at)
        base = self.moves.event_base(run, step)
        batch.events.append(
            ev.ApprovalRequested(
                **base,
                approval_id=approval_id,
                approvers=spec.approvers,
                min_approvals=spec.min_approvals,
                message=gate.message,
                requested_by=run.requested_by,
                deadline=deadline,
                show=gate.show,
            )
        )
        batch.events.append(ev.StepWaiting(**base, reason="approval", until=deadline))

    def closed(self, run: RunState, step: StepState, m: msg.GateClosed, batch: Batch) -> None:
        """A decision closed a gate: the step waiting at that very gate goes on or fails;
        a decision on any other gate (an earlier attempt's, another step's) changes
        nothing."""
        if step.status is not StepStatus.WAITING or step.approval_id != m.approval_id:
            return
        batch.cancel_timers(step, "approval", "remind")
        batch.events.append(
            ev.ApprovalClosed(
                **self.moves.event_base(run, step),
                approval_id=m.approval_id,
                outcome=m.outcome,
                reason=m.reason,
            )
        )
        if m.outcome == "approved":
            self.moves.complete(run, step, batch, output=m.output)
        else:  # a rejection is final: never retried
            self.moves.fail(run, step, batch, error=m.reason, output=m.output)

    def remind(self, run: RunState, step: StepState, batch: Batch) -> None:
        """Nobody decided for ``remind``: the approvers are reminded, once per stage."""
        if step.status is not StepStatus.WAITING or step.wake_reason != "approval":
            return
        gate = step.gate = (step.gate or Gate()).reminded()
        batch.ops.append(pending_update(step.approval_id, spec=gate.spec()))
        now = self.clock.now()
        batch.ops.append(audit.op(now, "baton", "approval-reminder", step.approval_id or "", {}))
        batch.events.append(
            ev.ApprovalReminded(
                **self.moves.event_base(run, step),
                approval_id=step.approval_id or "",
                approvers=gate.approvers,
                deadline=step.wake_at,
            )
        )

    def timed_out(self, run: RunState, step: StepState, batch: Batch) -> None:
        """Nobody decided in time: escalate, or close as the gate's ``on_timeout`` says."""
        gate = step.gate or Gate()
        more = gate.escalation
        if more is not None:
            self._escalate(run, step, gate, more, batch)
            return
        batch.cancel_timers(step, "remind")
        now = self.clock.now()
        outcome = gate.timeout_outcome()
        batch.ops.append(
            pending_update(
                step.approval_id, status=outcome, closed_at=now, outcome_reason="timeout"
            )
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
                **self.moves.event_base(run, step),
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
            self.moves.complete(run, step, batch, output=output)
        else:
            self.moves.fail(
                run, step, batch, output=output, error="approval timed out with no decision"
            )

    def _escalate(
        self, run: RunState, step: StepState, gate: Gate, more: Escalation, batch: Batch
    ) -> None:
        """The escalation's approvers are asked too, with a new deadline and the
        escalation's own ``on_timeout``."""
        now = self.clock.now()
        added = more.approvers
        gate, deadline = gate.escalated(more, now)
        step.gate, step.wake_at = gate, deadline
        batch.ops.append(pending_update(step.approval_id, spec=gate.spec(), deadline_at=deadline))
        batch.ops.append(step_op(run, step))
        batch.ops.append(
            audit.op(now, "baton", "approval-escalated", step.approval_id or "", {"added": added})
        )
        batch.set_timer(step, "approval", deadline)
        if gate.remind_at is not None:
            batch.set_timer(step, "remind", gate.remind_at)
        batch.events.append(
            ev.ApprovalEscalated(
                **self.moves.event_base(run, step),
                approval_id=step.approval_id or "",
                approvers=gate.approvers,
                added=added,
                deadline=deadline,
            )
        )

    def cancel(self, step: StepState, by: str, now: datetime, batch: Batch) -> None:
        """The run stops: the step's open gate is cancelled (and only it)."""
        if step.approval_id and step.status is StepStatus.WAITING:
            batch.ops.append(
                pending_update(
                    step.approval_id, status="cancelled", closed_at=now, outcome_reason=by
                )
            )
