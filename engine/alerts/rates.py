"""Alert rate limits: the window of run starts one limit counts (a trigger's ``rate``,
or ``BATON_ALERT_RATE`` shared by all triggers), and a rate's period as written."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Window:
    """Start times of the runs a limit counts, and the hold episode beyond it."""

    limit: int
    period: float
    starts: deque[float] = field(default_factory=deque)
    held: int = 0
    held_since: datetime | None = None
    episodes: int = 0  # hold episodes so far: each gets one summary message

    def full(self, now: float) -> bool:
        while self.starts and now - self.starts[0] >= self.period:
            self.starts.popleft()
        return len(self.starts) >= self.limit


def period_text(seconds: float) -> str:
    """A rate's period as written: ``10m``, ``1h``, ``90s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
