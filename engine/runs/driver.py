"""The run drivers: inbox -> machine -> commit -> publish -> effects.

Each active run has one *driver* task, the only code that changes the run. Everything
else (a step's action finishing, a timer, a human decision, a cancel) posts a message to
the run's inbox. The driver takes the waiting messages, applies them, decides what to
start next, commits all of it as one unit, publishes the events, and only then launches
the steps it decided on. A step's end and its successor's start therefore commit
together: one commit per step on a sequential chain, and a crash between two commits
loses nothing that was acted upon.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from functools import partial
from typing import Any

from engine import events as ev
from engine import storable, timing
from engine.bus import EventBus
from engine.errors import RunMoved
from engine.runs import commands, inbox, items
from engine.runs import messages as msg
from engine.runs.batch import (
    Batch,
    CancelTask,
    CancelTimer,
    Effect,
    Launch,
    SetTimer,
    Settle,
    StartChild,
    StopChild,
)
from engine.runs.leases import Leases
from engine.runs.machine import RunMachine
from engine.runs.node import Node
from engine.runs.state import RunState, StepState
from engine.runs.steptimers import StepTimers
from engine.timing import Clock, Timers
from storage import tables as t
from storage.errors import ClaimLost
from storage.store import Op, Store, guard, transient

log = logging.getLogger(__name__)


class Driver:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        bus: EventBus,
        clock: Clock,
        timers: Timers,
        leases: Leases,
        machine: RunMachine,
        step_timers: StepTimers,
        launch: Callable[[RunState, StepState], None],
        freed: Callable[[str], Awaitable[None]],
        poke: Callable[[], None],
        stop_elsewhere: Callable[[str, str], None],
    ) -> None:
        """``launch``: start a step the driver decided on; ``freed``: a run that held a
        concurrency key ended (start what waits for its place); ``poke``: the node's
        first run started (the keeper starts reading the inbox); ``stop_elsewhere``:
        cancel a run another node drives (or nobody yet), by whom."""
        self.node = node
        self.store = store
        self.bus = bus
        self.clock = clock
        self.timers = timers
        self.leases = leases
        self.machine = machine
        self.step_timers = step_timers
        self.stop_elsewhere = stop_elsewhere
        self.launch = launch
        self.freed = freed
        self.poke = poke
        self.postgres = store.dialect == "postgresql"

    def start(self, run: RunState) -> None:
        """Drive ``run`` from now on (its start, or its adoption, is committed)."""
        run.done = asyncio.get_running_loop().create_future()
        self.node.runs[run.id] = run
        if run.deadline_at is not None:
            self.timers.set(
                f"run:{run.id}:deadline",
                run.deadline_at,
                lambda: self.node.post(run, msg.Stop(status="timed_out", by="timeout")),
            )
        self.node.busy_inc()
        self.node.drivers[run.id] = asyncio.create_task(self._drive(run), name=f"run-{run.id}")
        if len(self.node.runs) == 1:
            self.poke()  # the first run: the keeper starts reading the inbox

    async def stop(self) -> None:
        """Cancel every driver (a stop, once the steps are drained and the work
        settled) and wait ``timing.SETTLE`` for them to end."""
        drivers = list(self.node.drivers.values())
        for task in drivers:
            task.cancel()
        if drivers:
            ended, stuck = await asyncio.wait(drivers, timeout=timing.SETTLE)
            for task in ended:  # what a driver raised was logged by the driver
                if not task.cancelled():
                    task.exception()
            if stuck:
                log.warning("stopping: %d run driver(s) did not stop; left behind", len(stuck))

    async def _drive(self, run: RunState) -> None:
        try:
            while True:
                batch = Batch()
                moved = next((m for m in run.inbox if isinstance(m, msg.Abandon)), None)
                if moved is not None:
                    log.warning("run %s: %s; this node stops driving it", run.id, moved.reason)
                    self.abandon(run)
                    return
                if not run.announced or run.resuming:
                    batch.events.append(
                        ev.RunStarted(
                            run_id=run.id,
                            playbook=run.playbook.name,
                            at=self.clock.now(),
                            params=run.masked_params,
                            requested_by=run.requested_by,
                            trigger=run.trigger,
                            attempt=run.attempt,
                            resumed=run.announced,
                            parent_run_id=run.parent_run_id,
                        )
                    )
                    if run.resuming:
                        self.machine.recover_running(run, batch)
                    run.announced, run.resuming = True, False
                answers: list[Callable[[], None]] = []
                while run.inbox:
                    m = run.inbox.popleft()
                    if isinstance(m, msg.Command):
                        answers.append(self._apply_command(run, m, batch))
                    else:
                        self.machine.apply(run, m, batch)
                finished = self.machine.advance(run, batch)
                if finished:
                    self._closing(run, batch)
                later = self._withdraw(run, batch.effects) + answers
                if batch.ops and not await self._commit(run, batch.ops):
                    return  # no longer ours: another node (or a later adoption) goes on
                for event in batch.events:
                    self.bus.publish(event)
                self._carry_out(run, batch.effects)
                for fn in later:
                    fn()
                if finished:
                    await self._finish(run)
                    return
                del batch  # a parked run must not keep its last batch's statements alive
                if not run.inbox:
                    run.blocked = True
                    self.node.busy_dec()
                    await run.wake.wait()
                    run.wake.clear()
        except asyncio.CancelledError:
            if not run.blocked:
                self.node.busy_dec()
            raise
        except Exception as exc:
            log.exception("driver of run %s failed", run.id)
            await self._give_up(run, exc)

    async def _commit(self, run: RunState, ops: list[Op]) -> bool:
        """Commit a driver's turn, fenced by the run's epoch. While the database is
        unreachable (or full) the driver waits and tries again; a write the database
        keeps refusing gives the run up. False: this node no longer drives the run."""
        delay, tries = 0.05, 0
        while True:
            try:
                await self.store.write(guard(run.id, run.epoch), *ops)
                if tries:
                    log.info("run %s: the database took the write again; going on", run.id)
                return True
            except ClaimLost as exc:
                log.warning("run %s: %s; this node stops driving it", run.id, exc)
                self.abandon(run)
                return False
            except Exception as exc:
                if run.abandoned:
                    return False
                tries += 1
                if transient(exc):
                    if tries == 1:
                        log.warning(
                            "run %s: cannot write to the database (%s); retrying until it is back",
                            run.id,
                            _first_line(exc),
                        )
                elif tries >= 3:
                    await self._give_up(run, exc)
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _give_up(self, run: RunState, exc: BaseException) -> None:
        """This node cannot drive ``run`` on (a write the database refuses, a bug): it
        lets go of the run's lease, so that a server adopts it after a delay and carries
        it on from its stored state; after ``recovery.MAX_DRIVE_FAILURES`` the run
        fails."""
        reason = storable.clean_text(f"{type(exc).__name__}: {_first_line(exc)}")[:1000]
        retry_at = self.leases.expiry(self.clock.now())
        log.error(
            "run %s: giving it up (%s); a server retries it after %s",
            run.id,
            reason,
            self.leases.lease,
        )
        self.node.busy_inc()  # idle only once the lease is let go
        self.abandon(run)
        with suppress(Exception):  # if even this fails, the lease expires by itself
            await self.store.write(
                t.runs.update()
                .where(
                    t.runs.c.id == run.id,
                    t.runs.c.epoch == run.epoch,
                    t.runs.c.owner == self.leases.owner,
                )
                .values(
                    owner=None,
                    lease_expires_at=retry_at,
                    drive_failures=t.runs.c.drive_failures + 1,
                    error=reason,
                )
            )
        self.node.busy_dec()

    def abandon(self, run: RunState) -> None:
        """Stop driving ``run`` and change nothing: its steps here are stopped (their
        results could not be stored), its timers dropped, whoever waits here told."""
        if run.abandoned:
            return
        run.abandoned = True
        self.node.runs.pop(run.id, None)
        self.node.drivers.pop(run.id, None)
        self.timers.cancel(f"run:{run.id}:deadline")
        for step in run.steps.values():
            self.step_timers.cancel_all(run, step.id)
            if step.task is not None and not step.task.done():
                step.cancel_reason = "abandoned"
                step.task.cancel()
        moved = RunMoved(f"run {run.id} is no longer driven by this process")
        for waiter in run.waiters.values():
            if not waiter.done():
                waiter.set_exception(moved)
        run.waiters.clear()
        if run.done is not None and not run.done.done():
            run.done.set_exception(moved)
            run.done.exception()  # retrieved: nobody may be waiting on it
        if not run.blocked:
            self.node.busy_dec()
        run.blocked = False

    def _withdraw(self, run: RunState, effects: list[Effect]) -> list[Callable[[], None]]:
        """Carry out the effects that withdraw something, at once (before the commit):
        timers cancelled, running attempts cancelled, child runs driven here stopped.
        Returns what is done after the commit: a child run driven elsewhere is stopped
        through its inbox."""
        later: list[Callable[[], None]] = []
        for effect in effects:
            if isinstance(effect, CancelTimer):
                self.step_timers.cancel(run, effect.step_id, effect.reason)
            elif isinstance(effect, CancelTask):
                step = run.steps[effect.step_id]
                if step.task is not None:
                    step.cancel_reason = effect.reason
                    step.task.cancel()
            elif isinstance(effect, StopChild):
                child = self.node.runs.get(effect.child_run_id)
                if child is not None:
                    self.node.post(child, msg.Stop(status=effect.status, by=effect.by))
                else:  # driven by another node, or by nobody until a server adopts it
                    later.append(partial(self.stop_elsewhere, effect.child_run_id, effect.by))
        return later

    def _carry_out(self, run: RunState, effects: list[Effect]) -> None:
        """Carry out the effects of a committed batch: child runs started first, then
        attempts launched, then the rest in their order."""
        for effect in effects:
            if isinstance(effect, StartChild):
                self.start(effect.child)
        for effect in effects:
            if isinstance(effect, Launch):
                self.launch(run, run.steps[effect.step_id])
        for effect in effects:
            if isinstance(effect, SetTimer):
                self.step_timers.set(run, effect.step_id, effect.reason, effect.at)
            elif isinstance(effect, Settle):
                items.settle(effect.committed)

    def _apply_command(self, run: RunState, m: msg.Command, batch: Batch) -> Callable[[], None]:
        """Apply an inbox command; returns how its waiting caller (if any, in this
        process) is told the answer once the batch is committed."""
        answer = commands.apply(self.machine, run, m, batch, self.clock.now())
        waiter = run.waiters.pop(m.id, None)

        def tell(w: asyncio.Future[Any] | None = waiter, a: inbox.Answer = answer) -> None:
            if w is not None and not w.done():
                w.set_result(a)

        return tell

    def _closing(self, run: RunState, batch: Batch) -> None:
        """What the final commit of a run carries besides its status: the refusal of the
        commands it did not apply, and the wake-up of a parent run driven elsewhere."""
        now = self.clock.now()
        batch.ops.append(inbox.refuse_rest(run.id, run.status.value, now))
        parent = run.parent_run_id
        if parent and run.parent_step_id and parent not in self.node.runs:
            payload = {
                "step_id": run.parent_step_id,
                "child_run_id": run.id,
                "status": run.status.value,
                "output": _family_output(run),
                "error": run.error,
            }
            batch.ops.append(
                inbox.put(parent, inbox.CHILD, payload, "baton", now, postgres=self.postgres)
            )

    async def _finish(self, run: RunState) -> None:
        self.node.runs.pop(run.id, None)
        self.node.drivers.pop(run.id, None)
        self.timers.cancel(f"run:{run.id}:deadline")
        if run.done is not None and not run.done.done():
            run.done.set_result(run.status)
        if run.parent_run_id and run.parent_step_id:
            parent = self.node.runs.get(run.parent_run_id)
            if parent is not None:
                output = _family_output(run)
                self.node.post(
                    parent,
                    msg.ChildEnded(run.parent_step_id, run.id, run.status.value, output, run.error),
                )
        if run.concurrency_key is not None:
            await self.freed(run.concurrency_key)
        self.node.busy_dec()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _family_output(run: RunState) -> dict[str, Any]:
    """A finished child run as its parent's ``playbook`` step sees it."""
    return {
        "run_id": run.id,
        "status": run.status.value,
        "steps": {s.id: s.output or {} for s in run.steps.values()},
    }
