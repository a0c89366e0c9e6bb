"""Properties of the run machine over random playbooks (main steps with random ``needs``,
retries and outcomes, ``on_failure`` and ``finally`` steps), driven by hand in a random
order of step ends, retry timers and an optional cancel, then retried as a new attempt
of the run when it did not succeed:

- every step ends exactly once per run attempt, and the run ends once;
- no step starts before the steps it ``needs`` have ended (nor before the phases before
  its own have ended);
- ``finally`` runs once per attempt: each of its steps whose needs did not break starts once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import events as ev
from engine.playbooks.model import Phase, Playbook
from engine.runs import messages as msg
from engine.runs.state import RunState, StepStatus
from tests.fakes.machine import Driver, new_run, playbook, step

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENDS = (ev.StepSucceeded, ev.StepSkipped, ev.StepCancelled, ev.StepInterrupted)


@st.composite
def phase_steps(draw: st.DrawFn, prefix: str, most: int, least: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(least, most))):
        earlier = [s["id"] for s in out]
        needs = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        more: dict[str, Any] = {}
        if draw(st.booleans()):
            more["retry"] = {"attempts": draw(st.integers(2, 3)), "delay": "1s"}
        if draw(st.integers(0, 4)) == 0:
            more["continue_on_error"] = True
        out.append(step(f"{prefix}{i}", *needs, **more))
    return out


@st.composite
def playbooks(draw: st.DrawFn) -> Playbook:
    return playbook(
        draw(phase_steps("m", 6, least=1)),
        on_failure=draw(phase_steps("f", 2)),
        finally_=draw(phase_steps("z", 3)),
    )


def ended(event: Any) -> bool:
    if isinstance(event, ev.StepFailed):
        return not event.will_retry
    return isinstance(event, ENDS)


def drive(d: Driver, run: RunState, data: st.DataObject) -> list[Any]:
    """Drive ``run`` to its end in an order ``data`` draws; returns every event."""
    log = list(d.turn(run).events)
    stop_at = data.draw(st.one_of(st.none(), st.integers(1, 12)), label="stop at turn")
    turn = 0
    while not d.ended[run.id]:
        turn += 1
        assert turn < 300, "the run never ends"
        if turn == stop_at:
            log += d.turn(run, msg.Stop(status="cancelled", by="dave")).events
            continue
        moves = [("end", sid) for (rid, sid) in d.running if rid == run.id]
        moves += [
            ("retry", sid) for (rid, sid, why) in d.timers if rid == run.id and why == "retry"
        ]
        assert moves, f"stuck: {[(s.id, s.status) for s in run.steps.values()]}"
        kind, sid = data.draw(st.sampled_from(sorted(moves)), label="next")
        if kind == "retry":
            log += d.fire(run, sid, "retry").events
            continue
        cancelled = (run.id, sid, "cancelled") in d.task_cancels
        outcome = "cancelled" if cancelled else data.draw(st.sampled_from(["succeeded", "failed"]))
        log += d.finish(run, sid, outcome, error=None if outcome == "succeeded" else outcome).events
    return log


def check(run: RunState, log: list[Any], kept: frozenset[str] = frozenset()) -> None:
    """``kept``: steps that succeeded in an earlier attempt of the run (ended already)."""
    ends = [e.step_id for e in log if ended(e)]
    assert sorted(ends) == sorted(set(run.steps) - kept), "each step ends exactly once"
    assert sum(isinstance(e, ev.RunFinished) for e in log) == 1
    assert isinstance(log[-1], ev.RunFinished)
    done: dict[str, int] = dict.fromkeys(kept, -1)
    starts: dict[str, int] = {}
    order = list(Phase)
    for i, e in enumerate(log):
        if ended(e):
            done[e.step_id] = i
        if isinstance(e, ev.StepStarted):
            starts[e.step_id] = starts.get(e.step_id, 0) + 1
            s = run.steps[e.step_id]
            for need in s.spec.needs:
                assert need in done, f"{s.id} started before {need} ended"
            for other in run.steps.values():  # the phases before its own are over
                if order.index(other.phase) < order.index(s.phase):
                    assert other.id in done, f"{s.id} started before {other.id} ended"
    for z in run.in_phase(Phase.FINALLY):
        ok = not any(run.steps[n].broken for n in z.spec.needs)
        firsts = [e for e in log if isinstance(e, ev.StepStarted) and e.step_id == z.id]
        assert len([e for e in firsts if e.attempt == 1]) == (1 if ok else 0), z.id


def next_attempt(pb: Playbook, run: RunState) -> RunState:
    """The run retried (``engine.runs.retries``): its succeeded main steps are kept, the
    rest run again."""
    again = new_run(pb, run.id)
    again.attempt = run.attempt + 1
    for sid, old in run.steps.items():
        if old.phase is Phase.MAIN and old.status is StepStatus.SUCCEEDED:
            s = again.steps[sid]
            s.status, s.attempts, s.output = StepStatus.SUCCEEDED, old.attempts, old.output
    return again


@SETTINGS
@given(playbooks(), st.data())
def test_random_dags_end_every_step_once_in_order(pb: Playbook, data: st.DataObject) -> None:
    d = Driver()
    run = new_run(pb)
    check(run, drive(d, run, data))
    if run.status.value == "succeeded":
        return
    again = next_attempt(pb, run)
    kept = frozenset(s.id for s in again.steps.values() if s.status is StepStatus.SUCCEEDED)
    log = drive(d, again, data)
    check(again, log, kept)
    assert not [e for e in log if isinstance(e, ev.StepStarted) and e.step_id in kept]
