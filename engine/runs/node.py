"""What this node holds of the runs: the runs it drives and their driver tasks, the work
it counts busy (``Engine.wait_idle`` waits until there is none), whether it is stopping,
and its in-process locks. The engine's collaborators share this one object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from engine.runs.state import RunState

log = logging.getLogger(__name__)


class Node:
    def __init__(self, *, adopts: bool) -> None:
        self.adopts = adopts  # a `serve` node: it adopts runs whose driver is gone
        self.runs: dict[str, RunState] = {}
        self.drivers: dict[str, asyncio.Task[None]] = {}
        self.stopping = False
        self.busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def post(self, run: RunState, message: Any) -> None:
        """Put ``message`` in ``run``'s in-memory inbox and wake its driver."""
        if run.abandoned:
            return  # a late step result or timer of a run this node gave up
        run.inbox.append(message)
        if run.blocked:
            run.blocked = False
            self.busy_inc()
            run.wake.set()

    # --- idle accounting (tests and `baton run` wait on it) ----------------------------

    def busy_inc(self) -> None:
        self.busy += 1
        self._idle.clear()

    def busy_add(self, n: int) -> None:
        self.busy_inc() if n > 0 else self.busy_dec()

    def busy_dec(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no run has work it can do without time passing or people acting."""
        while self.busy:
            await self._idle.wait()
            await asyncio.sleep(0)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run background work the engine owns: counted by ``wait_idle``, its errors
        logged, cancelled at stop."""
        self.busy_inc()
        task = asyncio.create_task(self._tracked(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tracked(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except Exception:
            log.exception("background work failed")
        finally:
            self.busy_dec()
