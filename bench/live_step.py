"""The step of the ``live`` bench's run (``python`` action ``bench.live_step:emit``): log
lines that carry the moment they were sent, once the bench says its clients listen.

Its own module, so that the engine's import of it and the bench's are one module (one
``GO``) however the bench was started (``python -m bench live`` or ``-m bench.live``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.actions import ActionContext

GO = asyncio.Event()
"""Set by the bench once every client is connected to the run's live stream."""


async def emit(ctx: ActionContext, lines: int, every_ms: int) -> dict[str, Any]:
    """``lines`` log lines ``every_ms`` apart, each ``line N sent T`` with T the sending
    ``time.monotonic()`` (one clock for every process on Linux)."""
    await GO.wait()
    for n in range(lines):
        await ctx.log(f"line {n} sent {time.monotonic():.6f}")
        await asyncio.sleep(every_ms / 1000)  # the workload's pace: a line every 50 ms
    return {"lines": lines}
