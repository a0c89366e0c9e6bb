"""Runs and their rows: a new run's state and the ops that store it, and a stored run
read back into the state its driver works on (after a restart, a retry, a wait in the
queue)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from engine import audit
from engine.errors import RunNotFound
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets, planning
from engine.playbooks.model import Playbook, from_snapshot
from engine.runs.leases import Leases
from engine.runs.requests import RunRequest
from engine.runs.state import RunState, RunStatus, StepStatus, new_id, new_steps
from engine.secrets import Masker, SecretBox
from engine.timing import Clock
from storage import definitions
from storage import tables as t
from storage.rows import Rows
from storage.store import Op, Store


class RunRecords:
    def __init__(
        self,
        *,
        store: Store,
        secret_box: SecretBox,
        secrets: dict[str, str],
        clock: Clock,
        owner: str,
        credentials: Iterable[str] = (),
        lease: Leases,
    ) -> None:
        self.store = store
        self.secret_box = secret_box
        self.secrets = secrets
        # template secrets and the embedding program's credentials, masked in every run
        self.base_masker = Masker([*secrets.values(), *credentials])
        self.clock = clock
        self.owner = owner
        self.lease = lease
        self._definitions: dict[str, Playbook] = {}

    def prepare(
        self, playbook: Playbook, request: RunRequest, inherited: Masker | None = None
    ) -> tuple[RunState, list[Op]]:
        """The run and the ops that persist it. ``inherited``: the parent run's masker, so
        a secret the parent hands to a child run is masked there too."""
        params = paramlib.coerce(playbook, request.params)
        secret_names = paramsecrets.secret_names(playbook)
        base = inherited or self.base_masker
        masker = base.with_values(paramsecrets.secret_values(playbook, params))
        masked = {
            k: ("***" if k in secret_names and v is not None else masker.mask(v))
            for k, v in params.items()
        }
        # kept encrypted: declared secrets, and text params that carry a known secret (so a
        # resumed run gets their real value back rather than the masked one)
        secret_params = {
            k: str(v)
            for k, v in params.items()
            if v is not None and (k in secret_names or (isinstance(v, str) and masked[k] != v))
        }
        now = self.clock.now()
        digest, stored = definitions.put(paramsecrets.stored_definition(playbook), now)
        run = RunState(
            id=new_id(),
            playbook=playbook,
            status=RunStatus.QUEUED,
            params=params,
            masked_params=masked,
            masker=masker,
            box=self.secret_box,
            trigger=request.trigger,
            requested_by=request.requested_by,
            source=dict(request.source),
            created_at=now,
            parent_run_id=request.parent_run_id,
            parent_step_id=request.parent_step_id,
            concurrency_key=planning.concurrency_key(
                playbook, params, masker, self.secret_box.fingerprint
            ),
            steps=new_steps(playbook),
            secrets=self.secrets,
        )
        ops: list[Op] = [
            stored,  # its definition, before the row that refers to it
            # its row (a run that starts at once is begun in this same row: Admission.begin)
            Rows(
                "run_new",
                [
                    {
                        "id": run.id,
                        "playbook": playbook.name,
                        "status": run.status.value,
                        "attempt": 1,
                        "params": masked,
                        "secret_params": (
                            self.secret_box.encrypt(secret_params) if secret_params else None
                        ),
                        "trigger": run.trigger,
                        "source": run.source,
                        "requested_by": run.requested_by,
                        "parent_run_id": run.parent_run_id,
                        "parent_step_id": run.parent_step_id,
                        "concurrency_key": run.concurrency_key,
                        "definition_digest": digest,
                        "created_at": now,
                        "queued_at": now,
                        "started_at": None,
                        "deadline_at": None,
                        "owner": self.owner,
                        "epoch": 0,
                        "lease_expires_at": self.lease.expiry(now),
                    }
                ],
            ),
            Rows(
                "step_new",
                [
                    {
                        "run_id": run.id,
                        "step_id": s.id,
                        "phase": s.phase.value,
                        "position": s.position,
                        "status": s.status.value,
                        "attempts": 0,
                    }
                    for s in run.steps.values()
                ],
            ),
            audit.op(
                now,
                request.requested_by,
                "run",
                playbook.name,
                {"run_id": run.id, "params": masked, "trigger": request.trigger},
                source=request.source,
            ),
        ]
        return run, ops

    async def row(self, run_id: str) -> sa.Row[Any]:
        row = await self.store.one(sa.select(t.runs).where(t.runs.c.id == run_id))
        if row is None:
            raise RunNotFound(run_id)
        return row

    async def masker_of(self, run_id: str) -> Masker:
        """The masker of a stored run: the global secrets and its secret params."""
        row = await self.store.one(sa.select(t.runs.c.secret_params).where(t.runs.c.id == run_id))
        if row is None or not row.secret_params:
            return self.base_masker
        return self.base_masker.with_values(self.secret_box.decrypt(row.secret_params).values())

    async def load(self, run_id: str) -> RunState:
        row = await self.row(run_id)

        def read(conn: sa.Connection) -> tuple[list[sa.Row[Any]], dict[str, Any]]:
            steps = sa.select(t.steps).where(t.steps.c.run_id == run_id)
            step_rows = list(conn.execute(steps.order_by(t.steps.c.position)))
            return step_rows, self.definitions_of(conn, [row])

        step_rows, found = await self.store.read(read)
        return self.build(row, step_rows, found)

    def definitions_of(self, conn: sa.Connection, rows: Iterable[Any]) -> dict[str, Any]:
        """What ``build`` needs of the runs ``rows``: the playbooks they began with (only
        those not parsed yet are read)."""
        wanted = {r.definition_digest for r in rows} - self._definitions.keys()
        return definitions.fetch(conn, wanted) if wanted else {}

    def playbook(self, digest: str, found: dict[str, Any]) -> Playbook:
        """The playbook a run began with; parsed once per distinct definition."""
        playbook = self._definitions.get(digest)
        if playbook is None:
            playbook = self._definitions[digest] = from_snapshot(found[digest])
        return playbook

    def build(
        self, row: sa.Row[Any], step_rows: Sequence[sa.Row[Any]], found: dict[str, Any]
    ) -> RunState:
        """A run as its rows describe it; ``found``: ``definitions_of`` its row."""
        playbook = self.playbook(row.definition_digest, found)
        params = dict(row.params)
        revealed = self.secret_box.decrypt(row.secret_params) if row.secret_params else {}
        params.update(revealed)
        run = RunState(
            id=row.id,
            playbook=playbook,
            status=RunStatus(row.status),
            params=params,
            masked_params=dict(row.params),
            masker=self.base_masker.with_values(revealed.values()),
            box=self.secret_box,
            trigger=row.trigger,
            requested_by=row.requested_by,
            source=dict(row.source or {}),
            created_at=row.created_at,
            attempt=row.attempt,
            epoch=row.epoch,
            started_at=row.started_at,
            deadline_at=row.deadline_at,
            parent_run_id=row.parent_run_id,
            parent_step_id=row.parent_step_id,
            concurrency_key=row.concurrency_key,
            error=row.error,
            failed_step=row.failed_step,
            stop_reason=row.stop_reason,
            stopped_by=row.stopped_by,
            steps=new_steps(playbook),
            secrets=self.secrets,
            announced=True,
        )
        for sr in step_rows:
            step = run.steps.get(sr.step_id)
            if step is None:
                continue
            step.status = StepStatus(sr.status)
            step.attempts = sr.attempts
            step.output = sr.output
            step.error = sr.error
            step.started_at = sr.started_at
            step.finished_at = sr.finished_at
            step.wake_at = sr.wake_at
            step.wake_reason = sr.wake_reason
            step.approval_id = sr.approval_id
            step.child_run_id = sr.child_run_id
        return run
