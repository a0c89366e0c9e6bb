"""Admission: a run starts at once, or waits in the queue of its concurrency key, or is
refused; a queued run starts when its key frees a place.

A run takes a place under its key in the very commit that starts it. Each node counts a
key's holders before it starts a run, but two nodes counting at once
would both see the last place free. So the start's own transaction checks again, under
a lock every node takes for that key: on PostgreSQL a transaction advisory lock on the
key's hash, on SQLite the write lock every write transaction takes first (``BEGIN
IMMEDIATE``). A run that finds its key full there is not started; its node queues it
(or refuses it) as if it had counted the key full in the first place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine import audit
from engine import events as ev
from engine.bus import EventBus
from engine.errors import ConcurrencyLimit
from engine.playbooks.model import Playbook, from_snapshot
from engine.runs import inbox
from engine.runs.leases import Leases
from engine.runs.loading import RunRecords
from engine.runs.node import Node
from engine.runs.state import RUNS_DRIVEN, RUNS_IN_PROGRESS, RunState, RunStatus, StepStatus
from engine.timing import Clock
from storage import definitions, locks
from storage import tables as t
from storage.errors import ClaimLost
from storage.rows import Rows
from storage.store import Op, Store, guard

log = logging.getLogger(__name__)

HOLDING = RUNS_DRIVEN


class KeyFull(Exception):
    """The key had no place left when the start was committed."""

    def __init__(self, key: str, taken: int) -> None:
        super().__init__(f"concurrency key {key!r} is full ({taken} held)")
        self.taken = taken


def holders(key: str, run_id: str, *, queued: bool) -> sa.Select[Any]:
    """How many runs other than ``run_id`` hold key ``key`` (with ``queued``: or wait in
    its queue, which a new run lines up behind)."""
    statuses = [*HOLDING, "queued"] if queued else list(HOLDING)
    return (
        sa.select(sa.func.count())
        .select_from(t.runs)
        .where(
            t.runs.c.concurrency_key == key,
            t.runs.c.status.in_(statuses),
            t.runs.c.id != run_id,
        )
    )


def place(key: str, run_id: str, limit: int, *, queued: bool, postgres: bool) -> Any:
    """The op that fails its commit with ``KeyFull`` unless ``key`` has a place for
    ``run_id``; put it before the ops that start the run."""

    def op(conn: sa.Connection) -> int:
        if postgres:
            locks.hold(conn, f"concurrency:{key}")
        taken = int(conn.execute(holders(key, run_id, queued=queued)).scalar_one())
        if taken >= limit:
            raise KeyFull(key, taken)
        return taken

    return op


def limit_reached(playbook: Playbook, key: str, taken: int) -> ConcurrencyLimit:
    limit = playbook.concurrency.limit if playbook.concurrency else 1
    return ConcurrencyLimit(
        f"{playbook.name}: {taken} run(s) already hold concurrency key {key!r} "
        f"(limit {limit}); try again when they finish"
    )


class Admission:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        bus: EventBus,
        clock: Clock,
        leases: Leases,
        records: RunRecords,
        drive: Callable[[RunState], None],
    ) -> None:
        """``drive``: hand a run whose start is committed to its driver."""
        self.node = node
        self.store = store
        self.bus = bus
        self.clock = clock
        self.leases = leases
        self.records = records
        self.drive = drive
        self.postgres = store.dialect == "postgresql"

    async def admit_new(self, run: RunState, ops: list[Op], existing: bool = False) -> None:
        """Persist a new run as running, or queued behind its concurrency key."""
        key = run.concurrency_key
        conc = run.playbook.concurrency
        if key is None or conc is None:
            self.begin(run, ops)
            await self._commit_start(run, ops)
            return
        async with self.node.lock(key):
            taken = await self.holders(key, run.id)
            if taken < conc.limit:
                full = await self._start_in_place(run, ops, key, conc.limit)
                if full is None:
                    return
                taken = full  # another node took the last place meanwhile
            if conc.on_limit.value == "reject":
                if existing:
                    await self.store.write(
                        t.runs.update()
                        .where(t.runs.c.id == run.id)
                        .values(status="failed", error="concurrency limit reached")
                    )
                raise limit_reached(run.playbook, key, taken)
            await self.store.write(*ops)
            self.bus.publish(
                ev.RunQueued(
                    run_id=run.id,
                    playbook=run.playbook.name,
                    at=self.clock.now(),
                    key=key,
                    ahead=taken - conc.limit + 1,
                )
            )

    async def _start_in_place(
        self, run: RunState, ops: list[Op], key: str, limit: int
    ) -> int | None:
        """Start ``run`` if key ``key`` still has a place when the start commits (checked
        under a lock every node takes: see above). When another node took the place
        meanwhile: how many hold the key, with ``run`` and ``ops`` as they were."""
        saved = (run.status, run.started_at, run.deadline_at, run.epoch)
        trial = [
            Rows(op.kind, [dict(r) for r in op.rows]) if isinstance(op, Rows) else op for op in ops
        ]
        self.begin(run, trial)
        check = place(key, run.id, limit, queued=True, postgres=self.postgres)
        try:
            await self.store.write(check, *trial)
        except KeyFull as full:
            run.status, run.started_at, run.deadline_at, run.epoch = saved
            return full.taken
        self.drive(run)
        return None

    async def holders(self, key: str, run_id: str) -> int:
        """How many runs other than ``run_id`` hold (or wait for) concurrency key ``key``."""
        return int(await self.store.scalar(holders(key, run_id, queued=True)))

    def begin(self, run: RunState, ops: list[Op]) -> None:
        """Mark ``run`` running under this node (a new epoch): in its ``run_new`` row
        when ``ops`` create it, else as a ``run_begin`` update of its stored row."""
        now = self.clock.now()
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or now
        timeout = run.playbook.timeout
        run.deadline_at = now + timeout if timeout else None
        before = run.epoch
        run.epoch += 1
        begun = {
            "status": run.status.value,
            "started_at": run.started_at,
            "deadline_at": run.deadline_at,
            "owner": self.leases.owner,
            "epoch": run.epoch,
            "lease_expires_at": self.leases.expiry(now),
        }
        for op in ops:
            if isinstance(op, Rows) and op.kind == "run_new" and op.rows[0]["id"] == run.id:
                op.rows[0].update(begun)  # created running: one insert, no update after it
                return
        # a stored run starts only if nobody moved it on since it was read (a cancel of
        # the queued run, another node admitting it): ClaimLost otherwise
        ops.insert(0, guard(run.id, before))
        ops.append(Rows("run_begin", [{**begun, "id": run.id}]))

    async def _commit_start(self, run: RunState, ops: list[Op]) -> None:
        await self.store.write(*ops)
        self.drive(run)

    async def admit_queued(self, key: str | None) -> None:
        """Start the runs waiting in ``key``'s queue that its limit lets through (key
        None: runs queued with no key, as ``baton run --detach`` leaves them). This node
        starts its own queued runs and, a ``serve`` node, those nobody holds; a queued run
        another live node holds is that node's to start (it still takes its place)."""
        same_key = (
            t.runs.c.concurrency_key.is_(None) if key is None else t.runs.c.concurrency_key == key
        )
        statuses = ["queued"] if key is None else list(RUNS_IN_PROGRESS)
        async with self.node.lock(f"queue:{key}"):
            rows = await self.store.all(
                sa.select(
                    t.runs.c.id,
                    t.runs.c.status,
                    t.runs.c.definition_digest,
                    t.runs.c.owner,
                    t.runs.c.lease_expires_at,
                )
                .where(same_key, t.runs.c.status.in_(statuses))
                .order_by(t.runs.c.queued_at, t.runs.c.id)
            )
            now = self.clock.now()
            dead = self.leases.dead({r.owner for r in rows if r.status == "queued"})
            active = sum(1 for r in rows if r.status != "queued")
            for r in rows:
                if r.status != "queued":
                    continue
                conc = None
                if key is not None:
                    stored = await definitions.read(self.store, r.definition_digest)
                    conc = from_snapshot(stored).concurrency
                if conc is not None and active >= conc.limit:
                    break
                active += 1
                if not self._may_take(r, now, dead):
                    continue
                run = await self.records.load(r.id)
                if run.status is not RunStatus.QUEUED:
                    continue  # cancelled or started meanwhile
                run.announced = False  # it starts now: RunStarted is still to be published
                ops: list[Op] = []
                self.begin(run, ops)
                if conc is not None and key is not None:  # the place, checked as it is taken
                    ops.insert(
                        0,
                        place(key, r.id, conc.limit, queued=False, postgres=self.postgres),
                    )
                try:
                    await self._commit_start(run, ops)
                except ClaimLost:
                    log.debug("queued run %s was taken or cancelled meanwhile", r.id)
                except KeyFull:
                    log.debug("queued run %s: another node filled key %r meanwhile", r.id, key)
                    break

    def _may_take(self, row: sa.Row[Any], now: datetime, dead: list[str]) -> bool:
        """May this node start the queued run ``row``?"""
        if row.owner == self.leases.owner:
            return True
        if not self.node.adopts:
            return False
        expired = row.lease_expires_at is None or row.lease_expires_at < now
        return row.owner is None or expired or row.owner in dead

    async def admit_waiting(self) -> None:
        """Start queued runs this node may start (its own; a ``serve`` node's, those
        nobody holds), whichever process freed their place."""
        held = sa.or_(t.runs.c.owner == self.leases.owner, sa.literal(self.node.adopts))
        rows = await self.store.all(
            sa.select(t.runs.c.concurrency_key)
            .where(t.runs.c.status == RunStatus.QUEUED.value, held)
            .distinct()
        )
        for (key,) in rows:
            await self.admit_queued(key)

    async def cancel_queued(self, row: sa.Row[Any], by: str) -> inbox.Answer | None:
        """Cancel a run still in the queue (nobody drives it yet); None when it left the
        queue meanwhile. The epoch moves on, so a node about to start it is fenced."""
        run_id, now = row.id, self.clock.now()

        def cancel_queued(conn: sa.Connection) -> int:
            done = conn.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id, t.runs.c.status == RunStatus.QUEUED.value)
                .values(
                    status="cancelled",
                    stop_reason="cancelled",
                    stopped_by=by,
                    finished_at=now,
                    epoch=t.runs.c.epoch + 1,
                    owner=None,
                    lease_expires_at=None,
                )
            )
            if done.rowcount:  # none of its pending steps will run
                conn.execute(
                    t.steps.update()
                    .where(
                        t.steps.c.run_id == run_id,
                        t.steps.c.status == StepStatus.PENDING.value,
                    )
                    .values(status=StepStatus.CANCELLED.value, finished_at=now)
                )
            return int(done.rowcount)

        record = audit.op(self.clock.now(), by, "cancel", run_id, {})
        cancelled, _ = await self.store.write(cancel_queued, record)
        if not cancelled:
            return None
        self.bus.publish(
            ev.RunCancelled(run_id=run_id, playbook=row.playbook, at=now, status="cancelled", by=by)
        )
        return inbox.Answer(inbox.APPLIED, f"cancelled run {run_id} (it was queued)")
