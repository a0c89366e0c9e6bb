"""The engine: starts runs, drives their DAGs, persists every transition, emits events.

``Engine`` is the face front ends call (start a run, cancel, retry, decide, stop) and the
owner of the node's life cycle. The work is done by the collaborators it holds, each in
its own module of this package: ``driver`` (one task per run: inbox -> machine -> commit
-> publish -> effects), ``executor`` (a step's action -> finished or suspended),
``admission`` (concurrency keys and the queue), ``recovery`` (adoption and resuming),
``decisions`` (approval gates), ``retries`` and ``keeper`` (leases renewed, the inbox
read). They share one ``node.Node``: the runs driven here and the work counted busy.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from engine import audit, errors, storable, timing
from engine.actions import ChildRunSpec, stepenv
from engine.actions.registry import Registry
from engine.bus import EventBus
from engine.errors import BatonError, InvalidTransition, Problem, RunNotFound, ShuttingDown
from engine.playbooks import planning
from engine.playbooks.catalog import Catalog
from engine.runs import admission, decisions, driver, executor, inbox, leases, recovery, remote
from engine.runs import messages as msg
from engine.runs.keeper import Keeper
from engine.runs.loading import RunRecords
from engine.runs.machine import RunMachine
from engine.runs.node import Node
from engine.runs.requests import DecisionResult, Plan, RunRequest, Trigger
from engine.runs.retries import Retries
from engine.runs.state import RunState, RunStatus, StepState
from engine.runs.steptimers import StepTimers
from engine.secrets import SecretBox
from engine.timing import Clock, SchedulerTimers, SystemClock, Timers
from storage import tables as t
from storage.rows import Rows
from storage.store import Op, Store

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        registry: Registry,
        secret_box: SecretBox,
        bus: EventBus | None = None,
        clock: Clock | None = None,
        timers: Timers | None = None,
        secrets: dict[str, str] | None = None,
        owner: str | None = None,
        kind: str = "serve",
        lease: float = 15.0,
        renew: float = 5.0,
        inbox_poll: float = 0.25,
        approver_check: decisions.ApproverCheck = decisions.users_only,
        same_person: Callable[[str, str], bool] = operator.eq,
        step_env: Mapping[str, str] | None = None,
        credentials: Iterable[str] = (),
        worker_heartbeat: float = 2.0,
    ) -> None:
        """``step_env``: the environment steps' processes start from (default: the basic
        variables of this process, see ``engine.actions.stepenv``); ``credentials``: values of
        the embedding program's own secrets, masked like secrets wherever Baton writes.
        ``kind``: what this node is (serve, run, console); only ``serve`` nodes adopt
        runs whose driver is gone. ``lease``/``renew``: seconds a lease lasts and
        between two renewals; ``inbox_poll``: seconds between looks at the inbox on
        SQLite while this node drives runs (PostgreSQL wakes it with NOTIFY).
        ``worker_heartbeat``: seconds between two heartbeats of a ``baton worker``; a
        worker silent for five is dead (``engine.runs.remote``)."""
        self.store = store
        self.catalog = catalog
        self.registry = registry
        self.secret_box = secret_box
        self.bus = bus or EventBus()
        self.clock = clock or SystemClock()
        self.timers = timers or SchedulerTimers()
        self.secrets = dict(secrets or {})
        self.step_env = dict(stepenv.build(os.environ) if step_env is None else step_env)
        self.owner = owner or leases.node_id()
        self.kind = kind
        self.node = Node(adopts=kind == "serve")
        self.leases = leases.Leases(owner=self.owner, kind=kind, lease=lease, renew=renew)
        self.keeper = Keeper(self, renew=renew, inbox_poll=inbox_poll)
        self.released = 0  # runs still in progress whose leases ``stop`` gave up
        self.records = RunRecords(
            store=store,
            secret_box=secret_box,
            secrets=self.secrets,
            clock=self.clock,
            owner=self.owner,
            credentials=credentials,
            lease=self.leases,
        )
        self._stopped = False
        self._http: aiohttp.ClientSession | None = None
        self.remote = remote.Remote(  # steps with `runs_on`, sent to workers
            database_url=store.engine.url.render_as_string(hide_password=False),
            postgres=store.dialect == "postgresql",
            secret_box=secret_box,
            post=self.node.post,
            now=self.clock.now,
            heartbeat=worker_heartbeat,
        )
        self.machine = RunMachine(
            clock=self.clock,
            spawn_child=self._spawn_child,
            stopping=lambda: self.node.stopping,
        )
        step_timers = StepTimers(self.timers, self.node.post)
        self.executor = executor.Executor(
            node=self.node,
            store=store,
            clock=self.clock,
            timers=self.timers,
            step_timers=step_timers,
            registry=registry,
            remote=self.remote,
            secrets=self.secrets,
            step_env=self.step_env,
            http=self.http,
        )
        self.driver = driver.Driver(
            node=self.node,
            store=store,
            clock=self.clock,
            bus=self.bus,
            timers=self.timers,
            leases=self.leases,
            machine=self.machine,
            step_timers=step_timers,
            launch=self.executor.launch,
            freed=self._place_freed,
            poke=self.keeper.poke,
            stop_elsewhere=self._cancel_elsewhere,
        )
        self.admission = admission.Admission(
            node=self.node,
            store=store,
            clock=self.clock,
            bus=self.bus,
            leases=self.leases,
            records=self.records,
            drive=self.driver.start,
        )
        self.recovery = recovery.Recovery(
            node=self.node,
            store=store,
            clock=self.clock,
            bus=self.bus,
            leases=self.leases,
            records=self.records,
            step_timers=step_timers,
            remote=self.remote,
            drive=self.driver.start,
            admit_waiting=self.admission.admit_waiting,
            spawn=self.node.spawn,
        )
        self.retries = Retries(
            node=self.node,
            store=store,
            clock=self.clock,
            leases=self.leases,
            records=self.records,
            admission=self.admission,
        )
        self.decisions = decisions.Decisions(
            node=self.node,
            store=store,
            clock=self.clock,
            bus=self.bus,
            records=self.records,
            answer=self.keeper.answer,
            approver_check=approver_check,
            same_person=same_person,
        )

    # --- what front ends and tests set --------------------------------------------------

    @property
    def adopts(self) -> bool:
        """A ``serve`` node: it adopts runs whose driver is gone."""
        return self.node.adopts

    @adopts.setter
    def adopts(self, value: bool) -> None:
        self.node.adopts = value

    @property
    def approver_check(self) -> decisions.ApproverCheck:
        return self.decisions.approver_check

    @approver_check.setter
    def approver_check(self, check: decisions.ApproverCheck) -> None:
        self.decisions.approver_check = check

    @property
    def same_person(self) -> Callable[[str, str], bool]:
        """One person under two ids (a name, a Slack id)."""
        return self.decisions.same_person

    @same_person.setter
    def same_person(self, same: Callable[[str, str], bool]) -> None:
        self.decisions.same_person = same

    @property
    def active_runs(self) -> list[str]:
        return list(self.node.runs)

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Join the database as a node; a ``serve`` node adopts the runs nobody drives."""
        self.timers.start()
        await self.store.write(self.leases.register(self.clock.now()))
        if self.adopts:
            await self.adopt()
        self.keeper.start()

    async def stop(self, drain: float = 30.0) -> None:
        """Stop launching steps, let running ones finish for ``drain`` seconds, then
        interrupt the rest (recorded, so the next start re-runs or fails them)."""
        if self._stopped:
            return
        self.node.stopping = self._stopped = True
        await self.executor.drain(drain)
        try:
            await asyncio.wait_for(self.wait_idle(), timing.SETTLE)
        except TimeoutError:  # a stop must end: say what did not settle, and go on
            log.warning(
                "stopping: %d piece(s) of work still counted busy after %ss (runs here: %s); "
                "stopping anyway",
                self.node.busy,
                timing.SETTLE,
                ", ".join(self.node.runs) or "none",
            )
        await self.driver.stop()
        await self.keeper.stop()
        await self.remote.close()
        self.timers.shutdown()
        self.released = await self.recovery.leave()
        if self._http is not None:
            await self._http.close()

    async def servers_alive(self) -> list[str]:
        """Live ``baton serve`` nodes other than this one."""
        rows = await self.store.all(self.leases.server_alive(self.clock.now()))
        return [r.id for r in rows]

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            import aiohttp  # imported when first used: keeps `baton run` start-up fast

            self._http = aiohttp.ClientSession()
        return self._http

    async def wait_idle(self) -> None:
        """Return once no run has work it can do without time passing or people acting."""
        await self.node.wait_idle()

    async def wait_for(self, run_id: str) -> RunStatus:
        run = self.node.runs.get(run_id)
        if run is not None and run.done is not None:
            return await asyncio.shield(run.done)
        row = await self.store.one(sa.select(t.runs.c.status).where(t.runs.c.id == run_id))
        if row is None:
            raise RunNotFound(run_id)
        status = RunStatus(row.status)
        if status.terminal:
            return status
        if status is RunStatus.QUEUED:
            raise errors.RunQueued(f"run {run_id} is queued behind its concurrency key")
        raise InvalidTransition(f"run {run_id} is {status} and not driven by this process")

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run background work the engine owns: counted by ``wait_idle``, its errors
        logged, cancelled at stop."""
        self.node.spawn(work, name)

    # --- public API ------------------------------------------------------------------

    def reload(self) -> list[Problem]:
        """Read the playbook folder again. An invalid edit is refused with its problems
        and the previous version of that playbook keeps running; runs in flight keep the
        definition they began with."""
        self.catalog = self.catalog.reload()
        return list(self.catalog.problems)

    def plan(self, request: RunRequest) -> Plan:
        """A dry run: the resolved params and step order; nothing is stored or run."""
        return planning.plan(self.catalog, request, self.records.base_masker)

    async def start_run(
        self,
        request: RunRequest,
        also: Sequence[Op] | Callable[[str], Sequence[Op]] = (),
        *,
        detach: bool = False,
    ) -> str:
        """Validate, persist and start (or queue) a run; returns its id. ``also``: ops to
        commit with the run's creation (a schedule taking its fire, say), or a function
        of the new run's id that makes them (an alert linked to its run). ``detach``:
        store the run queued with no owner, for a ``serve`` node to start."""
        if self.node.stopping:
            raise ShuttingDown("Baton is shutting down; try again in a moment.")
        bad = storable.problem(request.requested_by)
        if bad is not None:
            raise BatonError(f"requested_by cannot be stored: {bad}")
        playbook = self.catalog.get(request.playbook)
        run, ops = self.records.prepare(playbook, request)
        ops.extend(also(run.id) if callable(also) else also)
        if detach:  # queued with no owner: the first `serve` node to look starts it
            [created] = [op for op in ops if isinstance(op, Rows) and op.kind == "run_new"]
            created.rows[0].update(owner=None, lease_expires_at=None)
            if self.store.dialect == "postgresql":
                ops.append(inbox.notify(inbox.ADMIT))
            await self.store.write(*ops)
            return run.id
        await self.admission.admit_new(run, ops)
        return run.id

    async def cancel(self, run_id: str, by: str) -> inbox.Answer:
        """Cancel a run, from any process: a queued run at once; a run in progress
        through its inbox, answered once its driver applied it (running steps killed,
        ``finally`` to come)."""
        for _ in range(3):  # a run may move between queued and in progress meanwhile
            row = await self.records.row(run_id)
            status = RunStatus(row.status)
            if status.terminal:
                raise InvalidTransition(f"run {run_id} is already {status}; nothing to cancel")
            if status is RunStatus.QUEUED:
                answer = await self.admission.cancel_queued(row, by)
                if answer is not None:
                    return answer
                continue
            try:
                return await self.command(run_id, inbox.CANCEL, {}, by, what="cancel")
            except InvalidTransition:
                if (await self.records.row(run_id)).status != RunStatus.QUEUED.value:
                    raise
        raise InvalidTransition(f"run {run_id} keeps changing; try again")

    def _cancel_elsewhere(self, run_id: str, by: str) -> None:
        """Cancel a child run this node does not drive, through its inbox, once the
        parent's stop is committed."""

        async def cancel() -> None:
            try:
                answer = await self.cancel(run_id, by)
            except InvalidTransition:
                return  # it ended (or is stopping) already
            log.info("child run %s: %s", run_id, answer.message)

        self.spawn(cancel(), name=f"cancel-child-{run_id}")

    async def command(
        self, run_id: str, kind: str, payload: dict[str, Any], by: str, *, what: str
    ) -> inbox.Answer:
        """Put a command in a run's inbox and wait for its answer (see
        ``engine.runs.inbox``)."""
        postgres = self.store.dialect == "postgresql"
        sent = inbox.send(run_id, kind, payload, by, self.clock.now(), what=what, postgres=postgres)
        command_id, _ = (await self.store.write(sent))[0]
        return await self.keeper.answer(run_id, msg.Command(command_id, kind, by, payload))

    async def retry(self, run_id: str, by: str, *, from_failed: bool = False) -> None:
        """Start a new attempt of a finished run: succeeded steps keep their outputs,
        the rest run again; ``from_failed``: only the failed steps and what depends on
        them run again (``engine.runs.fromfailed``)."""
        await self.retries.retry(run_id, by, from_failed=from_failed)

    async def decide(
        self, approval_id: str, user: str, decision: str, comment: str = ""
    ) -> DecisionResult:
        """Record a human decision on an approval gate. Idempotent per (gate, user)."""
        return await self.decisions.decide(approval_id, user, decision, comment)

    async def may_decide(self, approval_id: str, user: str) -> str | None:
        """Why ``user`` may not decide on the gate (None: they may), without deciding:
        front ends ask before opening a form for a reason."""
        return await self.decisions.may_decide(approval_id, user)

    async def adopt(self) -> list[str]:
        """Adopt the runs in progress whose driver is gone and drive them; then start
        the queued runs this node may start. Returns the ids of the runs adopted."""
        return await self.recovery.adopt()

    async def admit_waiting(self) -> None:
        """Start queued runs this node may start (its own; a ``serve`` node's, those
        nobody holds), whichever process freed their place."""
        await self.admission.admit_waiting()

    async def audit(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        outcome: str = "ok",
        source: dict[str, Any] | None = None,
    ) -> None:
        """Record something a front end did (a command, allowed or refused) in the audit
        trail."""
        await self.store.write(
            audit.op(self.clock.now(), actor, action, target, detail, outcome, source)
        )

    # --- wiring of the collaborators ----------------------------------------------------

    def _spawn_child(
        self, parent: RunState, step: StepState, spec: ChildRunSpec
    ) -> tuple[RunState, list[Op]]:
        """A child run for a ``playbook`` step, started in the parent's own commit."""
        playbook = self.catalog.get(spec.playbook)
        child, ops = self.records.prepare(
            playbook,
            RunRequest(
                playbook=spec.playbook,
                params=spec.params,
                requested_by=parent.requested_by,
                trigger=Trigger.PLAYBOOK,
                source=parent.source,
                parent_run_id=parent.id,
                parent_step_id=step.id,
            ),
            inherited=parent.masker,
        )
        self.admission.begin(child, ops)
        return child, ops

    async def _place_freed(self, key: str) -> None:
        """A run holding concurrency key ``key`` ended: start what waits for its place."""
        await self.admission.admit_queued(key)
