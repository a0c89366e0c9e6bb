"""Retrying a finished run: a new attempt of the same run, its steps reset (all that did
not succeed, or from the failed ones: ``engine.runs.fromfailed``) and the run admitted
again under its concurrency key."""

from __future__ import annotations

import sqlalchemy as sa

from engine import audit
from engine.errors import InvalidTransition
from engine.playbooks.model import Phase, from_snapshot
from engine.runs import fromfailed
from engine.runs.admission import Admission, limit_reached
from engine.runs.leases import Leases
from engine.runs.loading import RunRecords
from engine.runs.node import Node
from engine.runs.state import RunStatus
from engine.timing import Clock
from storage import definitions
from storage import tables as t
from storage.errors import ClaimLost
from storage.store import Store


class Retries:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        clock: Clock,
        leases: Leases,
        records: RunRecords,
        admission: Admission,
    ) -> None:
        self.node = node
        self.store = store
        self.clock = clock
        self.leases = leases
        self.records = records
        self.admission = admission

    async def retry(self, run_id: str, by: str, *, from_failed: bool = False) -> None:
        """Start a new attempt of a finished run: succeeded steps keep their outputs,
        the rest run again; ``from_failed``: only the failed steps and what depends on
        them run again (``engine.runs.fromfailed``)."""
        async with self.node.lock(f"retry:{run_id}"):  # two clicks on Retry: one new attempt
            await self._retry(run_id, by, from_failed)

    async def _retry(self, run_id: str, by: str, from_failed: bool = False) -> None:
        if run_id in self.node.runs:
            raise InvalidTransition(f"run {run_id} is still active; cancel it or let it end")
        row = await self.records.row(run_id)
        if row.status not in ("failed", "cancelled", "timed_out"):
            raise InvalidTransition(
                f"run {run_id} is {row.status}; only failed, cancelled or timed-out runs "
                "can be retried"
            )
        playbook = from_snapshot(await definitions.read(self.store, row.definition_digest))
        conc, key = playbook.concurrency, row.concurrency_key
        if conc is not None and key is not None and conc.on_limit.value == "reject":
            taken = await self.admission.holders(key, run_id)
            if taken >= conc.limit:  # refuse before touching the run's rows
                raise limit_reached(playbook, key, taken)
        which = sa.or_(t.steps.c.phase != Phase.MAIN.value, t.steps.c.status != "succeeded")
        if from_failed:
            which = await fromfailed.reset_condition(run_id, playbook, self.store)
        now = self.clock.now()
        reset = (
            t.steps.update()
            .where(t.steps.c.run_id == run_id, which)
            .values(
                status="pending",
                attempts=0,
                error=None,
                output=None,
                wake_at=None,
                wake_reason=None,
                started_at=None,
                approval_id=None,
                child_run_id=None,
                finished_at=None,
            )
        )
        upd = (
            t.runs.update()
            .where(t.runs.c.id == run_id, t.runs.c.status == row.status)
            .values(
                status=RunStatus.QUEUED.value,
                attempt=row.attempt + 1,
                error=None,
                failed_step=None,
                stop_reason=None,
                stopped_by=None,
                started_at=None,  # the new attempt's start: its duration is its own
                finished_at=None,
                queued_at=now,
                owner=self.leases.owner,
                epoch=t.runs.c.epoch + 1,
                lease_expires_at=self.leases.expiry(now),
                drive_failures=0,
            )
        )

        def claim(conn: sa.Connection) -> None:
            """Only the retry that moves the run out of its final state goes on."""
            if conn.execute(upd).rowcount != 1:
                raise InvalidTransition(f"run {run_id} is being retried already")
            conn.execute(reset)

        detail = {"from_failed": True} if from_failed else {}
        await self.store.write(claim, audit.op(self.clock.now(), by, "retry", run_id, detail))
        run = await self.records.load(run_id)
        run.status = RunStatus.QUEUED
        run.announced = False
        try:
            await self.admission.admit_new(run, [], existing=True)
        except ClaimLost:
            now_row = await self.records.row(run_id)
            if now_row.attempt == row.attempt + 1 and now_row.started_at is not None:
                return  # the node's admission round started the queued attempt first
            by_whom = f" by {now_row.stopped_by}" if now_row.stopped_by else ""
            raise InvalidTransition(
                f"run {run_id}'s new attempt was {now_row.status}{by_whom} before it started"
            ) from None
