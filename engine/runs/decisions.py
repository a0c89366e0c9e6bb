"""Human decisions on approval gates: who may decide, the decision recorded (idempotent
per gate and person), and a decision that closes its gate sent to the run's inbox in
the same commit. The rules are the ``Gate``'s (``engine.runs.gates``).

A decision is one row per (gate, user), so a second click, a retried request or a
second process changes nothing; the gate closes with a guarded update, so two decisions
racing cannot close it twice."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine import audit, storable
from engine import events as ev
from engine.bus import EventBus
from engine.errors import ApprovalNotFound, BatonError, NotAllowed
from engine.runs import gates, inbox
from engine.runs import messages as msg
from engine.runs.gates import Gate
from engine.runs.loading import RunRecords
from engine.runs.node import Node
from engine.runs.requests import DecisionResult
from engine.timing import Clock
from storage import tables as t
from storage.store import Store

ApproverCheck = Callable[[str, dict[str, Any]], Awaitable[bool]]
DECIDED = {"approve": "approved", "reject": "rejected"}


async def users_only(user: str, approvers: dict[str, Any]) -> bool:
    """Default approver check: listed users; anyone when the step lists nobody."""
    users = approvers.get("users") or []
    if not any(approvers.get(k) for k in ("users", "usergroups", "groups")):
        return True
    return user in users


class Decisions:
    def __init__(
        self,
        *,
        node: Node,
        store: Store,
        bus: EventBus,
        clock: Clock,
        records: RunRecords,
        answer: Callable[[str, msg.Command], Awaitable[inbox.Answer]],
        approver_check: ApproverCheck = users_only,
        same_person: Callable[[str, str], bool] = operator.eq,
    ) -> None:
        """``answer``: wait for a command's answer from the run's driver;
        ``same_person``: one person under two ids (a name, a Slack id)."""
        self.node = node
        self.store = store
        self.bus = bus
        self.clock = clock
        self.records = records
        self.answer = answer
        self.approver_check = approver_check
        self.same_person = same_person
        self.postgres = store.dialect == "postgresql"

    async def decide(
        self, approval_id: str, user: str, decision: str, comment: str = ""
    ) -> DecisionResult:
        """Record a human decision on an approval gate. Idempotent per (gate, user)."""
        if decision not in ("approve", "reject"):
            raise BatonError(f"decision must be approve or reject, not {decision!r}")
        row = await self.store.one(sa.select(t.approvals).where(t.approvals.c.id == approval_id))
        if row is None:
            raise ApprovalNotFound(approval_id)
        run = self.node.runs.get(row.run_id)
        comment = storable.clean_text(comment)
        masker = run.masker if run is not None else await self.records.masker_of(row.run_id)
        comment = masker.mask_text(comment)
        if row.status != "pending":
            return DecisionResult(
                approval_id, False, row.status, f"approval {approval_id} is already {row.status}"
            )
        problem = await self._problem(row, user)
        if problem is not None:
            refused = audit.op(self.clock.now(), user, decision, approval_id, {}, "refused")
            await self.store.write(refused)
            raise NotAllowed(problem)
        now = self.clock.now()
        outcome = Outcome()
        quorum = Gate.from_spec(row.spec).min_approvals
        sent: list[int] = []
        payload: dict[str, Any] = {}

        def tell_driver(conn: sa.Connection) -> None:
            """A decision that closes the gate goes to the run's inbox in its commit."""
            closed = outcome.closed
            if closed is None:
                return
            payload.update(
                step_id=row.step_id,
                approval_id=approval_id,
                outcome=closed,
                reason=f"{closed} by {user}" + (f": {comment}" if comment else ""),
                output={"approval_id": approval_id, "approved_by": outcome.approved_by},
            )
            put = inbox.put(
                row.run_id, inbox.GATE, payload, user, now, postgres=self.postgres, box=sent
            )
            put(conn)

        await self.store.write(
            record(approval_id, user, decision, comment, now, quorum, outcome, self.same_person),
            tell_driver,
        )
        if outcome.late is not None:
            return DecisionResult(
                approval_id,
                False,
                outcome.late,
                f"approval {approval_id} is already {outcome.late}",
            )
        if outcome.earlier is not None:
            return DecisionResult(
                approval_id,
                False,
                "pending",
                f"{user} already decided ({outcome.earlier}) on {approval_id}",
            )
        playbook = run.playbook.name if run else ""
        self.bus.publish(
            ev.ApprovalDecided(
                run_id=row.run_id,
                playbook=playbook,
                at=now,
                step_id=row.step_id,
                approval_id=approval_id,
                user=user,
                decision=decision,
                comment=comment,
            )
        )
        message = f"{user} {DECIDED[decision]} {approval_id}"
        if sent:
            command = msg.Command(sent[0], inbox.GATE, user, payload)
            answer = await self.answer(row.run_id, command)
            if answer.state == inbox.PENDING:
                message += f" ({answer.message})"
        return DecisionResult(approval_id, True, outcome.closed or "pending", message)

    async def may_decide(self, approval_id: str, user: str) -> str | None:
        """Why ``user`` may not decide on the gate (None: they may), without deciding:
        front ends ask before opening a form for a reason."""
        row = await self.store.one(sa.select(t.approvals).where(t.approvals.c.id == approval_id))
        if row is None:
            raise ApprovalNotFound(approval_id)
        if row.status != "pending":
            return f"approval {approval_id} is already {row.status}"
        return await self._problem(row, user)

    async def _problem(self, row: sa.Row[Any], user: str) -> str | None:
        gate = Gate.from_spec(row.spec)
        if gate.self_approval_refused(user, row.requested_by, self.same_person):
            return (
                f"{user} started run {row.run_id} and cannot approve it: another approver "
                f"must decide ({gate.describe_approvers(row.requested_by)})"
            )
        if not await self.approver_check(user, gate.approvers):
            return (
                f"{user} may not decide on {row.id}; approvers: "
                f"{gate.describe_approvers(row.requested_by)}"
            )
        return None


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
        closing = gates.closing(decision, len(gates.people(approvers, same_person)), quorum)
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
