"""Telling actions that hold resources across steps when to let go of them.

An action may define ``run_ended(run_id)`` (a run ended: the ``ssh`` action closes the
connections its steps shared) and ``async close()`` (Baton stops). ``ActionLifecycle``
watches the engine's events for run ends and calls them on the actions loaded so far; an
action that was never loaded holds nothing. A worker, which sees no run end, calls
``release_run`` once it holds no step of the run, and ``close_actions`` when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from engine import events as ev
from engine.actions.registry import Registry
from engine.bus import EventBus

log = logging.getLogger("baton.actions")


class ActionLifecycle:
    def __init__(self, bus: EventBus, registry: Registry) -> None:
        self.registry = registry
        self._events = bus.subscribe(lambda event: isinstance(event, ev.RunFinished))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="action-lifecycle")

    async def _watch(self) -> None:
        async for event in self._events:
            self.run_ended(event.run_id)

    def run_ended(self, run_id: str) -> None:
        release_run(self.registry, run_id)

    async def close(self) -> None:
        """Stop watching, then let every loaded action release what it holds."""
        self._events.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await close_actions(self.registry)


def release_run(registry: Registry, run_id: str) -> None:
    """Every loaded action lets go of what it holds for ``run_id``."""
    for action in registry.loaded():
        hook = getattr(action, "run_ended", None)
        if hook is None:
            continue
        try:
            hook(run_id)
        except Exception:  # one action's cleanup must not stop the others'
            log.exception("action %s failed to release run %s", action.name, run_id)


async def close_actions(registry: Registry) -> None:
    """Every loaded action lets go of everything it holds (Baton stops)."""
    for action in registry.loaded():
        close = getattr(action, "close", None)
        if close is not None:
            try:
                await close()
            except Exception:  # one action's cleanup must not stop the others'
                log.exception("action %s failed to close", action.name)
