"""A run's logs as text: every attempt's full output (stdout and stderr in full, from the
attempt's attachments when the output keeps only a tail), its error, and the run's
``log`` lines, step by step. Cancelled, timed-out and interrupted attempts keep what
they printed until then. Read by ``logs RUN [STEP]`` in chat and the console,
``baton logs`` and ``GET /api/runs/{id}/logs``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.errors import BatonError, RunNotFound, closest
from engine.runs.state import RunStatus
from storage import tables as t
from storage.store import Store


class StepNotFound(BatonError):
    def __init__(self, run_id: str, step_id: str, steps: list[str]) -> None:
        hint = closest(step_id, steps, n=1)
        did = f" Did you mean {hint[0]}?" if hint else ""
        super().__init__(
            f"run {run_id} has no step {step_id!r}.{did} Its steps: {', '.join(steps) or 'none'}"
        )


def _clock(at: datetime | None) -> str:
    return at.strftime("%H:%M:%S") if at is not None else "--:--:--"


def _block(name: str, text: str) -> list[str]:
    text = text.rstrip("\n")
    return [f"[{name}]", *text.split("\n")] if text else []


def _attempt(row: Any) -> list[str]:
    output = dict(row.output or {})
    whole = {**output, **(row.attachments or {})}
    took = f"{_clock(row.started_at)} -> {_clock(row.finished_at)}"
    lines = [f"== {row.step_id} . attempt {row.number} . {row.status} . {took} =="]
    for stream in ("stdout", "stderr"):
        value = whole.pop(stream, None)
        output.pop(stream, None)
        if isinstance(value, str):
            lines += _block(stream, value)
    rest = {k: v for k, v in output.items() if k != "rc"}
    if output.get("rc") is not None:
        lines.append(f"[exit status {output['rc']}]")
    if rest:
        lines += _block("output", json.dumps(rest, indent=2, ensure_ascii=False, default=str))
    if row.error:
        lines.append(f"error: {row.error}")
    return lines


@dataclass(frozen=True)
class Section:
    """A piece of a run's logs: one attempt (``done`` once it ended) or one log line."""

    key: str
    lines: list[str]
    done: bool = True


@dataclass(frozen=True)
class Logs:
    run_id: str
    status: str
    sections: list[Section]

    @property
    def text(self) -> str:
        return "\n".join(line for s in self.sections for line in s.lines) + "\n"


def _line(row: Any) -> Section:
    return Section(f"log:{row.id}", [f"[log {_clock(row.at)} {row.level}] {row.message}"])


async def read(store: Store, run_id: str, step_id: str | None = None) -> Logs:
    """The logs of run ``run_id`` (of one step with ``step_id``), oldest first."""

    def query(conn: sa.Connection) -> tuple[Any, list[Any], list[Any], list[Any]]:
        run = conn.execute(
            sa.select(t.runs.c.id, t.runs.c.playbook, t.runs.c.status, t.runs.c.error).where(
                t.runs.c.id == run_id
            )
        ).first()
        steps = list(
            conn.execute(
                sa.select(t.steps.c.step_id)
                .where(t.steps.c.run_id == run_id)
                .order_by(t.steps.c.position)
            )
        )
        attempts = sa.select(t.attempts).where(t.attempts.c.run_id == run_id)
        logs = sa.select(t.run_logs).where(t.run_logs.c.run_id == run_id)
        if step_id is not None:
            attempts = attempts.where(t.attempts.c.step_id == step_id)
            logs = logs.where(t.run_logs.c.step_id == step_id)
        return (
            run,
            steps,
            list(conn.execute(attempts.order_by(t.attempts.c.started_at, t.attempts.c.id))),
            list(conn.execute(logs.order_by(t.run_logs.c.at, t.run_logs.c.id))),
        )

    run, steps, attempts, logs = await store.read(query)
    if run is None:
        raise RunNotFound(run_id)
    names = [s.step_id for s in steps]
    if step_id is not None and step_id not in names:
        raise StepNotFound(run_id, step_id, names)
    out = [Section("run", [f"run {run.id} ({run.playbook})"])]
    by_step: dict[str | None, list[Any]] = {}
    for line in logs:
        by_step.setdefault(line.step_id, []).append(line)
    out += [_line(line) for line in by_step.pop(None, [])]
    order = {name: i for i, name in enumerate(names)}
    ordered = sorted(attempts, key=lambda a: (a.run_attempt, order.get(a.step_id, 0), a.number))
    last = {a.step_id: i for i, a in enumerate(ordered)}
    for i, attempt in enumerate(ordered):
        done = attempt.finished_at is not None
        out.append(Section(f"attempt:{attempt.id}", _attempt(attempt), done))
        if last[attempt.step_id] == i:  # a step's log lines after its last attempt
            out += [_line(line) for line in by_step.pop(attempt.step_id, [])]
    for rest in by_step.values():  # lines of a step with no attempt stored
        out += [_line(line) for line in rest]
    end = [f"run {run.id} {run.status}"] + ([f"error: {run.error}"] if run.error else [])
    out.append(Section("end", end, RunStatus(run.status).terminal))
    return Logs(run.id, run.status, out)


async def text(store: Store, run_id: str, step_id: str | None = None) -> str:
    """The logs of run ``run_id`` (of one step with ``step_id``) as one text."""
    return (await read(store, run_id, step_id)).text
