"""Recovery: adopting the runs whose driver is gone (lease expired, owner dead or gone
away) and driving them again from their rows, with the timers and checks their waiting
steps depend on re-armed; and, at stop, letting go of this node's leases so that another
node adopts its runs at once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import sqlalchemy as sa

from engine import events as ev
from engine import storable
from engine.bus import EventBus
from engine.errors import BatonError
from engine.runs import inbox, leases
from engine.runs import messages as msg
from engine.runs.gates import Gate
from engine.runs.leases import Leases
from engine.runs.loading import RunRecords
from engine.runs.node import Node
from engine.runs.remote import Remote
from engine.runs.state import RunState, RunStatus, StepStatus
from engine.runs.steptimers import StepTimers
from engine.timing import Clock
from storage import tables as t
from storage.store import Store

log = logging.getLogger(__name__)

MAX_DRIVE_FAILURES = 3
"""A run whose driver gave up this many times (a write the database kept refusing)
fails with the reason instead of being adopted again."""


class Recovery:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        bus: EventBus,
        clock: Clock,
        leases: Leases,
        records: RunRecords,
        step_timers: StepTimers,
        remote: Remote,
        drive: Callable[[RunState], None],
        admit_waiting: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], None],
    ) -> None:
        """``drive``: hand an adopted run to its driver; ``admit_waiting``: start the
        queued runs this node may start; ``spawn``: run background work."""
        self.node = node
        self.store = store
        self.bus = bus
        self.clock = clock
        self.leases = leases
        self.records = records
        self.step_timers = step_timers
        self.remote = remote
        self.drive = drive
        self.admit_waiting = admit_waiting
        self.spawn = spawn

    async def adopt(self) -> list[str]:
        """Adopt the runs in progress whose driver is gone (lease expired, owner dead or
        gone away) and drive them; then start the queued runs this node may start.
        Returns the ids of the runs adopted."""
        if self.node.stopping:
            return []
        now = self.clock.now()
        owners = [r.owner for r in await self.store.all(self.leases.owners())]
        ids: list[str] = (await self.store.write(self.leases.claim(now, self.leases.dead(owners))))[
            0
        ]
        if ids:
            log.info("adopted %d run(s) whose driver is gone", len(ids))
            await self._resume(ids)
        await self.admit_waiting()
        return ids

    async def leave(self) -> int:
        """Give up the leases of the runs still in progress here (another node adopts
        them at once) and the node row; returns how many runs it let go (0 when the
        database is gone: the leases expire by themselves)."""
        try:
            released, _ = await self.store.write(
                self.leases.release_all(), self.leases.unregister()
            )
            return int(released.rowcount)
        except Exception as exc:  # the database is gone: the leases expire by themselves
            log.warning(
                "could not release this node's leases (%s); they expire in %s",
                exc,
                self.leases.lease,
            )
            return 0

    async def _resume(self, ids: list[str]) -> None:
        """Drive again the runs just adopted: all of them read in a few queries,
        whatever their number."""
        active = t.runs.c.id.in_(ids)

        def read(conn: sa.Connection) -> tuple[Any, ...]:
            runs = conn.execute(sa.select(t.runs).where(active).order_by(t.runs.c.created_at)).all()
            found = self.records.definitions_of(conn, runs)
            steps = conn.execute(
                sa.select(t.steps).join(t.runs, t.runs.c.id == t.steps.c.run_id).where(active)
            )
            gates = conn.execute(
                sa.select(t.approvals)
                .join(t.runs, t.runs.c.id == t.approvals.c.run_id)
                .where(active)
            )
            approved = conn.execute(
                sa.select(t.decisions.c.approval_id, t.decisions.c.user)
                .join(t.approvals, t.approvals.c.id == t.decisions.c.approval_id)
                .join(t.runs, t.runs.c.id == t.approvals.c.run_id)
                .where(active, t.decisions.c.decision == "approve")
                .order_by(t.decisions.c.id)
            )
            return runs, found, steps.all(), gates.all(), approved.all()

        runs, found, steps, gates, approved = await self.store.read(read)
        by_run: dict[str, list[sa.Row[Any]]] = {}
        for sr in steps:
            by_run.setdefault(sr.run_id, []).append(sr)
        gate_rows = {g.id: g for g in gates}
        approvers: dict[str, list[str]] = {}
        for d in approved:
            approvers.setdefault(d.approval_id, []).append(d.user)
        for row in runs:
            if row.owner != self.leases.owner or row.status not in leases.ACTIVE:
                continue  # ended or taken again between the claim and the read
            try:
                if row.drive_failures >= MAX_DRIVE_FAILURES:
                    raise BatonError(
                        f"Baton could not store this run's progress {row.drive_failures} "
                        f"times: {row.error or 'see the server log'}"
                    )
                run = self.records.build(row, by_run.get(row.id, []), found)
            except Exception as exc:  # one unreadable run must not keep Baton from starting
                if not isinstance(exc, BatonError):
                    log.exception("cannot resume run %s", row.id)
                await self._fail_unresumable(row, exc)
                continue
            run.resuming = True
            await self._rearm(run, gate_rows, approvers)
            self.drive(run)
            if self.remote.sends_steps(run):  # its steps on workers belong to the old driver
                self.spawn(self.remote.take_back_older(run), f"take-back-{run.id}")

    async def _fail_unresumable(self, row: sa.Row[Any], exc: Exception) -> None:
        now = self.clock.now()
        message = f"could not be resumed: {exc}"[:2000]
        log.error("run %s failed: %s", row.id, message)
        await self.store.write(
            t.runs.update()
            .where(t.runs.c.id == row.id, t.runs.c.epoch == row.epoch)
            .values(
                status="failed",
                error=storable.clean_text(message),
                finished_at=now,
                owner=None,
                lease_expires_at=None,
            ),
            inbox.refuse_rest(row.id, "failed", now),
        )
        self.bus.publish(
            ev.RunFailed(
                run_id=row.id, playbook=row.playbook, at=now, status="failed", error=message
            )
        )

    async def _rearm(
        self,
        run: RunState,
        gates: dict[str, sa.Row[Any]],
        approvers: dict[str, list[str]],
    ) -> None:
        """Put back the timers and checks a waiting step depends on."""
        for step in run.steps.values():
            if step.status is not StepStatus.WAITING:
                continue
            if step.wake_reason in ("retry", "wait") and step.wake_at is not None:
                self.step_timers.set(run, step.id, step.wake_reason, step.wake_at)
            elif step.wake_reason == "approval" and step.approval_id:
                gate = gates.get(step.approval_id)
                if gate is None:
                    continue
                step.gate = Gate.from_spec(gate.spec)
                if gate.status == "pending":
                    if gate.deadline_at is not None:
                        self.step_timers.set(run, step.id, "approval", gate.deadline_at)
                    if step.gate.remind_at is not None:
                        self.step_timers.set(run, step.id, "remind", step.gate.remind_at)
                    continue
                run.inbox.append(  # decided while no process was driving the run
                    msg.GateClosed(
                        step_id=step.id,
                        approval_id=gate.id,
                        outcome=gate.status,
                        reason=gate.outcome_reason or gate.status,
                        output={"approval_id": gate.id, "approved_by": approvers.get(gate.id, [])},
                    )
                )
            elif step.wake_reason == "child" and step.child_run_id:
                child = await self.store.one(
                    sa.select(t.runs.c.status, t.runs.c.error).where(
                        t.runs.c.id == step.child_run_id
                    )
                )
                if child is not None and RunStatus(child.status).terminal:
                    output = await self._child_output(step.child_run_id, child.status)
                    run.inbox.append(
                        msg.ChildEnded(
                            step.id, step.child_run_id, child.status, output, child.error
                        )
                    )

    async def _child_output(self, child_id: str, status: str) -> dict[str, Any]:
        rows = await self.store.all(
            sa.select(t.steps.c.step_id, t.steps.c.output).where(t.steps.c.run_id == child_id)
        )
        return {
            "run_id": child_id,
            "status": status,
            "steps": {r.step_id: r.output or {} for r in rows},
        }
