"""A run's timeline (Gantt): a row per step, a bar per attempt, laid out here and drawn
as SVG by the ``_timeline.html`` template. A bar still running ends at ``now``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.playbooks.durations import format_duration
from engine.views.runview import Bar

WIDTH = 720.0  # the bars' area, in SVG units
LABEL = 160.0  # the step names' column
ROW = 22.0


@dataclass(frozen=True)
class Box:
    step_id: str
    attempt: int
    status: str
    x: float
    width: float
    y: float
    title: str


@dataclass(frozen=True)
class Timeline:
    rows: list[str]
    boxes: list[Box]
    span: str
    width: float = LABEL + WIDTH
    label: float = LABEL
    row: float = ROW

    @property
    def height(self) -> float:
        return max(1, len(self.rows)) * ROW + 4


def layout(bars: list[Bar], order: list[str], now: datetime) -> Timeline:
    """Bars placed on one time axis from the first start to the last end (or ``now``);
    steps in the run's order, then any other that has attempts."""
    if not bars:
        return Timeline([], [], "")
    rows = [s for s in order if any(b.step_id == s for b in bars)]
    rows += [b.step_id for b in bars if b.step_id not in rows]
    start = min(b.started_at for b in bars)
    end = max((b.finished_at or now) for b in bars)
    total = max((end - start).total_seconds(), 1e-3)
    scale = WIDTH / total
    boxes = []
    for bar in bars:
        began = (bar.started_at - start).total_seconds()
        lasted = ((bar.finished_at or now) - bar.started_at).total_seconds()
        of_run = f" (run attempt {bar.run_attempt})" if bar.run_attempt > 1 else ""
        title = (
            f"{bar.step_id} attempt {bar.number}{of_run}: {bar.status}, {format_duration(lasted)}"
        )
        boxes.append(
            Box(
                step_id=bar.step_id,
                attempt=bar.number,
                status=bar.status,
                x=round(LABEL + began * scale, 1),
                width=round(max(2.0, lasted * scale), 1),
                y=rows.index(bar.step_id) * ROW + 2,
                title=title,
            )
        )
    return Timeline(rows, boxes, format_duration(total))
