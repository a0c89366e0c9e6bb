"""The command inbox: how anything outside a run's driver changes the run.

A cancel, a closed approval gate or a child run that ended becomes a row of
``run_commands`` for the run. The node that owns the run applies its commands in order
(in the same commit as what they change) and writes each one's answer; the caller
waits for that answer. So cancel, retry and decisions work from any process, and a
caller is never told "accepted" about something that is then lost:

- the owner is this process: the command is handed to the driver in memory at once;
- the owner is another live node: it is woken (PostgreSQL ``NOTIFY``; on SQLite it polls
  the inbox every 250 ms while it owns runs) and the caller polls the row for the answer;
- the run has no live owner: the answer says so, and the command waits in the inbox for
  the ``baton serve`` node that adopts the run;
- the run ends before the command is applied: the command is refused with the run's
  final status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.errors import InvalidTransition, RunNotFound
from engine.runs import leases
from storage import tables as t

CHANNEL = "baton_inbox"
"""PostgreSQL NOTIFY channel: the payload is the run id (or ``ADMIT``)."""
ADMIT = "admit"
"""NOTIFY payload: a run was queued for any ``serve`` node to start."""

PENDING, APPLIED, REFUSED = "pending", "applied", "refused"
CANCEL, GATE, CHILD = "cancel", "gate", "child"
RESULT = "result"
"""A worker's report of a step it ran (``engine.runs.remote``), fenced by epoch and attempt."""


@dataclass(frozen=True)
class Command:
    """A command as its owner reads it from the inbox."""

    id: int
    run_id: str
    attempt: int
    kind: str
    payload: dict[str, Any]
    by: str


@dataclass(frozen=True)
class Answer:
    """What became of a command: ``state`` applied or refused, or pending when no node
    drives the run now (``message`` then says who will apply it)."""

    state: str
    message: str

    @property
    def applied(self) -> bool:
        return self.state == APPLIED


def send(
    run_id: str,
    kind: str,
    payload: dict[str, Any],
    by: str,
    at: datetime,
    *,
    what: str,
    postgres: bool,
) -> Any:
    """The op that puts a command in ``run_id``'s inbox, only while the run is in
    progress (else ``InvalidTransition`` saying so); returns ``(command id, run row)``.
    On PostgreSQL the run's row is locked first, so the insert cannot slip past the
    driver's final commit, and the owner is notified when this commits."""

    def op(conn: sa.Connection) -> tuple[int, Any]:
        query = sa.select(
            t.runs.c.status, t.runs.c.attempt, t.runs.c.owner, t.runs.c.lease_expires_at
        ).where(t.runs.c.id == run_id)
        if postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise RunNotFound(run_id)
        if row.status not in leases.ACTIVE:
            raise InvalidTransition(f"run {run_id} is {row.status}; nothing to {what}")
        return _insert(conn, run_id, row.attempt, kind, payload, by, at, postgres), row

    return op


def notify(payload: str) -> sa.Executable:
    """The op that wakes the nodes listening on PostgreSQL (sent at commit)."""
    return sa.select(sa.func.pg_notify(CHANNEL, payload))


def put(
    run_id: str,
    kind: str,
    payload: dict[str, Any],
    by: str,
    at: datetime,
    *,
    postgres: bool,
    box: list[int] | None = None,
) -> Any:
    """The op that puts a command in ``run_id``'s inbox whatever the run's status (a
    gate that closed, a child that ended: facts, not requests); the new id goes into
    ``box`` when given."""

    def op(conn: sa.Connection) -> int:
        command_id = _insert(conn, run_id, 0, kind, payload, by, at, postgres)
        if box is not None:
            box.append(command_id)
        return command_id

    return op


def _insert(
    conn: sa.Connection,
    run_id: str,
    attempt: int,
    kind: str,
    payload: dict[str, Any],
    by: str,
    at: datetime,
    postgres: bool,
) -> int:
    """Insert a pending command (and wake the owner on PostgreSQL, at commit)."""
    result = conn.execute(
        t.run_commands.insert().values(
            run_id=run_id,
            attempt=attempt,
            kind=kind,
            payload=payload,
            by=by,
            created_at=at,
            state=PENDING,
        )
    )
    if postgres:
        conn.execute(notify(run_id))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def answer(command_id: int, state: str, message: str, at: datetime) -> sa.Executable:
    """Write a command's answer, once (a later answer of the same command changes
    nothing)."""
    return (
        t.run_commands.update()
        .where(t.run_commands.c.id == command_id, t.run_commands.c.state == PENDING)
        .values(state=state, answer=message[:2000], answered_at=at)
    )


def refuse_rest(run_id: str, status: str, at: datetime) -> sa.Executable:
    """At a run's end: every command it did not apply is refused with its final status."""
    return (
        t.run_commands.update()
        .where(t.run_commands.c.run_id == run_id, t.run_commands.c.state == PENDING)
        .values(
            state=REFUSED,
            answer=f"run {run_id} ended {status} before this was applied",
            answered_at=at,
        )
    )


def pending_for(owner: str) -> sa.Select[Any]:
    """Commands waiting in the inboxes of the runs ``owner`` drives, oldest first: the
    pending commands (an index) checked against their run's owner (its primary key), so
    the poll never reads the runs table as a whole."""
    return (
        sa.select(t.run_commands)
        .join(t.runs, t.runs.c.id == t.run_commands.c.run_id)
        .where(t.run_commands.c.state == PENDING, t.runs.c.owner == owner)
        .order_by(t.run_commands.c.id)
    )


def command_of(row: Any) -> Command:
    return Command(
        id=row.id,
        run_id=row.run_id,
        attempt=row.attempt,
        kind=row.kind,
        payload=dict(row.payload or {}),
        by=row.by,
    )


def state_of(command_id: int, run_id: str) -> sa.Select[Any]:
    """A command's answer and its run's standing, for a caller waiting on it."""
    return (
        sa.select(
            t.run_commands.c.state,
            t.run_commands.c.answer,
            t.runs.c.status,
            t.runs.c.owner,
            t.runs.c.lease_expires_at,
        )
        .select_from(t.run_commands.join(t.runs, t.runs.c.id == t.run_commands.c.run_id))
        .where(t.run_commands.c.id == command_id, t.runs.c.id == run_id)
    )
