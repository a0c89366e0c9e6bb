"""The node's housekeeping loop: leases renewed, lost runs let go, orphans adopted,
queued runs admitted, the inbox read; and the wait of a caller for a command's answer.

Every ``renew`` seconds the keeper renews this node's leases and heartbeat (a run that
is no longer this node's is abandoned); every second a ``serve`` node looks for runs
whose driver is gone to adopt, and for queued runs whose place came free. The inbox is read every
``inbox_poll`` seconds while the node drives runs on SQLite; on PostgreSQL a ``LISTEN``
connection wakes it as soon as a command is sent (with the renewal as a safety net).
Tests call ``tick()`` to do one round at a moment they choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from engine import timing
from engine.runs import inbox
from engine.runs import messages as msg
from engine.runs.state import RunStatus

if TYPE_CHECKING:
    from engine.runs.engine import Engine

log = logging.getLogger(__name__)

SCAN = 1.0
"""Seconds between two looks for runs to adopt (``serve`` nodes): a run whose owner is
gone (released, or a dead process of this host) is taken over within this."""
ANSWER_POLL = 0.05
"""Seconds between two looks at a command's row by a caller waiting in another process."""


class Keeper:
    def __init__(self, engine: Engine, *, renew: float, inbox_poll: float) -> None:
        self.engine = engine
        self.renew = renew
        self.scan = min(renew, SCAN)
        self.inbox_poll = inbox_poll
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        self._admit = False  # a run was queued for any server: look now
        self._notified = False  # PostgreSQL said a command was sent: read the inbox now
        self._failing = False

    def poke(self) -> None:
        """Look again now (a run started: on SQLite the inbox is read while runs are
        driven)."""
        self._poke.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="baton-keeper")
        if self.engine.store.dialect == "postgresql":
            self._listener = asyncio.create_task(self._listen(), name="baton-inbox-listener")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._listener) if task is not None]
        self._task = self._listener = None
        for task in tasks:
            task.cancel()
        if tasks:
            ended, stuck = await asyncio.wait(tasks, timeout=timing.SETTLE)
            for task in ended:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("%s ended with %r", task.get_name(), task.exception())
            for task in stuck:
                log.warning(
                    "stopping: %s did not stop within %ss; left behind",
                    task.get_name(),
                    timing.SETTLE,
                )

    # --- the loop ------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round: heartbeat, adoption and admission (``serve`` nodes), inbox."""
        await self.heartbeat()
        if self.engine.adopts:
            await self.engine.adopt()
        else:
            await self.engine.admit_waiting()
        await self.poll_inbox()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.renew
        next_scan = loop.time() + self.scan
        next_poll = loop.time() + self.inbox_poll
        sqlite = self.engine.store.dialect == "sqlite"
        while True:
            due = min(next_beat, next_scan) if self.engine.adopts else next_beat
            if sqlite and self.engine.node.runs:
                due = min(due, next_poll)
            wait = max(0.0, due - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), wait)
            self._poke.clear()
            if not self._notified and loop.time() < due:
                # poked because a first run started: read its inbox from a poll from now
                next_poll = max(next_poll, loop.time() + self.inbox_poll)
                continue
            try:
                now = loop.time()
                if now >= next_beat:
                    next_beat = now + self.renew
                    await self.heartbeat()
                    if not self.engine.adopts:
                        await self.engine.admit_waiting()
                if self.engine.adopts and (now >= next_scan or self._admit):
                    self._admit = False
                    next_scan = now + self.scan
                    await self.engine.adopt()
                if self._notified or not sqlite or now >= next_poll:
                    self._notified = False
                    next_poll = now + self.inbox_poll
                    await self.poll_inbox()
                if self._failing:
                    log.info("the database answers again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._failing:
                    log.warning("housekeeping failed (%s); trying again", exc)
                self._failing = True

    async def heartbeat(self) -> None:
        engine = self.engine
        op = engine.leases.heartbeat(engine.clock.now(), list(engine.node.runs))
        lost: dict[str, str] = (await engine.store.write(op))[0]
        for run_id, why in lost.items():
            run = engine.node.runs.get(run_id)
            if run is not None:
                engine.node.post(run, msg.Abandon(why))

    async def poll_inbox(self) -> None:
        """Hand the commands waiting for the runs this node drives to their drivers."""
        engine = self.engine
        if not engine.node.runs:
            return
        for row in await engine.store.all(inbox.pending_for(engine.owner)):
            run = engine.node.runs.get(row.run_id)
            if run is None or row.id in run.delivered:
                continue
            run.delivered.add(row.id)
            engine.node.post(run, msg.Command(row.id, row.kind, row.by, dict(row.payload or {})))

    async def _listen(self) -> None:
        """PostgreSQL: wake the loop on every NOTIFY of the inbox channel."""
        import psycopg

        url = self.engine.store.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {inbox.CHANNEL}")
                    delay = 0.5
                    self._notified = True  # anything sent while not listening
                    self._poke.set()
                    async for note in conn.notifies():
                        if note.payload == inbox.ADMIT:
                            self._admit = True
                        self._notified = True
                        self._poke.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("inbox listener: %s; reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # --- a caller waiting for its answer -------------------------------------------------

    async def answer(self, run_id: str, command: msg.Command) -> inbox.Answer:
        """Wait until ``command`` (already in ``run_id``'s inbox) is answered: at once
        when this node drives the run, by watching its row when another live node does.
        With no live driver the answer says so (a ``serve`` node first tries to adopt
        the run itself)."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * engine.leases.lease.total_seconds()
        adopted = False
        while True:
            run = engine.node.runs.get(run_id)
            if run is not None and not run.abandoned:
                waiter = run.waiters.get(command.id)
                if waiter is None:
                    waiter = run.waiters[command.id] = loop.create_future()
                if command.id not in run.delivered:
                    run.delivered.add(command.id)
                    engine.node.post(run, command)
                with contextlib.suppress(Exception):  # timed out, or the run moved away
                    result: inbox.Answer = await asyncio.wait_for(asyncio.shield(waiter), 0.5)
                    return result
            row = await engine.store.one(inbox.state_of(command.id, run_id))
            if row is None:
                return inbox.Answer(inbox.REFUSED, f"run {run_id} is gone")
            if row.state != inbox.PENDING:
                return inbox.Answer(row.state, row.answer or row.state)
            if RunStatus(row.status).terminal:
                text = f"run {run_id} ended {row.status} before this was applied"
                await engine.store.write(
                    inbox.answer(command.id, inbox.REFUSED, text, engine.clock.now())
                )
                continue  # read the answer that stands (the driver's, if it was quicker)
            now = engine.clock.now()
            live = row.owner is not None and (
                row.lease_expires_at is not None and row.lease_expires_at > now
            )
            if row.owner == engine.owner and run_id not in engine.node.runs:
                live = False
            if not live:
                if engine.adopts and not adopted:
                    adopted = True
                    await engine.adopt()
                    continue
                return inbox.Answer(
                    inbox.PENDING,
                    f"run {run_id} has no live driver right now: the {command.kind} is "
                    "recorded, and applies when a `baton serve` node adopts the run",
                )
            if loop.time() > deadline:
                return inbox.Answer(
                    inbox.PENDING,
                    f"run {run_id}'s driver ({row.owner}) has not applied it yet; it will",
                )
            await asyncio.sleep(ANSWER_POLL)
