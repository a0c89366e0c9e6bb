"""Driving a ``for_each`` step: its items as sub-steps, at most ``parallel`` at a time.

The step's task runs ``FanOut.run``. Each item runs the step's action with the item in
its templates (``{{ item }}`` or the ``as`` name, and ``{{ index }}``), with the step's
``retry`` and ``timeout`` applied per item. Every move of an item reaches the run's
driver as ``ItemNews`` and becomes one small row write (``step_items``) in the driver's
next commit; an item's start is committed before its action runs, so a crash finds it
``running`` and the idempotency rule of steps decides (``resume``). Once more items have
failed than ``max_failures`` allows, no item starts any more: the running ones finish,
the rest are ``skipped`` and the step fails naming the failed items.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from engine.errors import TemplateError
from engine.playbooks import foreach, templating
from engine.playbooks.foreach import ForEach, Item, Tally, label, outcome, output
from engine.runs import messages as msg
from engine.runs.items import ItemNews, settle
from engine.runs.state import RunState, StepState
from engine.timing import Timers

Act = Callable[[dict[str, Any], int, Callable[[], str | None]], Awaitable[Any]]
"""Run the step's action once: (template context, attempt, why it was cancelled)."""
Post = Callable[[Any], None]


def resume(items: list[Item], idempotent: bool, attempts: int) -> list[Item]:
    """Items found in flight when the process died (``running``) run again only when the
    step is idempotent or the item has attempts left; otherwise they are ``interrupted``
    (a failure). Items between two attempts (``waiting``) go on. Returns those changed."""
    changed = []
    for item in items:
        if item.status == "waiting":
            item.status = "pending"
        elif item.status == "running":
            if idempotent or item.attempts < attempts:
                item.status = "pending"
            else:
                item.status = "interrupted"
                item.error = (
                    "interrupted: Baton stopped while this item ran, and the step is not "
                    "idempotent and has no attempts left"
                )
            changed.append(item)
    return changed


_BUSY = ("running", "waiting")


@dataclass
class _Counts:
    """A fan-out's tally kept up to date item by item (no pass over all items per move)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    names: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, items: list[Item]) -> _Counts:
        tally = Tally.of(items)
        return cls(tally.total, tally.done, tally.failed, tally.running, list(tally.failed_names))

    def move(self, item: Item, before: str) -> None:
        """``item`` went from status ``before`` to its status now."""
        now = item.status
        self.done += (now in foreach.FINISHED) - (before in foreach.FINISHED)
        self.failed += (now in foreach.FAILED) - (before in foreach.FAILED)
        self.running += (now in _BUSY) - (before in _BUSY)
        newly_failed = now in foreach.FAILED and before not in foreach.FAILED
        if newly_failed and len(self.names) < foreach.KEPT_NAMES:
            self.names.append(label(item.value))

    def tally(self) -> Tally:
        return Tally(self.total, self.done, self.failed, self.running, tuple(self.names))


class FanOut:
    def __init__(
        self,
        run: RunState,
        step: StepState,
        *,
        post: Post,
        act: Act,
        load: Callable[[], Awaitable[list[Item]]],
        now: Callable[[], datetime],
        timers: Timers,
        busy: Callable[[int], None] = lambda n: None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """``busy(+1)``/``busy(-1)``: the engine's count of work in progress (its
        ``wait_idle``) while an item acts; an item waiting for its retry does not count."""
        assert step.spec.for_each is not None
        self.run_state = run
        self.step = step
        self.spec: ForEach = step.spec.for_each
        self._post = post
        self._act = act
        self._load = load
        self._now = now
        self.timers = timers
        self._busy = busy
        self._stopping = stopping
        self.items: list[Item] = []
        self.counts = _Counts()
        self.reasons: dict[int, str] = {}
        self.stop: str | None = None

    async def run(self) -> msg.Finished:
        """Plan (or reload) the items, run them, and say how the step ended."""
        attempt = self.step.attempts
        try:
            self.items = await self._load()
            if not self.items:
                self.items = self._plan(await self._values())
                await self._tell(self.items, "item_new", commit=True)
            else:
                changed = resume(
                    self.items, self.step.spec.idempotent, self.step.spec.retry.attempts
                )
                self.counts = _Counts.of(self.items)
                if changed:
                    await self._tell(changed)
            await self._drive()
            if self.stop == "shutdown":
                return self._stopped(attempt)
        except TemplateError as exc:
            return msg.Finished(self.step.id, attempt, "failed", error=f"for_each.items: {exc}")
        except _BadList as exc:
            return msg.Finished(self.step.id, attempt, "failed", error=str(exc))
        except asyncio.CancelledError:
            return self._stopped(attempt)
        status, error = outcome(self.spec, self.items)
        return msg.Finished(self.step.id, attempt, status, output=output(self.items), error=error)

    async def _values(self) -> list[Any]:
        """The list, rendered: a template's value or a YAML list (its strings rendered)."""
        values = await templating.render_step(self.spec.items, self.run_state.context())
        if isinstance(values, tuple):
            values = list(values)
        if not isinstance(values, list):
            raise _BadList(
                f"for_each.items must give a list, but gave {type(values).__name__} "
                f"{repr(values)[:80]}: write a YAML list or a template of a list "
                '(e.g. "{{ params.hosts }}")'
            )
        if len(values) > foreach.MAX_ITEMS:
            raise _BadList(
                f"for_each.items gave {len(values)} items, more than {foreach.MAX_ITEMS}: "
                "split the list over several steps or runs"
            )
        return values

    def _plan(self, values: list[Any]) -> list[Item]:
        items = [Item(index=i, value=v) for i, v in enumerate(values)]
        self.counts = _Counts(total=len(items))
        return items

    async def _drive(self) -> None:
        """Keep up to ``parallel`` items in flight until none is left or too many failed."""
        queue = deque(i for i in self.items if i.status == "pending")
        running: set[asyncio.Task[None]] = set()
        try:
            while queue or running:
                while queue and len(running) < self.spec.parallel and not self._held():
                    item = queue.popleft()
                    self._busy(+1)
                    running.add(asyncio.create_task(self._item(item)))
                if not running:
                    break
                self._busy(-1)  # the items count while they act
                try:
                    _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._busy(+1)
        except asyncio.CancelledError:
            self.stop = self.step.cancel_reason or "cancelled"
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
            if self.stop != "shutdown":  # a restart runs them; a cancel never will
                self._skip(queue, f"not started: the run was {self.stop}")
            raise
        if queue and self._stopping():  # Baton stops: the next start runs the rest
            self.stop = "shutdown"
            return
        self._skip(queue, self._skip_reason())

    def _held(self) -> bool:
        """No new item may start: too many failed, or Baton is stopping."""
        return self._too_many() or self._stopping()

    def _too_many(self) -> bool:
        return self.counts.failed > self.spec.limit(self.counts.total)

    def _skip_reason(self) -> str:
        return (
            f"not started: {self.counts.failed} items failed, more than max_failures "
            f"({self.spec.max_failures}) allows"
        )

    def _skip(self, queue: deque[Item], reason: str) -> None:
        skipped = []
        for item in queue:
            self._move(item, "skipped")
            item.error = reason
            item.finished_at = self._now()
            skipped.append(item)
        if skipped:
            self._post(self._news(skipped, "item"))

    async def _item(self, item: Item) -> None:
        try:
            await self._attempts(item)
        finally:
            self._busy(-1)

    async def _attempts(self, item: Item) -> None:
        """One item to its end: attempts, retries with the step's backoff, timeouts."""
        retry = self.step.spec.retry
        try:
            while True:
                self._move(item, "running")
                item.attempts += 1
                item.started_at = item.started_at or self._now()
                item.finished_at = None
                await self._tell([item], commit=True)
                result = await self._attempt(item)
                if result.outcome == "interrupted":
                    return  # shutdown: left running in the database; resume decides
                item.output, item.error = dict(result.output or {}), result.error
                retrying = (
                    result.outcome in ("failed", "timed_out")
                    and item.attempts < retry.attempts
                    and self.stop is None
                    and not self._stopping()
                )
                if not retrying:
                    self._finish(item, result.outcome)
                    return
                self._move(item, "waiting")
                await self._tell([item])
                await self._pause(item, self._delay(item.attempts + 1))
        except asyncio.CancelledError:
            if (self.stop or "cancelled") != "shutdown":
                item.error = item.error or f"cancelled by {self.run_state.stopped_by or 'request'}"
                self._finish(item, "cancelled")

    def _timer(self, item: Item, reason: str) -> str:
        return f"item:{self.run_state.id}:{self.step.id}:{item.index}:{reason}"

    async def _pause(self, item: Item, seconds: float) -> None:
        """Wait before an item's next attempt, on the engine's timers (its clock)."""
        due: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = self._timer(item, "retry")
        self.timers.set(key, self._now() + timedelta(seconds=seconds), partial(settle, due))
        self._busy(-1)
        try:
            await due
        finally:
            self._busy(+1)
            self.timers.cancel(key)

    def _delay(self, attempt: int) -> float:
        retry = self.step.spec.retry
        delay = retry.delay_before(attempt).total_seconds()
        return delay * random.uniform(0.5, 1.0) if retry.jitter else delay

    async def _attempt(self, item: Item) -> msg.Finished:
        """One attempt of the action with the item in its templates, bounded by the
        step's timeout (its task is cancelled with the reason ``timeout``)."""
        context = self.run_state.context()
        context[self.spec.name] = item.value
        context["index"] = item.index
        timeout = self.step.spec.timeout
        key = self._timer(item, "timeout")
        if timeout is not None:
            task = asyncio.current_task()
            assert task is not None

            def expire(task: asyncio.Task[Any] = task) -> None:
                self.reasons[item.index] = "timeout"
                task.cancel()

            self.timers.set(key, self._now() + timeout, expire)
        try:
            result = await self._act(context, item.attempts, lambda: self._why(item))
        finally:
            if timeout is not None:
                self.timers.cancel(key)
            self.reasons.pop(item.index, None)
        if isinstance(result, msg.Finished):
            return result
        return msg.Finished(
            self.step.id,
            item.attempts,
            "failed",
            error=f"action {self.step.spec.action} waits (approval, timer or child run), "
            "which a for_each item cannot do",
        )

    def _why(self, item: Item) -> str | None:
        return self.reasons.get(item.index) or self.stop

    def _finish(self, item: Item, status: str) -> None:
        self._move(item, status)
        item.finished_at = self._now()
        self._post(self._news([item], "item"))

    def _move(self, item: Item, status: str) -> None:
        before, item.status = item.status, status
        self.counts.move(item, before)

    async def _tell(self, items: list[Item], kind: str = "item", *, commit: bool = False) -> None:
        news = self._news(items, kind, commit=commit)
        self._post(news)
        if news.committed is not None:
            await news.committed

    def _news(self, items: list[Item], kind: str, *, commit: bool = False) -> ItemNews:
        done = asyncio.get_running_loop().create_future() if commit else None
        snapshot = tuple(i.copy() for i in items)
        return ItemNews(self.step.id, kind, snapshot, self.counts.tally(), done)

    def _stopped(self, attempt: int) -> msg.Finished:
        """The step's end when the run stopped it (cancel) or Baton did (shutdown)."""
        self.stop = self.stop or self.step.cancel_reason or "cancelled"
        status = "interrupted" if self.stop == "shutdown" else "cancelled"
        error = (
            "interrupted by shutdown"
            if status == "interrupted"
            else f"cancelled by {self.run_state.stopped_by or 'request'}"
        )
        return msg.Finished(self.step.id, attempt, status, output=output(self.items), error=error)


class _BadList(Exception):
    """for_each.items did not give a list Baton can fan out over."""
