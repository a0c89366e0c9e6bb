"""The engine: starts runs, drives their DAGs, persists every transition, emits events.

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
import operator
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import pydantic
import sqlalchemy as sa

from engine import (
    audit,
    fanout,
    gates,
    items,
    planning,
    queries,
    stepenv,
    storable,
    templating,
    timing,
)
from engine import events as ev
from engine import messages as msg
from engine.actions import ActionContext, ChildRunSpec, Suspend, refuse_splices
from engine.actions.registry import Registry
from engine.bus import EventBus
from engine.catalog import Catalog
from engine.errors import (
    ActionError,
    ApprovalNotFound,
    BatonError,
    ConcurrencyLimit,
    InvalidTransition,
    NotAllowed,
    Problem,
    RunNotFound,
    ShuttingDown,
)
from engine.fleet import inventory
from engine.loading import RunRecords
from engine.playbook import Phase, Playbook, from_snapshot
from engine.requests import DecisionResult, Plan, RunRequest
from engine.runs import admission, commands, fromfailed, inbox, leases, remote
from engine.runs.keeper import Keeper
from engine.secrets import SecretBox
from engine.state import (
    ACTIVE_RUN,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
)
from engine.timing import Clock, SchedulerTimers, SystemClock, Timers
from engine.transitions import Batch, RunMachine
from storage import tables as t
from storage.errors import ClaimLost
from storage.rows import Rows
from storage.store import Op, Store, guard, transient

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

ApproverCheck = Callable[[str, dict[str, Any]], Awaitable[bool]]
MAX_DRIVE_FAILURES = 3
DECIDED = {"approve": "approved", "reject": "rejected"}
"""A run whose driver gave up this many times (a write the database kept refusing)
fails with the reason instead of being adopted again."""


async def _users_only(user: str, approvers: dict[str, Any]) -> bool:
    """Default approver check: listed users; anyone when the step lists nobody."""
    users = approvers.get("users") or []
    if not any(approvers.get(k) for k in ("users", "usergroups", "groups")):
        return True
    return user in users


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
        approver_check: ApproverCheck = _users_only,
        same_person: Callable[[str, str], bool] = operator.eq,
        step_env: Mapping[str, str] | None = None,
        credentials: Iterable[str] = (),
        worker_heartbeat: float = 2.0,
    ) -> None:
        """``step_env``: the environment steps' processes start from (default: the basic
        variables of this process, see ``engine.stepenv``); ``credentials``: values of
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
        self.adopts = kind == "serve"
        self.leases = leases.Leases(owner=self.owner, kind=kind, lease=lease, renew=renew)
        self.keeper = Keeper(self, renew=renew, inbox_poll=inbox_poll)
        self.released = 0  # runs still in progress whose leases ``stop`` gave up
        self.approver_check = approver_check
        self.same_person = same_person  # one person under two ids (a name, a Slack id)
        self.records = RunRecords(
            store=store,
            secret_box=secret_box,
            secrets=self.secrets,
            clock=self.clock,
            owner=self.owner,
            credentials=credentials,
            lease=self.leases,
        )
        self._runs: dict[str, RunState] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._key_locks: dict[str, asyncio.Lock] = {}
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._stopped = False
        self._http: aiohttp.ClientSession | None = None
        self.remote = remote.Remote(  # steps with `runs_on`, sent to workers
            database_url=store.engine.url.render_as_string(hide_password=False),
            postgres=store.dialect == "postgresql",
            secret_box=secret_box,
            post=self._post,
            now=self.clock.now,
            heartbeat=worker_heartbeat,
        )
        self.machine = RunMachine(
            clock=self.clock,
            timers=self.timers,
            post=self._post,
            spawn_child=self._spawn_child,
            live=self._runs.get,
            stopping=lambda: self._stopping,
            stop_elsewhere=self._cancel_elsewhere,
        )

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
        self._stopping = self._stopped = True
        running = [s.task for r in self._runs.values() for s in r.steps.values() if s.task]
        if running:
            _, late = await asyncio.wait(running, timeout=drain)
            for task in late:
                task.cancel()
        for run in self._runs.values():
            for step in run.steps.values():
                if step.task is not None and not step.task.done():
                    step.cancel_reason = "shutdown"
        try:
            await asyncio.wait_for(self.wait_idle(), timing.SETTLE)
        except TimeoutError:  # a stop must end: say what did not settle, and go on
            log.warning(
                "stopping: %d piece(s) of work still counted busy after %ss (runs here: %s); "
                "stopping anyway",
                self._busy,
                timing.SETTLE,
                ", ".join(self._runs) or "none",
            )
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        if drivers:
            ended, stuck = await asyncio.wait(drivers, timeout=timing.SETTLE)
            for task in ended:  # what a driver raised was logged by the driver
                if not task.cancelled():
                    task.exception()
            if stuck:
                log.warning("stopping: %d run driver(s) did not stop; left behind", len(stuck))
        await self.keeper.stop()
        await self.remote.close()
        self.timers.shutdown()
        await self._leave()
        if self._http is not None:
            await self._http.close()

    async def _leave(self) -> None:
        """Give up the leases of the runs still in progress here (another node adopts
        them at once) and the node row."""
        try:
            released, _ = await self.store.write(
                self.leases.release_all(), self.leases.unregister()
            )
            self.released = int(released.rowcount)
        except Exception as exc:  # the database is gone: the leases expire by themselves
            log.warning(
                "could not release this node's leases (%s); they expire in %s",
                exc,
                self.leases.lease,
            )

    async def servers_alive(self) -> list[str]:
        """Live ``baton serve`` nodes other than this one."""
        rows = await self.store.all(self.leases.server_alive(self.clock.now()))
        return [r.id for r in rows]

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            import aiohttp  # imported when first used: keeps `baton run` start-up fast

            self._http = aiohttp.ClientSession()
        return self._http

    # --- idle accounting (tests and `baton run` wait on it) ----------------------------

    def _busy_inc(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _busy_add(self, n: int) -> None:
        self._busy_inc() if n > 0 else self._busy_dec()

    def _busy_dec(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no run has work it can do without time passing or people acting."""
        while self._busy:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def wait_for(self, run_id: str) -> RunStatus:
        run = self._runs.get(run_id)
        if run is not None and run.done is not None:
            return await asyncio.shield(run.done)
        row = await self.store.one(sa.select(t.runs.c.status).where(t.runs.c.id == run_id))
        if row is None:
            raise RunNotFound(run_id)
        status = RunStatus(row.status)
        if status.terminal:
            return status
        raise InvalidTransition(f"run {run_id} is {status} and not driven by this process")

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
        if self._stopping:
            raise ShuttingDown("Baton is shutting down; try again in a moment.")
        bad = storable.problem(request.requested_by)
        if bad is not None:
            raise BatonError(f"requested_by cannot be stored: {bad}")
        playbook = self.catalog.get(request.playbook)
        run, ops = self.records.prepare(playbook, request)
        ops.extend(also(run.id) if callable(also) else also)
        if detach:  # queued with no owner: the first `serve` node to look starts it
            created = ops[0]
            assert isinstance(created, Rows) and created.kind == "run_new"
            created.rows[0].update(owner=None, lease_expires_at=None)
            if self._postgres:
                ops.append(inbox.notify(inbox.ADMIT))
            await self.store.write(*ops)
            return run.id
        await self._admit_new(run, ops)
        return run.id

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> None:
        """Run background work the engine owns: counted by ``wait_idle``, its errors
        logged, cancelled at stop."""
        self._busy_inc()
        task = asyncio.create_task(self._tracked(work), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tracked(self, work: Coroutine[Any, Any, Any]) -> None:
        try:
            await work
        except Exception:
            log.exception("background work failed")
        finally:
            self._busy_dec()

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
                answer = await self._cancel_queued(row, by)
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

    async def _cancel_queued(self, row: sa.Row[Any], by: str) -> inbox.Answer | None:
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

        cancelled, _ = await self.store.write(cancel_queued, self._audit(by, "cancel", run_id, {}))
        if not cancelled:
            return None
        self.bus.publish(
            ev.RunCancelled(run_id=run_id, playbook=row.playbook, at=now, status="cancelled", by=by)
        )
        return inbox.Answer(inbox.APPLIED, f"cancelled run {run_id} (it was queued)")

    async def command(
        self, run_id: str, kind: str, payload: dict[str, Any], by: str, *, what: str
    ) -> inbox.Answer:
        """Put a command in a run's inbox and wait for its answer (see
        ``engine.runs.inbox``)."""
        sent = inbox.send(
            run_id, kind, payload, by, self.clock.now(), what=what, postgres=self._postgres
        )
        command_id, _ = (await self.store.write(sent))[0]
        return await self.keeper.answer(run_id, msg.Command(command_id, kind, by, payload))

    @property
    def _postgres(self) -> bool:
        return self.store.dialect == "postgresql"

    async def retry(self, run_id: str, by: str, *, from_failed: bool = False) -> None:
        """Start a new attempt of a finished run: succeeded steps keep their outputs,
        the rest run again; ``from_failed``: only the failed steps and what depends on
        them run again (``engine.runs.fromfailed``)."""
        async with self._lock(f"retry:{run_id}"):  # two clicks on Retry: one new attempt
            await self._retry(run_id, by, from_failed)

    async def _retry(self, run_id: str, by: str, from_failed: bool = False) -> None:
        if run_id in self._runs:
            raise InvalidTransition(f"run {run_id} is still active; cancel it or let it end")
        row = await self.records.row(run_id)
        if row.status not in ("failed", "cancelled", "timed_out"):
            raise InvalidTransition(
                f"run {run_id} is {row.status}; only failed, cancelled or timed-out runs "
                "can be retried"
            )
        playbook = from_snapshot(row.definition)
        conc, key = playbook.concurrency, row.concurrency_key
        if conc is not None and key is not None and conc.on_limit.value == "reject":
            taken = await self._holders(key, run_id)
            if taken >= conc.limit:  # refuse before touching the run's rows
                raise _limit_reached(playbook, key, taken)
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
                finished_at=None,
                queued_at=now,
                owner=self.owner,
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
        await self.store.write(claim, self._audit(by, "retry", run_id, detail))
        run = await self.records.load(run_id)
        run.status = RunStatus.QUEUED
        run.announced = False
        try:
            await self._admit_new(run, [], existing=True)
        except ClaimLost:
            now_row = await self.records.row(run_id)
            by_whom = f" by {now_row.stopped_by}" if now_row.stopped_by else ""
            raise InvalidTransition(
                f"run {run_id}'s new attempt was {now_row.status}{by_whom} before it started"
            ) from None

    async def decide(
        self, approval_id: str, user: str, decision: str, comment: str = ""
    ) -> DecisionResult:
        """Record a human decision on an approval gate. Idempotent per (gate, user)."""
        if decision not in ("approve", "reject"):
            raise BatonError(f"decision must be approve or reject, not {decision!r}")
        row = await self.store.one(sa.select(t.approvals).where(t.approvals.c.id == approval_id))
        if row is None:
            raise ApprovalNotFound(approval_id)
        run = self._runs.get(row.run_id)
        comment = storable.clean_text(comment)
        masker = run.masker if run is not None else await self.records.masker_of(row.run_id)
        comment = masker.mask_text(comment)
        spec = row.spec
        if row.status != "pending":
            return DecisionResult(
                approval_id, False, row.status, f"approval {approval_id} is already {row.status}"
            )
        problem = await self._decider_problem(row, user)
        if problem is not None:
            await self.store.write(self._audit(user, decision, approval_id, {}, "refused"))
            raise NotAllowed(problem)
        now = self.clock.now()
        outcome = gates.Outcome()
        quorum = int(spec.get("min_approvals", 1))
        sent: list[int] = []
        payload: dict[str, Any] = {}

        def tell_driver(conn: sa.Connection) -> None:
            """A decision that closes the gate goes to the run's inbox in its commit."""
            closed = outcome.closed
            if closed is None:
                return
            payload.update(
                step_id=row.step_id,
                approval_id=approval_id,
                outcome=closed,
                reason=f"{closed} by {user}" + (f": {comment}" if comment else ""),
                output={"approval_id": approval_id, "approved_by": outcome.approved_by},
            )
            put = inbox.put(
                row.run_id, inbox.GATE, payload, user, now, postgres=self._postgres, box=sent
            )
            put(conn)

        await self.store.write(
            gates.record(
                approval_id, user, decision, comment, now, quorum, outcome, self.same_person
            ),
            tell_driver,
        )
        if outcome.late is not None:
            return DecisionResult(
                approval_id,
                False,
                outcome.late,
                f"approval {approval_id} is already {outcome.late}",
            )
        if outcome.earlier is not None:
            return DecisionResult(
                approval_id,
                False,
                "pending",
                f"{user} already decided ({outcome.earlier}) on {approval_id}",
            )
        playbook = run.playbook.name if run else ""
        self.bus.publish(
            ev.ApprovalDecided(
                run_id=row.run_id,
                playbook=playbook,
                at=now,
                step_id=row.step_id,
                approval_id=approval_id,
                user=user,
                decision=decision,
                comment=comment,
            )
        )
        message = f"{user} {DECIDED[decision]} {approval_id}"
        if sent:
            command = msg.Command(sent[0], inbox.GATE, user, payload)
            answer = await self.keeper.answer(row.run_id, command)
            if answer.state == inbox.PENDING:
                message += f" ({answer.message})"
        return DecisionResult(approval_id, True, outcome.closed or "pending", message)

    async def may_decide(self, approval_id: str, user: str) -> str | None:
        """Why ``user`` may not decide on the gate (None: they may), without deciding:
        front ends ask before opening a form for a reason."""
        row = await self.store.one(sa.select(t.approvals).where(t.approvals.c.id == approval_id))
        if row is None:
            raise ApprovalNotFound(approval_id)
        if row.status != "pending":
            return f"approval {approval_id} is already {row.status}"
        return await self._decider_problem(row, user)

    async def _decider_problem(self, row: sa.Row[Any], user: str) -> str | None:
        spec = row.spec
        if self.same_person(user, row.requested_by) and not spec.get("allow_self_approval"):
            return (
                f"{user} started run {row.run_id} and cannot approve it: another approver "
                f"must decide ({queries.describe_approvers(spec, row.requested_by)})"
            )
        if not await self.approver_check(user, spec.get("approvers") or {}):
            return (
                f"{user} may not decide on {row.id}; approvers: "
                f"{queries.describe_approvers(spec, row.requested_by)}"
            )
        return None

    # --- preparing and admitting runs -------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self._key_locks.setdefault(key, asyncio.Lock())

    async def _admit_new(self, run: RunState, ops: list[Op], existing: bool = False) -> None:
        """Persist a new run as running, or queued behind its concurrency key."""
        key = run.concurrency_key
        conc = run.playbook.concurrency
        if key is None or conc is None:
            self._begin(run, ops)
            await self._commit_start(run, ops)
            return
        async with self._lock(key):
            taken = await self._holders(key, run.id)
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
                raise _limit_reached(run.playbook, key, taken)
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
        under a lock every node takes: see ``engine.runs.admission``). When another node
        took the place meanwhile: how many hold the key, with ``run`` and ``ops`` as they
        were."""
        saved = (run.status, run.started_at, run.deadline_at, run.epoch)
        trial = [
            Rows(op.kind, [dict(r) for r in op.rows]) if isinstance(op, Rows) else op for op in ops
        ]
        self._begin(run, trial)
        check = admission.place(key, run.id, limit, queued=True, postgres=self._postgres)
        try:
            await self.store.write(check, *trial)
        except admission.KeyFull as full:
            run.status, run.started_at, run.deadline_at, run.epoch = saved
            return full.taken
        self._spawn_driver(run)
        return None

    async def _holders(self, key: str, run_id: str) -> int:
        """How many runs other than ``run_id`` hold (or wait for) concurrency key ``key``."""
        return int(await self.store.scalar(admission.holders(key, run_id, queued=True)))

    def _begin(self, run: RunState, ops: list[Op]) -> None:
        """Mark ``run`` running under this engine (a new epoch): in its ``run_new`` row
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
            "owner": self.owner,
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
                trigger="playbook",
                source=parent.source,
                parent_run_id=parent.id,
                parent_step_id=step.id,
            ),
            inherited=parent.masker,
        )
        self._begin(child, ops)
        return child, ops

    async def _commit_start(self, run: RunState, ops: list[Op]) -> None:
        await self.store.write(*ops)
        self._spawn_driver(run)

    def _spawn_driver(self, run: RunState) -> None:
        run.done = asyncio.get_running_loop().create_future()
        self._runs[run.id] = run
        if run.deadline_at is not None:
            self.timers.set(
                f"run:{run.id}:deadline",
                run.deadline_at,
                lambda: self._post(run, msg.Stop(status="timed_out", by="timeout")),
            )
        self._busy_inc()
        self._drivers[run.id] = asyncio.create_task(self._drive(run), name=f"run-{run.id}")
        if len(self._runs) == 1:
            self.keeper.poke()  # the first run: the keeper starts reading the inbox

    async def _admit_queued(self, key: str | None) -> None:
        """Start the runs waiting in ``key``'s queue that its limit lets through (key
        None: runs queued with no key, as ``baton run --detach`` leaves them). This node
        starts its own queued runs and, a ``serve`` node, those nobody holds; a queued run
        another live node holds is that node's to start (it still takes its place)."""
        same_key = (
            t.runs.c.concurrency_key.is_(None) if key is None else t.runs.c.concurrency_key == key
        )
        statuses = ["queued"] if key is None else ["queued", "running", "waiting"]
        async with self._lock(f"queue:{key}"):
            rows = await self.store.all(
                sa.select(
                    t.runs.c.id,
                    t.runs.c.status,
                    t.runs.c.definition,
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
                conc = from_snapshot(r.definition).concurrency if key is not None else None
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
                self._begin(run, ops)
                if conc is not None and key is not None:  # the place, checked as it is taken
                    ops.insert(
                        0,
                        admission.place(
                            key, r.id, conc.limit, queued=False, postgres=self._postgres
                        ),
                    )
                try:
                    await self._commit_start(run, ops)
                except ClaimLost:
                    log.debug("queued run %s was taken or cancelled meanwhile", r.id)
                except admission.KeyFull:
                    log.debug("queued run %s: another node filled key %r meanwhile", r.id, key)
                    break

    def _may_take(self, row: sa.Row[Any], now: datetime, dead: list[str]) -> bool:
        """May this node start the queued run ``row``?"""
        if row.owner == self.owner:
            return True
        if not self.adopts:
            return False
        expired = row.lease_expires_at is None or row.lease_expires_at < now
        return row.owner is None or expired or row.owner in dead

    async def admit_waiting(self) -> None:
        """Start queued runs this node may start (its own; a ``serve`` node's, those
        nobody holds), whichever process freed their place."""
        held = sa.or_(t.runs.c.owner == self.owner, sa.literal(self.adopts))
        rows = await self.store.all(
            sa.select(t.runs.c.concurrency_key)
            .where(t.runs.c.status == RunStatus.QUEUED.value, held)
            .distinct()
        )
        for (key,) in rows:
            await self._admit_queued(key)

    # --- loading and resuming ---------------------------------------------------------

    async def adopt(self) -> list[str]:
        """Adopt the runs in progress whose driver is gone (lease expired, owner dead or
        gone away) and drive them; then start the queued runs this node may start.
        Returns the ids of the runs adopted."""
        if self._stopping:
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

    async def _resume(self, ids: list[str]) -> None:
        """Drive again the runs just adopted: all of them read in a few queries,
        whatever their number."""
        active = t.runs.c.id.in_(ids)

        def read(conn: sa.Connection) -> tuple[Any, ...]:
            runs = conn.execute(sa.select(t.runs).where(active).order_by(t.runs.c.created_at))
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
            return runs.all(), steps.all(), gates.all(), approved.all()

        runs, steps, gates, approved = await self.store.read(read)
        by_run: dict[str, list[sa.Row[Any]]] = {}
        for sr in steps:
            by_run.setdefault(sr.run_id, []).append(sr)
        gate_rows = {g.id: g for g in gates}
        approvers: dict[str, list[str]] = {}
        for d in approved:
            approvers.setdefault(d.approval_id, []).append(d.user)
        for row in runs:
            if row.owner != self.owner or row.status not in leases.ACTIVE:
                continue  # ended or taken again between the claim and the read
            try:
                if row.drive_failures >= MAX_DRIVE_FAILURES:
                    raise BatonError(
                        f"Baton could not store this run's progress {row.drive_failures} "
                        f"times: {row.error or 'see the server log'}"
                    )
                run = self.records.build(row, by_run.get(row.id, []))
            except Exception as exc:  # one unreadable run must not keep Baton from starting
                if not isinstance(exc, BatonError):
                    log.exception("cannot resume run %s", row.id)
                await self._fail_unresumable(row, exc)
                continue
            run.resuming = True
            await self._rearm(run, gate_rows, approvers)
            self._spawn_driver(run)
            if self.remote.sends_steps(run):  # its steps on workers belong to the old driver
                self.spawn(self.remote.take_back_older(run), name=f"take-back-{run.id}")

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
                self.machine.set_timer(run, step, step.wake_at, step.wake_reason)
            elif step.wake_reason == "approval" and step.approval_id:
                gate = gates.get(step.approval_id)
                if gate is None:
                    continue
                step.on_timeout = str(gate.spec.get("on_timeout", "reject"))
                step.gate = dict(gate.spec or {})
                if gate.status == "pending":
                    if gate.deadline_at is not None:
                        self.machine.set_timer(run, step, gate.deadline_at, "approval")
                    remind_at = step.gate.get("remind_at")
                    if remind_at:
                        at = datetime.fromisoformat(remind_at)
                        self.machine.set_timer(run, step, at, "remind")
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

    # --- the driver ------------------------------------------------------------------

    def _post(self, run: RunState, message: Any) -> None:
        if run.abandoned:
            return  # a late step result or timer of a run this node gave up
        run.inbox.append(message)
        if run.blocked:
            run.blocked = False
            self._busy_inc()
            run.wake.set()

    async def _drive(self, run: RunState) -> None:
        try:
            while True:
                batch = Batch()
                moved = next((m for m in run.inbox if isinstance(m, msg.Abandon)), None)
                if moved is not None:
                    log.warning("run %s: %s; this node stops driving it", run.id, moved.reason)
                    self._abandon(run)
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
                while run.inbox:
                    m = run.inbox.popleft()
                    if isinstance(m, msg.Command):
                        self._apply_command(run, m, batch)
                    else:
                        self.machine.apply(run, m, batch)
                finished = self.machine.advance(run, batch)
                if finished:
                    self._closing(run, batch)
                if batch.ops and not await self._commit(run, batch.ops):
                    return  # no longer ours: another node (or a later adoption) goes on
                for event in batch.events:
                    self.bus.publish(event)
                for child in batch.children:
                    self._spawn_driver(child)
                for step in batch.launches:
                    self._launch(run, step)
                for fn in batch.after:
                    fn()
                if finished:
                    await self._finish(run)
                    return
                del batch  # a parked run must not keep its last batch's statements alive
                if not run.inbox:
                    run.blocked = True
                    self._busy_dec()
                    await run.wake.wait()
                    run.wake.clear()
        except asyncio.CancelledError:
            if not run.blocked:
                self._busy_dec()
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
                self._abandon(run)
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
        it on from its stored state; after ``MAX_DRIVE_FAILURES`` the run fails."""
        reason = storable.clean_text(f"{type(exc).__name__}: {_first_line(exc)}")[:1000]
        retry_at = self.leases.expiry(self.clock.now())
        log.error(
            "run %s: giving it up (%s); a server retries it after %s",
            run.id,
            reason,
            self.leases.lease,
        )
        self._busy_inc()  # idle only once the lease is let go
        self._abandon(run)
        with suppress(Exception):  # if even this fails, the lease expires by itself
            await self.store.write(
                t.runs.update()
                .where(
                    t.runs.c.id == run.id,
                    t.runs.c.epoch == run.epoch,
                    t.runs.c.owner == self.owner,
                )
                .values(
                    owner=None,
                    lease_expires_at=retry_at,
                    drive_failures=t.runs.c.drive_failures + 1,
                    error=reason,
                )
            )
        self._busy_dec()

    def _abandon(self, run: RunState) -> None:
        """Stop driving ``run`` and change nothing: its steps here are stopped (their
        results could not be stored), its timers dropped, whoever waits here told."""
        if run.abandoned:
            return
        run.abandoned = True
        self._runs.pop(run.id, None)
        self._drivers.pop(run.id, None)
        self.timers.cancel(f"run:{run.id}:deadline")
        for step in run.steps.values():
            for reason in ("retry", "wait", "approval", "remind", "timeout"):
                self.timers.cancel(self.machine.timer_key(run, step, reason))
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
            self._busy_dec()
        run.blocked = False

    def _apply_command(self, run: RunState, m: msg.Command, batch: Batch) -> None:
        answer = commands.apply(self.machine, run, m, batch, self.clock.now())
        waiter = run.waiters.pop(m.id, None)
        if waiter is not None:

            def tell(w: asyncio.Future[Any] = waiter, a: inbox.Answer = answer) -> None:
                if not w.done():
                    w.set_result(a)

            batch.after.append(tell)

    def _closing(self, run: RunState, batch: Batch) -> None:
        """What the final commit of a run carries besides its status: the refusal of the
        commands it did not apply, and the wake-up of a parent run driven elsewhere."""
        now = self.clock.now()
        batch.ops.append(inbox.refuse_rest(run.id, run.status.value, now))
        parent = run.parent_run_id
        if parent and run.parent_step_id and parent not in self._runs:
            payload = {
                "step_id": run.parent_step_id,
                "child_run_id": run.id,
                "status": run.status.value,
                "output": _family_output(run),
                "error": run.error,
            }
            batch.ops.append(
                inbox.put(parent, inbox.CHILD, payload, "baton", now, postgres=self._postgres)
            )

    async def _finish(self, run: RunState) -> None:
        self._runs.pop(run.id, None)
        self._drivers.pop(run.id, None)
        self.timers.cancel(f"run:{run.id}:deadline")
        if run.done is not None and not run.done.done():
            run.done.set_result(run.status)
        if run.parent_run_id and run.parent_step_id:
            parent = self._runs.get(run.parent_run_id)
            if parent is not None:
                output = _family_output(run)
                self._post(
                    parent,
                    msg.ChildEnded(run.parent_step_id, run.id, run.status.value, output, run.error),
                )
        if run.concurrency_key is not None:
            await self._admit_queued(run.concurrency_key)
        self._busy_dec()

    # --- executing a step ------------------------------------------------------------

    def _launch(self, run: RunState, step: StepState) -> None:
        self._busy_inc()
        if step.spec.for_each is not None:  # its timeout applies to each item
            step.task = asyncio.create_task(
                self._fan_out(run, step), name=f"step-{run.id}-{step.id}"
            )
            return
        step.task = asyncio.create_task(
            self._execute(run, step, step.attempts), name=f"step-{run.id}-{step.id}"
        )
        if step.spec.timeout is not None:
            at = self.clock.now() + step.spec.timeout
            self.machine.set_timer(run, step, at, "timeout")

    async def _execute(self, run: RunState, step: StepState, attempt: int) -> None:
        result = await self._act(run, step, run.context(), attempt, lambda: step.cancel_reason)
        step.task = None
        self._post(run, result)
        self._busy_dec()

    async def _fan_out(self, run: RunState, step: StepState) -> None:
        """A ``for_each`` step: its items, each through ``_act`` (``engine.fanout``)."""
        fan = fanout.FanOut(
            run,
            step,
            post=lambda m: self._post(run, m),
            act=partial(self._act, run, step),
            load=partial(items.stored, self.store, run.id, step.id, run.attempt),
            now=self.clock.now,
            timers=self.timers,
            busy=self._busy_add,
            stopping=lambda: self._stopping,
        )
        result = await fan.run()
        step.task = None
        self._post(run, result)
        self._busy_dec()

    async def _act(
        self,
        run: RunState,
        step: StepState,
        context: dict[str, Any],
        attempt: int,
        why: Callable[[], str | None],
    ) -> msg.Finished | msg.Suspended:
        """One attempt of ``step``'s action with its inputs rendered from ``context``;
        cancelled, it ends as ``why()`` says (timeout, shutdown, else cancelled)."""
        ctx = ActionContext(
            run_id=run.id,
            step_id=step.id,
            attempt=attempt,
            params=run.params,
            secrets=self.secrets,
            requested_by=run.requested_by,
            now=self.clock.now,
            http=self.http,
            log=lambda text, level="info": self._log(run, step, text, level),
            env=self.step_env,
            hosts=inventory.host,
        )
        result: Any
        try:
            action = self.registry.get(step.spec.action)
            if step.templated:
                refuse_splices(action, step.spec.with_)  # a definition validate never saw
                raw = await templating.render_step(step.spec.with_, context, step.spec.timeout)
            else:
                raw = step.spec.with_
            try:
                inputs = action.Inputs.model_validate(raw)
            except pydantic.ValidationError as exc:
                raise ActionError(_input_errors(step.spec.action, exc)) from None
            out: dict[str, Any] | Suspend
            if step.spec.runs_on is not None:  # on a worker, which reports back
                out = await self.remote.run(run, step, attempt, raw, ctx)
            else:
                out = await action.run(ctx, inputs)
            if isinstance(out, Suspend):
                result = msg.Suspended(step.id, attempt, out)
            else:
                result = msg.Finished(
                    step.id,
                    attempt,
                    "succeeded",
                    output=dict(out or {}),
                    attachments=ctx.attachments,
                )
        except asyncio.CancelledError:
            reason = why() or "cancelled"
            outcome, error = {
                "timeout": ("timed_out", f"timed out after {step.spec.timeout}"),
                "shutdown": ("interrupted", "interrupted by shutdown"),
            }.get(reason, ("cancelled", f"cancelled by {run.stopped_by or 'request'}"))
            result = msg.Finished(  # what the action printed until then is kept
                step.id,
                attempt,
                outcome,
                output=dict(ctx.partial or {}),
                error=error,
                attachments=ctx.attachments,
            )
        except remote.Ended as exc:  # on a worker: timed out there, or interrupted
            result = msg.Finished(
                step.id,
                attempt,
                exc.outcome,
                output=exc.output,
                error=str(exc),
                attachments=ctx.attachments,
            )
        except ActionError as exc:
            result = msg.Finished(
                step.id,
                attempt,
                "failed",
                output=exc.output,
                error=str(exc),
                attachments=ctx.attachments,
            )
        except BatonError as exc:
            result = msg.Finished(step.id, attempt, "failed", error=str(exc))
        except Exception as exc:
            log.exception("step %s of run %s raised", step.id, run.id)
            result = msg.Finished(step.id, attempt, "failed", error=f"{type(exc).__name__}: {exc}")
        return result

    async def _log(self, run: RunState, step: StepState, text: str, level: str) -> None:
        """Queue a log line for the run's next commit (a ``log`` step's line commits
        with the step's end: one commit, not two)."""
        self._post(run, msg.Logged(step.id, run.masker.mask_text(text), level, self.clock.now()))

    # --- audit -------------------------------------------------------------------------

    def _audit(
        self,
        actor: str,
        action: str,
        target: str,
        detail: dict[str, Any],
        outcome: str = "ok",
        source: dict[str, Any] | None = None,
    ) -> Op:
        return audit.op(self.clock.now(), actor, action, target, detail, outcome, source)

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
        await self.store.write(self._audit(actor, action, target, detail, outcome, source))

    @property
    def active_runs(self) -> list[str]:
        return list(self._runs)


class RunMoved(BatonError):
    """The run is now driven by another node (this one lost its lease or gave it up)."""


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


def _input_errors(action: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "with"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return f"bad inputs for action {action}: " + "; ".join(parts)


def _limit_reached(playbook: Playbook, key: str, taken: int) -> ConcurrencyLimit:
    limit = playbook.concurrency.limit if playbook.concurrency else 1
    return ConcurrencyLimit(
        f"{playbook.name}: {taken} run(s) already hold concurrency key {key!r} "
        f"(limit {limit}); try again when they finish"
    )


__all__ = ["ACTIVE_RUN", "Engine", "RunRequest"]
