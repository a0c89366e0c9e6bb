"""What runs next: the steps whose ``needs`` have ended start (or are skipped), phase
after phase (main, on_failure, finally), and the run ends when nothing is left. No I/O
here: the run machine (``engine.runs.machine``) calls ``Dag.advance`` once per turn."""

from __future__ import annotations

from typing import Any

from engine import events as ev
from engine.errors import TemplateError
from engine.playbooks import templating
from engine.playbooks.model import Phase
from engine.runs.batch import Batch, insert_attempt
from engine.runs.moves import Moves
from engine.runs.state import RunState, RunStatus, StepState, StepStatus
from storage import tables as t


class Dag:
    def __init__(self, moves: Moves) -> None:
        self.moves = moves
        self.clock = moves.clock

    def advance(self, run: RunState, batch: Batch) -> bool:
        """Start, skip or cancel what the DAG allows now; returns True once the run ended."""
        if self.moves.stopping():
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
                    self.moves.skip(run, step, batch, reason)
            nxt = next_phase(run)
            if run.phase is Phase.MAIN and nxt is Phase.FINALLY:  # on_failure is not needed
                for step in run.in_phase(Phase.ON_FAILURE):
                    if step.status is StepStatus.PENDING:
                        self.moves.skip(run, step, batch, "not needed: no step failed")
            if nxt is None:
                self._end_run(run, batch)
                return True
            run.phase = nxt
            run.full_scan = True

    def _advance_phase(self, run: RunState, batch: Batch, seen: int) -> bool:
        changed = False
        blocked = run.phase is Phase.MAIN and (run.failing or bool(run.stop_reason))
        blocked = blocked or (run.phase is Phase.ON_FAILURE and bool(run.stop_reason))
        for step in candidates(run, batch, seen):
            if step.status is not StepStatus.PENDING:
                continue
            deps = [run.steps[n] for n in step.spec.needs if n in run.steps]
            if not all(d.status.terminal for d in deps):
                continue
            broken = [d.id for d in deps if d.broken]
            if broken:
                reason = f"needs {', '.join(broken)}, which did not succeed"
                self.moves.skip(run, step, batch, reason)
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
                    batch.ops.append(insert_attempt(run, step))
                    self.moves.fail(run, step, batch, error=f"when: {exc}")
                    changed = True
                    continue
                if not go:
                    self.moves.skip(run, step, batch, f"when: {step.spec.when} is false")
                    changed = True
                    continue
            self.moves.start_attempt(run, step, batch)
            changed = True
        return changed

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


def next_phase(run: RunState) -> Phase | None:
    if run.phase is Phase.MAIN:
        if run.failing and not run.stop_reason and run.in_phase(Phase.ON_FAILURE):
            return Phase.ON_FAILURE
        return Phase.FINALLY
    if run.phase is Phase.ON_FAILURE:
        return Phase.FINALLY
    return None


def candidates(run: RunState, batch: Batch, seen: int) -> list[StepState]:
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
