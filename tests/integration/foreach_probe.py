"""A real action body for ``for_each`` tests, called by the ``python`` action: it counts
the items in flight (and the most seen at once), can hold every item at a gate the test
opens, and fails the items it is told to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from engine.actions import ActionContext
from engine.errors import ActionError


@dataclass
class Probe:
    in_flight: int = 0
    most: int = 0
    calls: list[Any] = field(default_factory=list)
    gate: asyncio.Event | None = None

    def reset(self, *, held: bool = False) -> None:
        self.in_flight = self.most = 0
        self.calls = []
        self.gate = asyncio.Event() if held else None


PROBE = Probe()


async def visit(ctx: ActionContext, item: Any, index: int, fail: bool = False) -> dict[str, Any]:
    PROBE.in_flight += 1
    PROBE.most = max(PROBE.most, PROBE.in_flight)
    PROBE.calls.append(item)
    try:
        if PROBE.gate is not None:
            await PROBE.gate.wait()
        else:
            for _ in range(3):  # let the other items in flight run meanwhile
                await asyncio.sleep(0)
        if fail:
            raise ActionError(f"{item} is broken", output={"seen": item})
        return {"seen": item, "index": index, "attempt": ctx.attempt}
    finally:
        PROBE.in_flight -= 1
