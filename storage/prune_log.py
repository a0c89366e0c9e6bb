"""The audit rows of prunes: the daily prune's claim of its day across replicas
(``claim_day``), and what a prune deleted (``record``, for ``baton db prune`` and the
daily prune alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import locks
from storage import tables as t
from storage.prune import Report

DAILY = "db.prune"  # the audit action of every prune, the day's marker among them


def claim_day(
    engine: sa.Engine,
    day: datetime,
    *,
    node: str,
    at: datetime,
    alive_since: datetime | None = None,
) -> int | None:
    """Claim the daily prune of ``day`` (midnight UTC) for this node: the audit row that
    says so, or None when another node (or this one, earlier) has it. Under
    PostgreSQL's advisory lock (SQLite: its write lock), so two replicas never both win.
    ``alive_since``: a claim still ``started`` whose node has not beaten since then (it
    died mid-prune) is marked ``abandoned`` and the day claimed again."""
    a = t.audit.c
    target = f"retention {day.date().isoformat()}"
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            locks.hold(conn, "prune")
        claims = conn.execute(
            sa.select(a.id, a.outcome, a.source).where(
                a.at >= day, a.action == DAILY, a.target == target
            )
        ).all()
        dead = [c.id for c in claims if _abandoned(conn, c, alive_since)]
        if len(dead) < len(claims):
            return None
        if dead:
            conn.execute(
                t.audit.update()
                .where(a.id.in_(dead))
                .values(outcome="abandoned", detail={"taken_over_by": node})
            )
        # a node that claims is alive now, whatever its last heartbeat says
        conn.execute(t.nodes.update().where(t.nodes.c.id == node).values(heartbeat_at=at))
        row = conn.execute(
            t.audit.insert()
            .values(
                at=at,
                actor="baton",
                action=DAILY,
                target=target,
                source={"node": node},
                detail={},
                outcome="started",
            )
            .returning(a.id)
        ).scalar_one()
        return int(row)


def _abandoned(conn: sa.Connection, claim: t.AnyRow, alive_since: datetime | None) -> bool:
    """True for a claim left ``started`` by a node that stopped beating (or that is gone
    from the node table) before ``alive_since``."""
    if alive_since is None or claim.outcome != "started":
        return False
    owner = (claim.source or {}).get("node")
    beat = conn.execute(
        sa.select(t.nodes.c.heartbeat_at).where(t.nodes.c.id == str(owner))
    ).scalar()
    return beat is None or beat < alive_since


def record(
    engine: sa.Engine,
    report: Report,
    *,
    actor: str,
    target: str,
    at: datetime,
    row: int | None = None,
    source: dict[str, Any] | None = None,
) -> None:
    """Write what a prune deleted to the audit (into its marker ``row`` if it has one)."""
    detail = {"deleted": {k: v for k, v in report.counts.items() if v}, "spared": report.spared}
    outcome = "failed" if report.error else "stopped" if report.stopped else "ok"
    if report.error:
        detail["error"] = report.error
    with engine.begin() as conn:
        if row is not None:
            conn.execute(
                t.audit.update().where(t.audit.c.id == row).values(detail=detail, outcome=outcome)
            )
            return
        conn.execute(
            t.audit.insert().values(
                at=at,
                actor=actor,
                action=DAILY,
                target=target,
                source=source or {},
                detail=detail,
                outcome=outcome,
            )
        )
