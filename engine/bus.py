"""The in-process event bus: publish never blocks the engine; each subscriber has a queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from engine.events import Event

log = logging.getLogger(__name__)


class Subscription:
    def __init__(self, bus: EventBus, accept: Callable[[Event], bool] | None) -> None:
        self._bus = bus
        self._accept = accept
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def offer(self, event: Event) -> None:
        if self._accept is None or self._accept(event):
            self.queue.put_nowait(event)

    def close(self) -> None:
        self._bus._subs.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    def drain(self) -> list[Event]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._watchers: list[Callable[[Event], None]] = []

    def subscribe(self, accept: Callable[[Event], bool] | None = None) -> Subscription:
        sub = Subscription(self, accept)
        self._subs.add(sub)
        return sub

    def watch(self, watcher: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``watcher`` with every event as it is published, in the publisher's turn:
        for cheap bookkeeping (counters) that must neither queue events nor lag behind
        them. Returns the function that stops it. A watcher that raises is logged, and
        the engine goes on."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher)

    def publish(self, event: Event) -> None:
        self.tally(event)
        for sub in tuple(self._subs):
            sub.offer(event)

    def tally(self, event: Event) -> None:
        """Tell ``event`` to the watchers only: bookkeeping (what became of an alert or a
        schedule's fire) that no subscriber shows; cards and progress take every event
        they get for news of a run."""
        for watcher in tuple(self._watchers):
            try:
                watcher(event)
            except Exception:
                log.exception("an event watcher failed on %s", type(event).__name__)
