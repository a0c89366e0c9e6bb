"""The worker: runs the steps sent to its labels (``runs_on``) and reports back.

A ``baton worker --labels dc1,dc2`` process takes jobs from the queues of its labels
(``engine.runs.jobqueue``), runs each job's action with the inputs its driver rendered,
and writes the step's end (output, error, attachments, log lines) into the run's command
inbox as a ``result`` command while the run is in progress (a report for a run that ended
is dropped), fenced there by the run's epoch and the step's attempt
(``engine.runs.remote.deliver``). It reads no playbook and drives no run: it needs the
database, its labels, and, for steps whose inputs hold secrets, the key they are sealed
with (``BATON_SECRET_KEY``, or the servers' key file as ``BATON_KEY_FILE``).

What the worker reports is masked with the secrets the job carried, so no secret reaches
the inbox table in clear. A job cancelled by its driver (the run's cancel, the step's
timeout) cancels the action and reports what it had printed, which the attempt keeps.
On SIGTERM the worker takes no more jobs and lets running steps finish for its drain
time; a step still running then is cancelled and reported ``lost``, which its driver
treats as a worker's death (re-delivered when idempotent, else interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import procrastinate
import pydantic
from procrastinate import JobContext
from procrastinate.job_context import AbortReason

from engine import storable
from engine.actions import ActionContext, Logger, Suspend
from engine.actions.lifecycle import close_actions, release_run
from engine.actions.registry import Registry
from engine.errors import ActionError, BatonError, InvalidTransition, RunNotFound
from engine.fleet.hosts import HostLookup, no_hosts
from engine.runs import inbox, jobqueue
from engine.runs.livelog import LiveLog
from engine.runs.remote import FAILED, LOST, SUCCEEDED
from engine.secrets import Masker, SecretBox
from storage.store import Store, transient

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

REPORT_TRIES = 5
"""Times a report is written before the worker gives it up (the database is down)."""


@dataclass(frozen=True)
class WorkerOptions:
    """``labels``: the queues taken from; ``concurrency``: steps run at once; ``drain``:
    seconds SIGTERM lets running steps finish; ``heartbeat``: seconds between two
    heartbeats (the drivers take a worker silent for five as dead)."""

    name: str
    labels: Sequence[str]
    concurrency: int = 4
    drain: float = 30.0
    heartbeat: float = 2.0


class StepWorker:
    def __init__(
        self,
        *,
        database_url: str,
        store: Store,
        registry: Registry,
        secret_box: SecretBox | None,
        env: Mapping[str, str],
        options: WorkerOptions,
        hosts: HostLookup = no_hosts,
    ) -> None:
        self.database_url = database_url
        self.store = store
        self.registry = registry
        self.secret_box = secret_box
        self.env = dict(env)
        self.options = options
        self.hosts = hosts
        self._http: aiohttp.ClientSession | None = None
        self._holding: Counter[str] = Counter()  # steps running here, per run

    async def run(self) -> None:
        """Take and run jobs until SIGTERM or SIGINT: then no more jobs are taken, and
        running steps get the drain time to finish (procrastinate's graceful stop)."""
        o = self.options
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):  # before anything: a stop is never lost
            loop.add_signal_handler(sig, stop.set)
        queue = jobqueue.app(self.database_url, max_size=o.concurrency + 2)
        queue.task(name=jobqueue.TASK, pass_context=True)(self.job)
        try:
            async with queue.open_async():
                await self._work(queue, stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if self._http is not None:
                await self._http.close()
            await close_actions(self.registry)  # e.g. the ssh connections still open
        log.info("worker %s stopped", o.name)

    async def _work(self, queue: procrastinate.App, stop: asyncio.Event) -> None:
        o = self.options
        work = asyncio.create_task(
            queue.run_worker_async(
                queues=list(o.labels),
                name=o.name,
                concurrency=o.concurrency,
                shutdown_graceful_timeout=o.drain,
                update_heartbeat_interval=o.heartbeat,
                stalled_worker_timeout=jobqueue.STALLED_BEATS * o.heartbeat,
                delete_jobs="successful",
                install_signal_handlers=False,
            ),
            name="baton-worker",
        )
        log.info("worker %s takes steps labelled %s", o.name, ", ".join(o.labels))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not work.done():
            log.info("worker %s: stopping; running steps get %s s to finish", o.name, o.drain)
            work.cancel()  # procrastinate's graceful stop: it waits for the running jobs
        with contextlib.suppress(asyncio.CancelledError):
            await work

    async def job(self, context: JobContext, spec: dict[str, Any]) -> None:
        """One job: run the step, report its end (see the module for a cancelled one)."""
        where = f"run {spec.get('run_id')} step {spec.get('step_id')}"
        where += f" (attempt {spec.get('attempt')})"
        about = {"run_id": spec.get("run_id"), "playbook": spec.get("playbook")}  # JSON logs
        log.info("%s: started (job %s)", where, context.job.id, extra=about)
        run_id = str(spec.get("run_id"))
        self._holding[run_id] += 1
        try:
            await self._job(context, spec, where, about)
        finally:
            self._holding[run_id] -= 1
            if not self._holding[run_id]:  # the run's last step here: what it shared goes
                del self._holding[run_id]  # (a later step of it connects again)
                release_run(self.registry, run_id)

    async def _job(
        self, context: JobContext, spec: dict[str, Any], where: str, about: dict[str, Any]
    ) -> None:
        began = time.monotonic()
        mask = Masker()
        ctx: ActionContext | None = None
        live: LiveLog | None = None
        try:
            body = self._body(spec)
            mask = Masker(body.get("mask") or [])
            live = LiveLog(self.store, spec, mask)
            ctx = self._context(spec, body, live.add, mask)
            report = await self._run(spec, body, ctx)
        except asyncio.CancelledError:
            partial = (ctx.partial if ctx else None) or {}
            if context.abort_reason() == AbortReason.SHUTDOWN:
                error = f"worker {self.options.name} stopped before the step ended"
                report = {"outcome": LOST, "error": error, "output": partial}
            else:  # its run took it back: what it printed goes with the attempt
                log.info("%s: cancelled by its run", where, extra=about)
                report = {"outcome": "cancelled", "error": "cancelled", "output": partial}
            await self._report(spec, report, await _rest(live), mask, ctx)
            raise
        except BatonError as exc:  # the job cannot run here (sealed without the key...)
            report = {"outcome": FAILED, "error": str(exc)}
        took = time.monotonic() - began
        log.info("%s: %s in %.1f s", where, report["outcome"], took, extra=about)
        await self._report(spec, report, await _rest(live), mask, ctx)

    def _body(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """What the step needs, unsealed when its inputs hold secrets."""
        sealed = spec.get("sealed")
        if sealed is None:
            return dict(spec.get("body") or {})
        if self.secret_box is None:
            raise BatonError(
                f"step {spec.get('step_id')}'s inputs hold secrets, sealed with Baton's key, "
                f"and worker {self.options.name} has no key: give it the servers' "
                "BATON_SECRET_KEY (or their key file as BATON_KEY_FILE)"
            )
        body = self.secret_box.unseal(str(sealed))
        if not isinstance(body, dict):
            raise BatonError("the step's sealed inputs are not what a worker reads")
        return body

    def _context(
        self, spec: Mapping[str, Any], body: Mapping[str, Any], keep: Logger, mask: Masker
    ) -> ActionContext:
        return ActionContext(
            run_id=str(spec["run_id"]),
            step_id=str(spec["step_id"]),
            attempt=int(spec["attempt"]),
            params=dict(body.get("params") or {}),
            secrets=dict(body.get("secrets") or {}),
            requested_by=str(body.get("requested_by") or ""),
            now=lambda: datetime.now(UTC),
            http=self.http,
            log=keep,
            mask=mask.mask_text,
            env=self.env,
            hosts=self.hosts,
        )

    async def _run(
        self, spec: Mapping[str, Any], body: Mapping[str, Any], ctx: ActionContext
    ) -> dict[str, Any]:
        """The action, within the step's timeout (the driver's own timer takes the job
        back first; this one stops a step whose driver is gone)."""
        name = str(spec["action"])
        timeout = spec.get("timeout")
        limit = asyncio.timeout(float(timeout) if timeout else None)
        try:
            action = self.registry.get(name)
            try:
                inputs = action.Inputs.model_validate(body.get("with") or {})
            except pydantic.ValidationError as exc:
                raise ActionError(f"bad inputs for action {name}: {exc}") from None
            async with limit:
                out = await action.run(ctx, inputs)
        except TimeoutError:
            if not limit.expired():
                raise
            return {
                "outcome": "timed_out",
                "error": f"timed out after {timeout} s on worker {self.options.name}",
                "output": ctx.partial or {},
            }
        except ActionError as exc:
            return {"outcome": FAILED, "error": str(exc), "output": exc.output}
        except BatonError as exc:
            return {"outcome": FAILED, "error": str(exc)}
        except Exception as exc:
            log.exception("step %s of run %s raised", spec.get("step_id"), spec.get("run_id"))
            return {"outcome": FAILED, "error": f"{type(exc).__name__}: {exc}"}
        if isinstance(out, Suspend):
            return {
                "outcome": FAILED,
                "error": f"action {name} waits on the engine (a timer, a gate, a child run) "
                "and cannot run on a worker: remove runs_on from this step",
            }
        return {"outcome": SUCCEEDED, "output": dict(out or {})}

    async def _report(
        self,
        spec: Mapping[str, Any],
        report: dict[str, Any],
        logs: list[list[str]],  # the lines not written while the step ran
        mask: Masker,
        ctx: ActionContext | None,
    ) -> None:
        """Write the step's end into its run's inbox, masked and storable; a database
        that is down is tried again a few times."""
        payload = {
            **{k: spec.get(k) for k in ("step_id", "attempt", "epoch")},
            "worker": self.options.name,
            **report,
            "attachments": dict(ctx.attachments) if ctx else {},
            "logs": logs,
        }
        payload = storable.clean(mask.mask(payload))
        run_id = str(spec["run_id"])
        send = inbox.send(  # only while the run is in progress: an ended run needs none
            run_id,
            inbox.RESULT,
            payload,
            self.options.name,
            datetime.now(UTC),
            what="report",
            postgres=True,
        )
        delay = 0.5
        for attempt in range(1, REPORT_TRIES + 1):
            try:
                await self.store.write(send)
                return
            except (InvalidTransition, RunNotFound) as exc:
                log.info("run %s step %s: report dropped: %s", run_id, spec.get("step_id"), exc)
                return
            except Exception as exc:
                if not transient(exc) or attempt == REPORT_TRIES:
                    log.error(
                        "run %s step %s: cannot report its end (%s); the run's driver will "
                        "find the job ended without a report",
                        spec.get("run_id"),
                        spec.get("step_id"),
                        exc,
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2

    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            import aiohttp  # only steps that make HTTP calls need it

            self._http = aiohttp.ClientSession()
        return self._http


async def _rest(live: LiveLog | None) -> list[list[str]]:
    """The step's log lines still to write, which go with its report."""
    return [] if live is None else await live.remainder()
