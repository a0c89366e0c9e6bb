"""Approval gates in the database: recording a decision and closing the gate, at once.

A decision is one row per (gate, user), so a second click, a retried request or a
second process changes nothing; the gate closes with a guarded update, so two decisions
racing cannot close it twice.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from storage import tables as t


@dataclass
class Outcome:
    """What recording a decision did: ``earlier`` is set when this user had already
    decided; ``closed`` ("approved"/"rejected") when this decision closed the gate."""

    earlier: str | None = None
    closed: str | None = None
    late: str | None = None
    """The gate's status when it had closed before this decision (nothing recorded)."""
    approved_by: list[str] = field(default_factory=list)


def record(
    approval_id: str,
    user: str,
    decision: str,
    comment: str,
    at: datetime,
    quorum: int,
    outcome: Outcome,
    same_person: Callable[[str, str], bool] = operator.eq,
) -> Callable[[sa.Connection], None]:
    """The op that records ``user``'s decision and closes the gate when it decides it.
    One decision per person: ``same_person`` says when two ids (a name, a Slack id) are
    one person, who neither decides twice nor counts twice towards the quorum."""

    def op(conn: sa.Connection) -> None:
        # the gate's row first, locked on PostgreSQL: two decisions racing take turns,
        # and one arriving after the gate closed records nothing (SQLite's writes are
        # serialised already)
        gate = sa.select(t.approvals.c.status).where(t.approvals.c.id == approval_id)
        if conn.dialect.name == "postgresql":
            gate = gate.with_for_update()
        status = conn.execute(gate).scalar()
        if status != "pending":
            outcome.late = status or "gone"
            return
        earlier = conn.execute(
            sa.select(t.decisions.c.user, t.decisions.c.decision).where(
                t.decisions.c.approval_id == approval_id
            )
        ).all()
        seen = next((d for d in earlier if same_person(d.user, user)), None)
        conn.execute(  # the audit row says whether this click changed anything
            t.audit.insert().values(
                at=at,
                actor=user,
                action=decision,
                target=approval_id,
                source={},
                detail={"comment": comment},
                outcome="ok" if seen is None else "duplicate",
            )
        )
        if seen is not None:
            outcome.earlier = seen.decision
            return
        conn.execute(
            t.decisions.insert().values(
                approval_id=approval_id, user=user, decision=decision, comment=comment, at=at
            )
        )
        approvers = [
            r.user
            for r in conn.execute(
                sa.select(t.decisions.c.user)
                .where(
                    t.decisions.c.approval_id == approval_id, t.decisions.c.decision == "approve"
                )
                .order_by(t.decisions.c.id)
            )
        ]
        people: list[str] = []
        for who in approvers:
            if not any(same_person(who, one) for one in people):
                people.append(who)
        closing = "rejected" if decision == "reject" else None
        if closing is None and len(people) >= quorum:
            closing = "approved"
        if closing is None:
            return
        done = conn.execute(
            t.approvals.update()
            .where(t.approvals.c.id == approval_id, t.approvals.c.status == "pending")
            .values(status=closing, closed_at=at, outcome_reason=comment)
        )
        if done.rowcount:
            outcome.closed = closing
            outcome.approved_by = approvers

    return op
