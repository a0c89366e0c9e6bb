"""The timers of a run's steps: each fires a ``msg.Wake`` into the run's inbox. Keyed by
run, step and reason, so a step has one timer per reason at most (setting it again
moves it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.runs import messages as msg
from engine.runs.batch import TIMER_REASONS
from engine.runs.state import RunState
from engine.timing import Timers


def key(run_id: str, step_id: str, reason: str) -> str:
    return f"step:{run_id}:{step_id}:{reason}"


class StepTimers:
    def __init__(self, timers: Timers, post: Callable[[RunState, Any], None]) -> None:
        """``post``: put a message in a run's inbox (``Node.post``)."""
        self.timers = timers
        self.post = post

    def set(self, run: RunState, step_id: str, reason: str, at: datetime) -> None:
        self.timers.set(
            key(run.id, step_id, reason), at, lambda: self.post(run, msg.Wake(step_id, reason))
        )

    def cancel(self, run: RunState, step_id: str, reason: str) -> None:
        self.timers.cancel(key(run.id, step_id, reason))

    def cancel_all(self, run: RunState, step_id: str) -> None:
        for reason in TIMER_REASONS:
            self.cancel(run, step_id, reason)
