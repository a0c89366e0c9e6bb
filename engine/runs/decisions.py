"""Human decisions on approval gates: who may decide, the decision recorded (idempotent
per gate and person), and a decision that closes its gate sent to the run's inbox in
the same commit (``engine.runs.gates`` counts the quorum)."""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from engine import audit, storable
from engine import events as ev
from engine.bus import EventBus
from engine.errors import ApprovalNotFound, BatonError, NotAllowed
from engine.runs import gates, inbox
from engine.runs import messages as msg
from engine.runs.loading import RunRecords
from engine.runs.node import Node
from engine.runs.requests import DecisionResult
from engine.timing import Clock
from engine.views import queries
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
        spec = row.spec
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
        outcome = gates.Outcome()
        quorum = int(spec.get("min_approvals", 1))
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
            gates.record(
                approval_id, user, decision, comment, now, quorum, outcome, self.same_person
            ),
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
        spec = row.spec
        if self.same_person(user, row.requested_by) and not spec.get("allow_self_approval"):
            return (
                f"{user} started run {row.run_id} and cannot approve it: another approver "
                f"must decide ({queries.describe_approvers(spec, row.requested_by)})"
            )
        if not await self.approver_check(user, spec.get("approvers") or {}):
            return (
                f"{user} may not decide on {row.id}; approvers: "
                f"{queries.describe_approvers(spec, row.requested_by)}"
            )
        return None
