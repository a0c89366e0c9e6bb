"""Executing a step: one attempt of its action, here or on a worker, ends as a message
to its run's driver, ``Finished`` or ``Suspended``. A ``for_each`` step fans its items
out (``engine.runs.fanout``), each through the same attempt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import pydantic

from engine.actions import ActionContext, Suspend, refuse_splices
from engine.actions.registry import Registry
from engine.errors import ActionError, BatonError
from engine.fleet import inventory
from engine.playbooks import templating
from engine.runs import fanout, items, remote
from engine.runs import messages as msg
from engine.runs.node import Node
from engine.runs.state import RunState, StepState
from engine.runs.steptimers import StepTimers
from engine.timing import Clock, Timers
from storage.store import Store

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        clock: Clock,
        timers: Timers,
        step_timers: StepTimers,
        registry: Registry,
        remote: remote.Remote,
        secrets: dict[str, str],
        step_env: dict[str, str],
        http: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.node = node
        self.store = store
        self.clock = clock
        self.timers = timers
        self.step_timers = step_timers
        self.registry = registry
        self.remote = remote
        self.secrets = secrets
        self.step_env = step_env
        self.http = http

    def launch(self, run: RunState, step: StepState) -> None:
        self.node.busy_inc()
        fans = step.spec.for_each is not None
        work = self._fan_out(run, step) if fans else self._execute(run, step, step.attempts)
        task = asyncio.create_task(work, name=f"step-{run.id}-{step.id}")
        task.add_done_callback(partial(self._never_ran, run, step, step.attempts))
        step.task = task
        if fans:  # its timeout applies to each item
            return
        if step.spec.timeout is not None:
            at = self.clock.now() + step.spec.timeout
            self.step_timers.set(run, step.id, "timeout", at)

    async def drain(self, drain: float) -> None:
        """At stop: let the running steps finish for ``drain`` seconds, then interrupt
        the rest (their attempts end ``interrupted``)."""
        runs = self.node.runs
        running = [s.task for r in runs.values() for s in r.steps.values() if s.task]
        if running:
            _, late = await asyncio.wait(running, timeout=drain)
            for task in late:
                task.cancel()
        for run in runs.values():
            for step in run.steps.values():
                if step.task is not None and not step.task.done():
                    step.cancel_reason = "shutdown"

    def _never_ran(
        self, run: RunState, step: StepState, attempt: int, task: asyncio.Task[None]
    ) -> None:
        """A step's task cancelled before it ever ran (a cancel the driver applies in the
        turn right after the launch, a stop's drain): Python ends such a task without
        entering its coroutine, so nothing below told the driver. Its end is told here,
        as ``_act`` tells a cancelled attempt's; without it the step stayed running and
        its run never ended."""
        if not task.cancelled():
            return  # it ran: its end was posted by ``_execute`` or ``_fan_out``
        if step.task is task:
            step.task = None
        self.node.post(run, stopped(run, step, attempt, step.cancel_reason))
        self.node.busy_dec()

    async def _execute(self, run: RunState, step: StepState, attempt: int) -> None:
        result = await self._act(run, step, run.context(), attempt, lambda: step.cancel_reason)
        step.task = None
        self.node.post(run, result)
        self.node.busy_dec()

    async def _fan_out(self, run: RunState, step: StepState) -> None:
        """A ``for_each`` step: its items, each through ``_act`` (``engine.runs.fanout``)."""
        fan = fanout.FanOut(
            run,
            step,
            post=lambda m: self.node.post(run, m),
            act=partial(self._act, run, step),
            load=partial(items.stored, self.store, run.id, step.id, run.attempt, run.box),
            now=self.clock.now,
            timers=self.timers,
            busy=self.node.busy_add,
            stopping=lambda: self.node.stopping,
        )
        result = await fan.run()
        step.task = None
        self.node.post(run, result)
        self.node.busy_dec()

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
            mask=run.masker.mask_text,
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
        except asyncio.CancelledError:  # what the action printed until then is kept
            result = stopped(run, step, attempt, why(), dict(ctx.partial or {}), ctx.attachments)
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
        self.node.post(
            run, msg.Logged(step.id, run.masker.mask_text(text), level, self.clock.now())
        )


def stopped(
    run: RunState,
    step: StepState,
    attempt: int,
    why: str | None,
    output: dict[str, Any] | None = None,
    attachments: dict[str, str] | None = None,
) -> msg.Finished:
    """The end of an attempt whose task was cancelled, as ``why`` says: timeout,
    shutdown, else cancelled (a stop of the run)."""
    outcome, error = {
        "timeout": ("timed_out", f"timed out after {step.spec.timeout}"),
        "shutdown": ("interrupted", "interrupted by shutdown"),
    }.get(why or "cancelled", ("cancelled", f"cancelled by {run.stopped_by or 'request'}"))
    return msg.Finished(
        step.id, attempt, outcome, output=output or {}, error=error, attachments=attachments or {}
    )


def _input_errors(action: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "with"
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return f"bad inputs for action {action}: " + "; ".join(parts)
