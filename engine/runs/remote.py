"""Steps that run on workers (``runs_on: LABEL``): dispatch, the fence, the sweeper.

A step with ``runs_on`` is not run in the process driving its run. Its driver renders
its inputs as for any step, then ``Remote.run`` puts a job in the label's queue
(``engine.runs.jobqueue``: procrastinate in the same PostgreSQL database) and waits. A
``baton worker --labels`` process takes the job, runs the action (``engine.runs.worker``)
and writes what came of it into the run's command inbox (``engine.runs.inbox``), as any
other process talks to a run's driver. The driver hands the report to the waiting step
through ``deliver``: the *fence*. A report of another epoch of the run (the run was
adopted by another node, or retried) or of another attempt of the step is dropped and
logged, so a late worker can never change a run that moved on.

The job carries everything the step needs; the worker reads no playbook. Inputs that
hold a secret (a secret param, ``secrets.*``) travel sealed with Baton's Fernet key, so
no secret sits in clear in the job table, and the worker masks those values in what it
reports; a step without secrets needs no key on the worker.

The sweeper (one loop per process while it has steps on workers) looks at their jobs:

- a job nobody took yet: the step shows "waiting for a worker labelled dc1" until a
  worker takes it, up to the step's timeout (which then times it out as any step);
- a job whose worker stopped beating (``kill -9``, a lost machine; see
  ``jobqueue.stalled``), or that its worker gave up on (stopped past its drain time): the
  step is re-delivered to the label's queue when it is ``idempotent``, else it ends
  ``interrupted`` and the run follows its failure rules;
- a job that ended without a report: the step fails saying so.

A run adopted from a driver that died takes back the jobs that driver sent (an older
epoch): the crash rules re-ran those steps or marked them interrupted.

Cancelling the step (the run's cancel, its timeout) takes the job back: a job not yet
taken is cancelled, a running one aborted (its worker cancels the action and reports
what it had printed, which the attempt keeps, as a local step's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.actions import ActionContext
from engine.errors import ActionError, BatonError
from engine.playbooks.inputchecks import NEEDS_POSTGRES
from engine.runs import inbox
from engine.runs import messages as msg
from engine.runs.state import RunState, StepState, StepStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    import procrastinate

    from engine.secrets import SecretBox

log = logging.getLogger(__name__)

NO_SECRETS_NEEDED = frozenset({"shell", "http"})
"""Actions that never read ``ctx.secrets`` (their secrets reach them through inputs):
their jobs carry none. Others (``python``, plug-ins) get the run's secrets, sealed."""
GONE_SWEEPS = 3
"""Sweeps a job may look ended before its report arrives; after that the step fails."""
SUCCEEDED, FAILED, LOST = "succeeded", "failed", "lost"
LAST_WORDS = 2.0
"""Seconds a step taken back from its worker (cancel, timeout) waits for the worker's
report of what it had printed."""


class Ended(BatonError):
    """A step on a worker ended otherwise than succeeded or failed (timed out on the
    worker, interrupted by its death): the runner records ``outcome`` as is."""

    def __init__(self, outcome: str, error: str, output: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.output = output or {}
        super().__init__(error)


def deliver(run: RunState, report: dict[str, Any]) -> tuple[str, str]:
    """The fence: hand a worker's ``report`` (an inbox command) to the step waiting for
    it, if it is the run's current epoch and the step's current attempt; otherwise drop
    it. Returns the command's answer (state, text)."""
    step = run.steps.get(str(report.get("step_id")))
    epoch, attempt = report.get("epoch"), report.get("attempt")
    waiting = step is not None and step.status is StepStatus.RUNNING and step.remote is not None
    if step is None or not waiting or epoch != run.epoch or attempt != step.attempts:
        now = (
            f"the run is at epoch {run.epoch}"
            + (f", the step at attempt {step.attempts} ({step.status})" if step else "")
            + ("" if waiting else ", and no worker's report is awaited")
        )
        text = (
            f"dropped a stale report of step {report.get('step_id')} from worker "
            f"{report.get('worker')} (epoch {epoch}, attempt {attempt}): {now}"
        )
        log.info("run %s: %s", run.id, text)
        return inbox.REFUSED, text
    assert step is not None and step.remote is not None
    if not step.remote.done():
        step.remote.set_result(report)
    return inbox.APPLIED, f"step {step.id} attempt {attempt}: {report.get('outcome')}"


@dataclass(eq=False)
class _Waiting:
    """A step on a worker, as the sweeper follows it."""

    run: RunState
    step: StepState
    attempt: int
    spec: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    job: int = 0
    note: str | None = None
    gone: int = 0
    redelivered: int = field(default=0)

    @property
    def label(self) -> str:
        return str(self.spec["label"])

    def renew(self) -> None:
        """A new job for the same attempt: a new report to wait for."""
        self.future = asyncio.get_running_loop().create_future()
        self.step.remote = self.future
        self.gone = 0


class Remote:
    """This process's steps on workers. ``post`` hands a message to a run's driver;
    ``heartbeat``: seconds between two heartbeats of a worker (``BATON_WORKER_HEARTBEAT``),
    which is also how often the sweeper looks."""

    def __init__(
        self,
        *,
        database_url: str,
        postgres: bool,
        secret_box: SecretBox,
        post: Callable[[RunState, Any], None],
        now: Callable[[], datetime],
        heartbeat: float = 2.0,
    ) -> None:
        self.database_url = database_url
        self.postgres = postgres
        self.secret_box = secret_box
        self.post = post
        self.now = now
        self.heartbeat = heartbeat
        self._queue: procrastinate.App | None = None
        self._opening = asyncio.Lock()
        self._waiting: set[_Waiting] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # --- a step's life on a worker ---------------------------------------------------------

    async def run(
        self, run: RunState, step: StepState, attempt: int, inputs: dict[str, Any], ctx: Any
    ) -> dict[str, Any]:
        """Run ``step`` (its rendered ``inputs``) on a worker labelled ``runs_on`` and
        return its output, as an action would (``ActionError`` when it failed, ``Ended``
        when it timed out there or was interrupted)."""
        if not self.postgres:
            raise BatonError(f"{NEEDS_POSTGRES}; this database is SQLite")
        spec = self.spec(run, step, attempt, inputs, ctx)
        queue = await self.queue()
        loop = asyncio.get_running_loop()
        waiting = _Waiting(run, step, attempt, spec, loop.create_future())
        step.remote = waiting.future
        self._waiting.add(waiting)
        try:
            waiting.job = await self._defer(queue, waiting)
            report = await self._outcome(queue, waiting)
        except asyncio.CancelledError:
            if waiting.note is not None:  # timed out (or cancelled) with no worker to take it
                ctx.partial = {"waiting_for": waiting.note}
            with contextlib.suppress(Exception):
                await asyncio.shield(self._take_back(waiting))
                kept = await self._last_words(waiting)
                if kept is not None:
                    ctx.partial = kept
            raise
        finally:
            step.remote = None
            self._waiting.discard(waiting)
        return await self._result(report, ctx)

    def spec(
        self, run: RunState, step: StepState, attempt: int, inputs: dict[str, Any], ctx: Any
    ) -> dict[str, Any]:
        """The job: who it is for (run, step, attempt, the run's epoch) and what it needs
        (action, inputs, params, timeout), sealed when it holds a secret."""
        label = step.spec.runs_on
        assert label is not None
        body: dict[str, Any] = {
            "with": _plain(inputs),
            "params": _plain(run.params),
            "requested_by": run.requested_by,
        }
        if step.spec.action not in NO_SECRETS_NEEDED:
            body["secrets"] = dict(ctx.secrets)
        secret_values = run.masker.present_in(body)
        timeout = step.spec.timeout.total_seconds() if step.spec.timeout else None
        spec: dict[str, Any] = {
            "run_id": run.id,
            "playbook": run.playbook.name,
            "step_id": step.id,
            "attempt": attempt,
            "epoch": run.epoch,
            "label": label,
            "action": step.spec.action,
            "timeout": timeout,
        }
        if secret_values:
            spec["sealed"] = self.secret_box.seal({**body, "mask": secret_values})
        else:
            spec["body"] = body
        return spec

    async def _defer(self, queue: procrastinate.App, waiting: _Waiting) -> int:
        job = await _jobqueue().defer(queue, waiting.label, waiting.spec)
        log.info(
            "run %s: step %s (attempt %d) sent to the workers labelled %s (job %d)",
            waiting.run.id,
            waiting.step.id,
            waiting.attempt,
            waiting.label,
            job,
        )
        self._sweep_soon()
        return job

    async def _outcome(self, queue: procrastinate.App, waiting: _Waiting) -> dict[str, Any]:
        """Wait for the worker's report; a lost worker's step is re-delivered when it is
        idempotent, else it ends interrupted."""
        while True:  # shielded: a cancel of the step leaves the report to wait for
            report = await asyncio.shield(waiting.future)
            if report.get("outcome") != LOST:
                return report
            why = str(report.get("error") or "its worker is gone")
            await _jobqueue().fail(queue, waiting.job)
            if not waiting.step.spec.idempotent:
                return {
                    "outcome": "interrupted",
                    "error": f"interrupted: {why}, and the step is not idempotent "
                    "(an `idempotent: true` step is re-delivered to another worker instead)",
                }
            waiting.renew()
            waiting.redelivered += 1
            self._say(
                waiting,
                f"re-delivered to the workers labelled {waiting.label}: {why} (the step is "
                "idempotent)",
                "warning",
            )
            waiting.job = await self._defer(queue, waiting)

    async def _result(self, report: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
        """The report as the runner takes an action's end: logs and attachments kept, the
        output returned, a failure raised."""
        for line in report.get("logs") or []:
            text, level = [*line, "info"][:2] if isinstance(line, list) else (str(line), "info")
            await ctx.log(str(text), str(level))
        ctx.attachments.update(report.get("attachments") or {})
        output = dict(report.get("output") or {})
        outcome = str(report.get("outcome"))
        if outcome == SUCCEEDED:
            return output
        error = str(report.get("error") or outcome)
        if outcome == FAILED:
            raise ActionError(error, output)
        raise Ended(outcome, error, output)

    async def _take_back(self, waiting: _Waiting) -> None:
        """The step was cancelled (the run's cancel, its timeout, a shutdown): its job
        must not run on, nor start."""
        if waiting.job and self._queue is not None:
            await _jobqueue().abort(self._queue, waiting.job)
            log.info(
                "run %s: step %s cancelled: job %d taken back from the workers",
                waiting.run.id,
                waiting.step.id,
                waiting.job,
            )

    async def _last_words(self, waiting: _Waiting) -> dict[str, Any] | None:
        """What a step taken back from a worker had printed: its worker reports it as it
        kills the step, awaited ``LAST_WORDS`` seconds (None: nobody ran it, or too late)."""
        if self._queue is None or waiting.future.done():
            return None
        states = await _jobqueue().states(self._queue, [waiting.job])
        if states.get(waiting.job) in (None, "todo", "cancelled"):
            return None  # no worker had it: nothing was printed
        try:
            report = await asyncio.wait_for(asyncio.shield(waiting.future), LAST_WORDS)
        except TimeoutError:
            return None
        return dict(report.get("output") or {})

    def sends_steps(self, run: RunState) -> bool:
        """Whether ``run`` has steps on workers (on PostgreSQL, where they can be)."""
        return self.postgres and any(s.spec.runs_on for s in run.steps.values())

    async def take_back_older(self, run: RunState) -> None:
        """A run adopted from a driver that died: the jobs it sent under an older epoch
        are taken back (their steps were re-run or marked interrupted by the crash rules),
        so a step marked interrupted does not run on, on a worker, unseen."""
        queue = await self.queue()
        for job in await _jobqueue().older(queue, run.id, run.epoch):
            await _jobqueue().abort(queue, job)
            log.info("run %s: job %d of its previous driver taken back from the workers", run.id,
                     job)  # fmt: skip

    def _say(self, waiting: _Waiting, text: str, level: str = "info") -> None:
        """A line in the run's log (and the process's)."""
        log.log(logging.getLevelName(level.upper()), "run %s: step %s %s", waiting.run.id,
                waiting.step.id, text)  # fmt: skip
        self.post(waiting.run, msg.Logged(waiting.step.id, text, level, self.now()))

    def _note(self, waiting: _Waiting, waiting_for: str | None) -> None:
        if waiting.note == waiting_for:
            return
        waiting.note = waiting_for
        self.post(waiting.run, msg.WorkerNote(waiting.step.id, waiting.attempt, waiting_for))

    # --- the sweeper -----------------------------------------------------------------------

    def _sweep_soon(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_loop(), name="baton-remote-sweeper")

    async def _sweep_loop(self) -> None:
        failing = False
        while self._waiting:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.sweep()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("cannot look at the workers' jobs (%s); trying again", exc)
                failing = True

    async def sweep(self) -> None:
        """One look at the jobs of this process's steps on workers (see the module)."""
        waiting = [w for w in self._waiting if w.job and not w.future.done()]
        if not waiting:
            return
        queue = await self.queue()
        jq = _jobqueue()
        states = await jq.states(queue, [w.job for w in waiting])
        stalled = await jq.stalled(queue, self.heartbeat)
        for w in waiting:
            if w.future.done():
                continue
            state = states.get(w.job)
            if w.job in stalled:
                w.future.set_result(
                    {"outcome": LOST, "error": "the worker running it stopped answering"}
                )
            elif state == "todo":
                self._note(w, f"a worker labelled {w.label}")
            elif state == "doing":
                self._note(w, None)
            else:
                w.gone += 1
                if w.gone >= GONE_SWEEPS:
                    w.future.set_result(
                        {
                            "outcome": FAILED,
                            "error": f"job {w.job} of the workers labelled {w.label} ended "
                            f"({state or 'deleted'}) without reporting the step's end",
                        }
                    )

    # --- the queue -------------------------------------------------------------------------

    async def queue(self) -> procrastinate.App:
        """The job queue, opened on first use."""
        async with self._opening:
            if self._queue is None:
                queue = _jobqueue().app(self.database_url)
                await queue.open_async()
                self._queue = queue
        return self._queue

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._queue is not None:
            await self._queue.close_async()
            self._queue = None


def _plain(value: Any) -> Any:
    """``value`` as JSON carries it (a YAML date in ``with:`` becomes its ISO text), as
    the worker will read it."""
    return json.loads(json.dumps(value, default=str))


def _jobqueue() -> Any:
    """``engine.runs.jobqueue``, imported at the first step sent to a worker: importing
    procrastinate costs every other command half a second."""
    from engine.runs import jobqueue

    return jobqueue
