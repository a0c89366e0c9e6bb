"""Applying a run's inbox commands: each becomes a message to the run machine, and its
answer is written in the same batch as what it changed. No I/O here."""

from __future__ import annotations

from datetime import datetime

from engine import audit
from engine.runs import inbox, remote
from engine.runs import messages as msg
from engine.runs.batch import Batch
from engine.runs.machine import RunMachine
from engine.runs.state import RunState, RunStatus


def apply(
    machine: RunMachine, run: RunState, m: msg.Command, batch: Batch, now: datetime
) -> inbox.Answer:
    """Apply one command to ``run`` (adding to ``batch``) and return its answer."""
    state, text = inbox.APPLIED, "applied"
    p = m.payload
    if m.kind == inbox.CANCEL:
        if run.stop_reason:
            state = inbox.REFUSED
            text = f"run {run.id} is already stopping ({run.stop_reason})"
        else:
            machine.apply(run, msg.Stop(status=RunStatus.CANCELLED.value, by=m.by), batch)
            text = f"cancelling run {run.id}"
        outcome = "ok" if state == inbox.APPLIED else "refused"
        batch.ops.append(audit.op(now, m.by, "cancel", run.id, {}, outcome))
    elif m.kind == inbox.GATE:
        closed = msg.GateClosed(
            step_id=p["step_id"],
            approval_id=p["approval_id"],
            outcome=p["outcome"],
            reason=p.get("reason", ""),
            output=p.get("output") or {},
        )
        machine.apply(run, closed, batch)
        text = f"approval {p['approval_id']} {p['outcome']}"
    elif m.kind == inbox.CHILD:
        ended = msg.ChildEnded(
            p["step_id"], p["child_run_id"], p["status"], p.get("output") or {}, p.get("error")
        )
        machine.apply(run, ended, batch)
        text = f"child run {p['child_run_id']} {p['status']}"
    elif m.kind == inbox.RESULT:
        state, text = remote.deliver(run, p)
    else:
        state, text = inbox.REFUSED, f"unknown command {m.kind!r}"
    batch.ops.append(inbox.answer(m.id, state, text, now))
    return inbox.Answer(state, text)
