"""Read side: runs as JSON (the public shape the README's "HTTP API" section documents),
for the API, CLI and chat."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.errors import ApprovalNotFound, RunNotFound
from engine.playbooks.foreach import Tally
from engine.runs.gates import Gate
from engine.runs.items import tallies_in
from engine.views import paging
from storage import tables as t
from storage.store import Store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _step_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.step_id,
        "phase": row.phase,
        "status": row.status,
        "attempts": row.attempts,
        "output": row.output,
        "error": row.error,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
    }


def waiting_for(step: dict[str, Any]) -> str | None:
    """What a running step sent to workers waits for (``a worker labelled dc1``), kept in
    its output while no worker took it (``engine.runs.remote``); None otherwise."""
    output = step.get("output")
    if step.get("status") != "running" or not isinstance(output, dict):
        return None
    found = output.get("waiting_for")
    return found if isinstance(found, str) else None


def _run_json(row: sa.Row[Any], steps: list[sa.Row[Any]]) -> dict[str, Any]:
    return {
        "id": row.id,
        "playbook": row.playbook,
        "status": row.status,
        "params": row.params,
        "trigger": row.trigger,
        "requested_by": row.requested_by,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        "attempt": row.attempt,
        "error": row.error,
        "failed_step": row.failed_step,
        "parent_run_id": row.parent_run_id,
        "steps": [_step_json(s) for s in sorted(steps, key=lambda s: s.position)],
    }


_RUN_COLUMNS = [
    t.runs.c.id, t.runs.c.playbook, t.runs.c.status, t.runs.c.params, t.runs.c.trigger,
    t.runs.c.requested_by, t.runs.c.created_at, t.runs.c.started_at, t.runs.c.finished_at,
    t.runs.c.attempt, t.runs.c.error, t.runs.c.failed_step, t.runs.c.parent_run_id,
]  # fmt: skip


async def get_run(store: Store, run_id: str) -> dict[str, Any]:
    def read(conn: sa.Connection) -> dict[str, Any]:
        row = conn.execute(sa.select(*_RUN_COLUMNS).where(t.runs.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(run_id)
        steps = conn.execute(sa.select(t.steps).where(t.steps.c.run_id == run_id)).all()
        run = _run_json(row, list(steps))
        _add_items(run, tallies_in(conn, run_id, row.attempt))
        run["approvals"] = _gates(conn, run_id)
        return run

    return await store.read(read)


def _add_items(run: dict[str, Any], tallies: dict[str, Tally]) -> None:
    """A ``for_each`` step's ``items``: total, done, failed, running and the first
    ``failed_items`` by name (its ``output.items`` lists them all once it ended)."""
    for step in run["steps"]:
        tally = tallies.get(step["id"])
        if tally is not None:
            step["items"] = {**tally.json(), "failed_items": list(tally.failed_names)}


def _gates(conn: sa.Connection, run_id: str) -> list[dict[str, Any]]:
    """A run's approval gates, oldest first: which step, its status, who may decide,
    the approvals it needs and has, its deadline."""
    gates = conn.execute(
        sa.select(t.approvals)
        .where(t.approvals.c.run_id == run_id)
        .order_by(t.approvals.c.created_at, t.approvals.c.id)
    ).all()
    if not gates:
        return []
    approved = approvals_counted(conn, [g.id for g in gates])
    return [
        {
            "id": g.id,
            "step": g.step_id,
            "status": g.status,
            "approvers": approver_names(g.spec or {}, g.requested_by),
            "allow_self_approval": bool((g.spec or {}).get("allow_self_approval", False)),
            "min_approvals": (g.spec or {}).get("min_approvals", 1),
            "approvals": approved.get(g.id, 0),
            "deadline_at": _iso(g.deadline_at),
        }
        for g in gates
    ]


RUN_FILTERS = ("playbook", "status", "trigger", "requested_by")
"""What a list of runs can be narrowed by: each has an index ending in (created_at, id)."""


Filter = str | None


def runs_query(
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    **filters: Filter,
) -> sa.Select[Any]:
    """The runs newest first, narrowed by ``filters`` (RUN_FILTERS) and created in
    [``since``, ``until``), after the row ``before`` (its created_at and id): one range of
    one index, whatever the history (every index ends in created_at, so the time range
    narrows that range). With two filters SQLite walks the index of one and checks the
    other (status when status is one: the runs in progress are few)."""
    c = t.runs.c
    q = sa.select(*_RUN_COLUMNS).order_by(c.created_at.desc(), c.id.desc()).limit(limit)
    if since is not None:
        q = q.where(c.created_at >= since)
    if until is not None:
        q = q.where(c.created_at < until)
    for name, value in filters.items():
        if name not in RUN_FILTERS:
            raise TypeError(f"runs cannot be filtered by {name!r}")
        if value:
            q = q.where(c[name] == value)
    if before is not None:
        at, run_id = before
        q = q.where(
            sa.tuple_(c.created_at, c.id)
            < sa.tuple_(
                sa.bindparam("before_at", at, type_=c.created_at.type),
                sa.bindparam("before_id", run_id, type_=c.id.type),
            )
        )
    return q


def _steps_of(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[dict[str, Any]]:
    by_run: dict[str, list[sa.Row[Any]]] = defaultdict(list)
    if rows:
        ids = [r.id for r in rows]
        for s in conn.execute(sa.select(t.steps).where(t.steps.c.run_id.in_(ids))):
            by_run[s.run_id].append(s)
    return [_run_json(r, by_run[r.id]) for r in rows]


def _run_cursor(run: dict[str, Any]) -> str:
    return paging.encode("runs", run["created_at"], run["id"])


async def runs_page(
    store: Store,
    *,
    limit: int = 50,
    cursor: str | None = None,
    filters: Mapping[str, Filter] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> paging.Page[dict[str, Any]]:
    """A page of runs narrowed by ``filters`` and the time range (as ``runs_query``),
    newest first (see ``engine.views.paging``); ``cursor`` from the page before. BadCursor for
    a cursor this list did not give out."""
    before = None
    if cursor:
        at, run_id = paging.decode("runs", cursor, 2)
        before = (paging.timestamp(at), run_id)
    q = runs_query(limit=limit + 1, before=before, since=since, until=until, **(filters or {}))

    def read(conn: sa.Connection) -> tuple[list[dict[str, Any]], bool]:
        rows = conn.execute(q).all()
        return _steps_of(conn, rows[:limit]), len(rows) > limit

    items, more = await store.read(read)
    return paging.Page(items, _run_cursor(items[-1]) if more else None)


async def list_runs(store: Store, *, limit: int = 50, **filters: Filter) -> list[dict[str, Any]]:
    """The newest ``limit`` runs narrowed by ``filters`` (RUN_FILTERS)."""
    return (await runs_page(store, limit=limit, filters=filters)).items


async def ping(store: Store) -> None:
    """Raise unless the database answers."""
    await store.scalar(sa.select(sa.literal(1)))


async def run_counts(store: Store, statuses: Sequence[str] | None = None) -> dict[str, int]:
    """Runs by status, of every status or of ``statuses`` (a search of the index)."""
    n = sa.func.count().label("n")
    query = sa.select(t.runs.c.status, n).group_by(t.runs.c.status)
    if statuses is not None:
        query = query.where(t.runs.c.status.in_(list(statuses)))
    rows = await store.all(query)
    return {str(r.status): int(r.n) for r in rows}


async def step_tails(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Failed steps of a run with their error and output, for the CLI's failure report."""
    rows = await store.all(
        sa.select(t.steps)
        .where(t.steps.c.run_id == run_id, t.steps.c.status.in_(["failed", "interrupted"]))
        .order_by(t.steps.c.position)
    )
    return [_step_json(r) for r in rows]


def approvals_counted(conn: sa.Connection, approval_ids: list[str]) -> dict[str, int]:
    """How many approve decisions each gate has so far (a gate with none is absent)."""
    if not approval_ids:
        return {}
    d = t.decisions.c
    counted = conn.execute(
        sa.select(d.approval_id, sa.func.count())
        .where(d.approval_id.in_(approval_ids), d.decision == "approve")
        .group_by(d.approval_id)
    )
    return {approval_id: n for approval_id, n in counted}


def approver_names(spec: dict[str, Any], requested_by: str) -> list[str]:
    """Who a gate (its stored spec) names to decide, as the API lists them."""
    return Gate.from_spec(spec).approver_names(requested_by)


def describe_approvers(spec: dict[str, Any], requested_by: str) -> str:
    """Who may decide on a gate (its stored spec), as people read it (the requester left
    out unless the gate allows self-approval)."""
    return Gate.from_spec(spec).describe_approvers(requested_by)


async def pending_approvals(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The gates of a run still waiting for decisions, oldest first."""
    rows = await store.all(
        sa.select(t.approvals)
        .where(t.approvals.c.run_id == run_id, t.approvals.c.status == "pending")
        .order_by(t.approvals.c.created_at)
    )
    return [
        {
            "id": r.id,
            "step_id": r.step_id,
            "message": (r.spec or {}).get("message") or "approval needed",
            "approvers": describe_approvers(r.spec or {}, r.requested_by),
            "deadline_at": _iso(r.deadline_at),
        }
        for r in rows
    ]


async def approval_run(store: Store, approval_id: str) -> str | None:
    """The run an approval gate belongs to."""
    row = await store.one(sa.select(t.approvals.c.run_id).where(t.approvals.c.id == approval_id))
    return row.run_id if row is not None else None


async def run_origin(store: Store, run_id: str) -> dict[str, Any]:
    """Where a run was asked for (the front end's ``source``: channel, thread, user) and
    its parent run, for the front ends that post about it."""
    c = t.runs.c
    row = await store.one(
        sa.select(c.source, c.parent_run_id, c.playbook, c.requested_by).where(c.id == run_id)
    )
    if row is None:
        raise RunNotFound(run_id)
    return {
        "source": dict(row.source or {}),
        "parent_run_id": row.parent_run_id,
        "playbook": row.playbook,
        "requested_by": row.requested_by,
    }


async def full_outputs(store: Store, run_id: str, step_id: str) -> dict[str, Any]:
    """The last attempt's full output of a step (the stored text, beyond the tails the
    events carry), for uploading long output as a file."""
    row = await store.one(
        sa.select(t.attempts.c.output, t.attempts.c.attachments)
        .where(t.attempts.c.run_id == run_id, t.attempts.c.step_id == step_id)
        .order_by(t.attempts.c.run_attempt.desc(), t.attempts.c.number.desc())
        .limit(1)
    )
    if row is None:
        return {}
    return {**(row.output or {}), **(row.attachments or {})}


async def approval_view(store: Store, approval_id: str) -> dict[str, Any]:
    """One approval gate as front ends show it: what it asks, of whom, until when, the
    decisions so far, and the run it belongs to."""

    def read(conn: sa.Connection) -> dict[str, Any]:
        gate = conn.execute(sa.select(t.approvals).where(t.approvals.c.id == approval_id)).first()
        if gate is None:
            raise ApprovalNotFound(approval_id)
        run = conn.execute(
            sa.select(t.runs.c.playbook, t.runs.c.params, t.runs.c.requested_by).where(
                t.runs.c.id == gate.run_id
            )
        ).one()
        decisions = conn.execute(
            sa.select(t.decisions)
            .where(t.decisions.c.approval_id == approval_id)
            .order_by(t.decisions.c.id)
        ).all()
        spec = dict(gate.spec or {})
        return {
            "id": gate.id,
            "run_id": gate.run_id,
            "step_id": gate.step_id,
            "status": gate.status,
            "spec": spec,
            "approvers": describe_approvers(spec, gate.requested_by),
            "requested_by": gate.requested_by,
            "created_at": _iso(gate.created_at),
            "deadline_at": _iso(gate.deadline_at),
            "closed_at": _iso(gate.closed_at),
            "reason": gate.outcome_reason,
            "playbook": run.playbook,
            "params": run.params,
            "decisions": [
                {"user": d.user, "decision": d.decision, "comment": d.comment, "at": _iso(d.at)}
                for d in decisions
            ],
        }

    return await store.read(read)


async def alert_links(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The alerts a run handles: how often each fired again, when it was resolved."""
    rows = await store.all(
        sa.select(t.alert_runs).where(t.alert_runs.c.run_id == run_id).order_by(t.alert_runs.c.id)
    )
    return [
        {
            "fingerprint": r.fingerprint,
            "name": r.name,
            "summary": r.summary,
            "repeats": r.repeats,
            "first_at": _iso(r.first_at),
            "last_at": _iso(r.last_at),
            "resolved_at": _iso(r.resolved_at),
            "after": max(0.0, (r.resolved_at - r.first_at).total_seconds())
            if r.resolved_at
            else None,
        }
        for r in rows
    ]


def alerts_query(
    *, limit: int, outcome: str | None = None, before: str | None = None
) -> sa.Select[Any]:
    """Alerts newest first (their ids sort by receipt), of one ``outcome`` or all, after
    the alert ``before``."""
    c = t.alerts.c
    q = sa.select(t.alerts).order_by(c.id.desc()).limit(limit)
    if outcome:
        q = q.where(c.outcome == outcome)
    if before is not None:
        q = q.where(c.id < before)
    return q


def _alert_json(r: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": r.id,
        "source": r.source,
        "fingerprint": r.fingerprint,
        "status": r.status,
        "name": r.name,
        "labels": r.labels,
        "severity": r.severity,
        "received_at": _iso(r.received_at),
        "outcome": r.outcome,
        "reason": r.reason,
        "run_id": r.run_id,
    }


async def alerts_page(
    store: Store, *, limit: int = 50, outcome: str | None = None, cursor: str | None = None
) -> paging.Page[dict[str, Any]]:
    """A page of alerts as received, newest first, with what became of each."""
    before = paging.decode("alerts", cursor, 1)[0] if cursor else None
    rows = await store.all(alerts_query(limit=limit + 1, outcome=outcome, before=before))
    items = [_alert_json(r) for r in rows[:limit]]
    more = len(rows) > limit
    return paging.Page(items, paging.encode("alerts", items[-1]["id"]) if more else None)


async def recent_alerts(
    store: Store, *, limit: int = 50, outcome: str | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` alerts, of one ``outcome`` or all."""
    return (await alerts_page(store, limit=limit, outcome=outcome)).items


async def open_gates(store: Store) -> list[tuple[str, str]]:
    """(run id, approval id) of every gate still waiting for decisions."""
    rows = await store.all(
        sa.select(t.approvals.c.run_id, t.approvals.c.id).where(t.approvals.c.status == "pending")
    )
    return [(r.run_id, r.id) for r in rows]


async def finished_with_card(store: Store, since: datetime) -> list[str]:
    """Runs that ended since ``since`` and have a chat card: after a crash, their card may
    not show the end yet."""
    rows = await store.all(
        sa.select(t.runs.c.id)
        .join(t.chat_posts, sa.and_(t.chat_posts.c.run_id == t.runs.c.id))
        .where(t.chat_posts.c.kind == "card", t.runs.c.finished_at >= since)
    )
    return [r.id for r in rows]
