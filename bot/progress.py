"""Live progress of a run in a terminal, rendered from engine events."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from engine import events as ev
from engine.playbooks import params as paramlib
from engine.playbooks.durations import format_duration
from engine.runs.requests import Plan

TAIL_LINES = 20


class Progress:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._items: dict[tuple[str, str], ev.ItemsProgressed] = {}

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def render(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted():
                again = " (resumed)" if event.resumed else ""
                self.say(
                    f"run {event.run_id}: {event.playbook}{again} "
                    f"by {event.requested_by} {_params(event.params)}".rstrip()
                )
            case ev.RunQueued():
                self.say(f"run {event.run_id}: queued behind concurrency key {event.key!r}")
            case ev.StepStarted():
                extra = f" (attempt {event.attempt})" if event.attempt > 1 else ""
                self.say(f"  ▶ {event.step_id}{extra}")
            case ev.StepSucceeded():
                self.say(f"  ✓ {event.step_id}  {format_duration(event.duration)}")
            case ev.StepFailed():
                when = ""
                if event.will_retry and event.retry_at is not None:
                    delay = (event.retry_at - event.at).total_seconds()
                    when = f"; retrying in {format_duration(delay)}"
                self.say(
                    f"  ✗ {event.step_id}  {format_duration(event.duration)}: "
                    f"{_first_line(event.error)}{when}"
                )
            case ev.StepSkipped():
                self.say(f"  - {event.step_id} skipped ({event.reason})")
            case ev.StepWaiting():
                until = f" until {event.until:%Y-%m-%d %H:%M:%S}Z" if event.until else ""
                self.say(f"  … {event.step_id} waiting for {event.reason}{until}")
            case ev.ApprovalRequested():
                self.say(
                    f"  ? approval {event.approval_id} needed: {event.message} "
                    f"(approve from chat or the API)"
                )
            case ev.StepCancelled():
                self.say(f"  ⊘ {event.step_id} cancelled")
            case ev.StepInterrupted():
                what = "re-running" if event.rerun else "not re-run"
                self.say(f"  ! {event.step_id} was interrupted by a restart; {what}")
            case ev.ItemsProgressed():
                if self._worth_a_line(event):
                    failed = f"; failed: {event.failures}" if event.failures else ""
                    self.say(f"  … {event.step_id}: {event.text}{failed}")
            case ev.RunLogged():
                self.say(f"    {event.message}")
            case ev.RunFinished():
                self.say(
                    f"run {event.run_id}: {event.status} in "
                    f"{format_duration(event.duration)}"
                    + (f" — {event.error}" if event.error else "")
                )
            case _:
                pass

    def _worth_a_line(self, event: ev.ItemsProgressed) -> bool:
        """A fan-out's progress, at most about every tenth of its items: always when an
        item failed or the last one ended, never twice the same."""
        key = (event.run_id, event.step_id)
        last = self._items.get(key)
        step = max(1, event.total // 10)
        worth = (
            last is None
            or event.failed != last.failed
            or event.done == event.total != last.done
            or event.done >= last.done + step
        )
        if worth:
            self._items[key] = event
        return worth

    def failures(self, steps: list[dict[str, Any]]) -> None:
        for step in steps:
            self.say(f"\nstep {step['id']} {step['status']}: {step['error']}")
            output = step.get("output") or {}
            for stream in ("stderr", "stdout", "text"):
                text = output.get(stream)
                if isinstance(text, str) and text.strip():
                    lines = text.rstrip().splitlines()[-TAIL_LINES:]
                    self.say(f"  {stream} (last {len(lines)} lines):")
                    for line in lines:
                        self.say(f"    {line}")

    def plan(self, plan: Plan) -> None:
        self.say(f"dry run of {plan.playbook}: nothing will be executed")
        self.say(f"params: {_params(plan.params) or '(none)'}")
        if plan.concurrency_key:
            self.say(f"concurrency key: {plan.concurrency_key}")
        for title, waves in (
            ("steps", plan.waves),
            ("on_failure", plan.on_failure),
            ("finally", plan.finally_),
        ):
            if not waves:
                continue
            self.say(f"{title}:")
            for i, wave in enumerate(waves, 1):
                together = " | ".join(wave)
                note = "  (in parallel)" if len(wave) > 1 else ""
                self.say(f"  {i}. {together}{note}")


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={paramlib.text(v)}" for k, v in params.items() if v is not None)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
