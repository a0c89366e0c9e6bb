"""Read side of the dashboard: what the run page draws (the step graph a run began with,
every attempt as a bar), the audit trail a page at a time, and the gates a person may
decide on. Like ``engine.views.queries``: plain data, read along indexes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.views import paging, queries
from storage import definitions
from storage import tables as t
from storage.store import Store

PHASES = ("steps", "on_failure", "finally")
PHASE_NAMES = {"steps": "main", "on_failure": "on_failure", "finally": "finally"}


@dataclass(frozen=True)
class Node:
    """One step of a run's graph: its phase, what it needs, its action. A ``for_each``
    step (planned) stays one node; its item counts go in ``counts``."""

    id: str
    phase: str
    needs: tuple[str, ...]
    action: str
    title: str
    counts: dict[str, int] | None = None


@dataclass(frozen=True)
class Bar:
    """One attempt of a step, for the timeline."""

    step_id: str
    number: int
    run_attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None


def nodes_of(definition: dict[str, Any]) -> list[Node]:
    """The graph of a stored definition (``Playbook.snapshot``), phase by phase."""
    out = []
    for key in PHASES:
        for step in definition.get(key) or []:
            needs = step.get("needs") or []
            out.append(
                Node(
                    id=str(step["id"]),
                    phase=PHASE_NAMES[key],
                    needs=tuple([needs] if isinstance(needs, str) else needs),
                    action=str(step.get("action", "")),
                    title=str(step.get("name") or step["id"]),
                )
            )
    return out


async def run_detail(store: Store, run_id: str) -> tuple[dict[str, Any], list[Node], list[Bar]]:
    """A run as JSON (``queries.get_run``: RunNotFound for an unknown id; each approval
    gate with its ``decisions``: who, approve or reject, their comment, when), its graph
    and its attempts, oldest first."""
    run = await queries.get_run(store, run_id)

    def read(conn: sa.Connection) -> tuple[Any, list[Any], list[Any]]:
        digest = conn.execute(
            sa.select(t.runs.c.definition_digest).where(t.runs.c.id == run_id)
        ).scalar()
        definition = definitions.one(conn, digest) if digest is not None else {}
        a = t.attempts.c
        rows = conn.execute(
            sa.select(a.step_id, a.number, a.run_attempt, a.status, a.started_at, a.finished_at)
            .where(a.run_id == run_id)
            .order_by(a.started_at, a.id)
        ).all()
        d = t.decisions.c
        decided = conn.execute(
            sa.select(d.approval_id, d.user, d.decision, d.comment, d.at)
            .join(t.approvals, t.approvals.c.id == d.approval_id)
            .where(t.approvals.c.run_id == run_id)
            .order_by(d.at, d.id)
        ).all()
        return definition, list(rows), list(decided)

    definition, rows, decided = await store.read(read)
    for gate in run.get("approvals") or []:  # who decided, when, and what they said
        gate["decisions"] = [
            {"user": r.user, "decision": r.decision, "comment": r.comment, "at": r.at.isoformat()}
            for r in decided
            if r.approval_id == gate["id"]
        ]
    bars = [
        Bar(r.step_id, r.number, r.run_attempt, r.status, r.started_at, r.finished_at) for r in rows
    ]
    items = {step["id"]: step["items"] for step in run["steps"] if step.get("items")}
    nodes = [
        replace(node, counts=_counts(items[node.id])) if node.id in items else node
        for node in nodes_of(definition or {})
    ]
    return run, nodes, bars


def _counts(items: dict[str, Any]) -> dict[str, int]:
    """A fan-out's items as its node shows them: how many done, failed, running, of all
    (a count of none left out)."""
    shown = {k: int(items.get(k) or 0) for k in ("done", "failed", "running")}
    return {**{k: n for k, n in shown.items() if n}, "total": int(items.get("total") or 0)}


AUDIT_FILTERS = ("actor", "action", "target")


async def audit_page(
    store: Store,
    *,
    limit: int = 50,
    cursor: str | None = None,
    filters: dict[str, str | None] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> paging.Page[dict[str, Any]]:
    """The audit trail newest first, a page at a time along its primary key, narrowed by
    who (``actor``), ``action`` (a prefix: ``command:`` for every chat command), ``target``
    (a run id with what was done under other names, see ``_about``; a playbook, an
    approval) and time."""
    c = t.audit.c
    q = sa.select(t.audit).order_by(c.id.desc()).limit(limit + 1)
    for name, value in (filters or {}).items():
        if not value:
            continue
        if name == "action":
            q = q.where(c.action.startswith(value, autoescape=True))
        elif name == "target":
            q = q.where(_about(value))
        elif name in AUDIT_FILTERS:
            q = q.where(c[name] == value)
    if since is not None:
        q = q.where(c.at >= since)
    if until is not None:
        q = q.where(c.at < until)
    if cursor:
        (before,) = paging.decode("audit", cursor, 1)
        q = q.where(c.id < paging.number(before))
    rows = await store.all(q)
    items = [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "detail": r.detail or {},
            "source": r.source or {},
            "outcome": r.outcome,
        }
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return paging.Page(items, paging.encode("audit", str(items[-1]["id"])) if more else None)


def _about(target: str) -> sa.ColumnElement[bool]:
    """The rows about ``target``: those naming it, and for a run, those naming it another
    way: its start (the ``run`` row's target is the playbook, its ``detail.run_id`` the
    run) and what was done to its approval gates (their target is the gate's id: the
    request, decisions, reminders, escalations, the timeout)."""
    c = t.audit.c
    gates = sa.select(t.approvals.c.id).where(t.approvals.c.run_id == target)
    return sa.or_(
        c.target == target,
        c.target.in_(gates),
        c.detail["run_id"].as_string() == target,
    )


async def pending_gates(store: Store) -> list[dict[str, Any]]:
    """Every gate waiting for decisions, oldest first, with its run's playbook and how
    many approvals it has so far."""

    def read(conn: sa.Connection) -> list[dict[str, Any]]:
        a = t.approvals.c
        rows = conn.execute(
            sa.select(t.approvals, t.runs.c.playbook)
            .join(t.runs, t.runs.c.id == a.run_id)
            .where(a.status == "pending")
            .order_by(a.created_at, a.id)
        ).all()
        counted = queries.approvals_counted(conn, [r.id for r in rows])
        return [
            {
                "id": r.id,
                "run_id": r.run_id,
                "playbook": r.playbook,
                "step": r.step_id,
                "message": (r.spec or {}).get("message") or "approval needed",
                "approvers": queries.describe_approvers(r.spec or {}, r.requested_by),
                "min_approvals": (r.spec or {}).get("min_approvals", 1),
                "approvals": counted.get(r.id, 0),
                "requested_by": r.requested_by,
                "created_at": r.created_at.isoformat() if r.created_at else None,
                "deadline_at": r.deadline_at.isoformat() if r.deadline_at else None,
            }
            for r in rows
        ]

    return await store.read(read)
