"""``run``, ``status`` (of a run, or the asker's), ``cancel``, ``retry`` and ``logs``."""

from __future__ import annotations

import io
import shlex
from typing import Any

from bot.chat import approvals
from bot.chat.replies import RUN_HEADER, Reply, first_line, params_text, run_rows, took, when
from bot.grammar import Cancel, Logs, Retry, Run
from bot.progress import Progress
from bot.tables import table
from engine.access.rules import Actor
from engine.errors import InvalidTransition
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets
from engine.playbooks.foreach import Tally
from engine.runs.engine import Engine
from engine.runs.requests import RunRequest
from engine.runs.state import RUNS_IN_PROGRESS
from engine.views import queries, runlogs
from storage.store import Store

STATUS_LIMIT = 10
ACTIVE = RUNS_IN_PROGRESS


async def run(engine: Engine, actor: Actor, command: Run, where: dict[str, Any]) -> Reply:
    request = RunRequest(
        playbook=command.playbook,
        params=command.params,
        requested_by=actor.id,
        trigger=actor.via,
        source=dict(where),
    )
    if command.dry_run:
        buf = io.StringIO()
        Progress(buf).plan(engine.plan(request))
        return Reply(buf.getvalue().splitlines(), data={"playbook": command.playbook})
    playbook = engine.catalog.get(command.playbook)
    missing = paramlib.missing(playbook, command.params)
    if missing:
        described = dict(zip(playbook.params, paramlib.describe(playbook), strict=True))
        lines = [f"`{playbook.name}` needs {', '.join(missing)}:"]
        lines += [f"  {described[name]}" for name in missing]
        shown = paramsecrets.typed_masked(playbook, command.params)
        example = " ".join(shlex.quote(f"{k}={v}") for k, v in shown.items())
        wanted = " ".join(f"{name}={_example(playbook.params[name])}" for name in missing)
        lines.append(f"say `run {playbook.name} {example} {wanted}`".replace("  ", " "))
        # a secret (or what may be one) typed in chat is not carried into a form or a
        # button: asked again
        plain = set(playbook.params) - paramsecrets.secret_names(playbook)
        given = {k: v for k, v in command.params.items() if k in plain}
        form = {"playbook": playbook.name, "given": given}
        return Reply(lines, ok=False, data={"form": form, "playbook": playbook.name})
    run_id = await engine.start_run(request)
    return Reply(
        [f"started {command.playbook} as run {run_id}"],
        run_id=run_id,
        follow=True,
        data={"playbook": command.playbook, "started": run_id},
    )


async def cancel(engine: Engine, actor: Actor, command: Cancel) -> Reply:
    answer = await engine.cancel(command.run_id, actor.id)
    if answer.state == "refused":
        raise InvalidTransition(answer.message)
    return Reply([answer.message], run_id=command.run_id, follow=True)


async def retry(engine: Engine, actor: Actor, command: Retry) -> Reply:
    await engine.retry(command.run_id, actor.id, from_failed=command.from_failed)
    steps = " from its failed steps" if command.from_failed else ""
    said = [f"retrying run {command.run_id}{steps}"]
    return Reply(said, run_id=command.run_id, follow=True)


async def logs(store: Store, command: Logs) -> Reply:
    text = await runlogs.text(store, command.run_id, command.step_id)
    lines = text.rstrip("\n").split("\n")
    return Reply(lines, run_id=command.run_id, data={"logs": text})


async def status(store: Store, run_id: str) -> Reply:
    run = await queries.get_run(store, run_id)
    lines = [
        f"run {run['id']}: {run['playbook']} {run['status']}"
        f" (by {run['requested_by']} via {run['trigger']}, {when(run['created_at'])})",
    ]
    shown = params_text(run["params"])
    if shown:
        lines.append(f"params: {shown}")
    if run["error"]:
        lines.append(f"error: {run['error']}")
    for step in run["steps"]:
        tries = f", {step['attempts']} attempts" if step["attempts"] > 1 else ""
        spent = took(step["started_at"], step["finished_at"])
        spent = f", {spent}" if spent else ""
        phase = f" [{step['phase']}]" if step.get("phase", "main") != "main" else ""
        lines.append(f"  {step['id']}{phase}: {step['status']}{tries}{spent}")
        if step.get("items"):
            lines.append(f"    items: {Tally.from_json(step['items']).summary()}")
        waiting_for = queries.waiting_for(step)
        if waiting_for:
            lines.append(f"    waiting for {waiting_for}")
        if step["error"]:
            lines.append(f"    {first_line(step['error'])}")
    pending, said = await approvals.pending(store, run_id)
    lines += said
    return Reply(lines, run_id=run_id, data={"run": run, "approvals": pending})


async def my_runs(store: Store, actor: Actor) -> Reply:
    mine = actor.id
    active = [  # by status first: a person's whole history is never read
        run
        for status in ACTIVE
        for run in await queries.list_runs(store, limit=200, requested_by=mine, status=status)
    ]
    active.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    room = max(0, STATUS_LIMIT - len(active))
    latest = await queries.list_runs(store, limit=room + len(active), requested_by=mine)
    recent = [r for r in latest if r["status"] not in ACTIVE][:room]
    if not active and not recent:
        return Reply([f"{actor.shown} has no runs yet; `history` shows everyone's"])
    title = f"active runs of {actor.shown}" if active else f"no active runs of {actor.shown}"
    title += (", then recent:" if active else "; recent:") if recent else ":"
    rows = run_rows(active) + run_rows(recent)  # one table: the columns line up
    lines = [title, *table(RUN_HEADER, rows)]
    return Reply(lines, data={"runs": active + recent}, table_at=1)


def _example(spec: paramlib.Param) -> str:
    return paramlib.example(spec) if spec.type is paramlib.ParamType.LIST else "..."
