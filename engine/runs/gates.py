"""Approval gates: the one home of their rules. A ``Gate`` is what an open approval asks
for, as stored in ``approvals.spec``: who may decide, how many approvals it needs, what
happens when nobody decides in time (reject, approve, or escalate to more approvers, one
stage at a time), and whether the requester may approve their own run.

No I/O here: the run machine opens, reminds, escalates and times gates out
(``engine.runs.approvals``), decisions are recorded by ``engine.runs.decisions``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from engine.actions import ApprovalSpec
from engine.secrets import Masker

KINDS = ("users", "usergroups", "groups")
"""The kinds of approvers a gate lists."""

Approvers = dict[str, list[str]]
SamePerson = Callable[[str, str], bool]


@dataclass(frozen=True)
class Escalation:
    """Who is asked next when nobody decided in time, for how long, and what then."""

    approvers: Approvers
    timeout_s: float
    on_timeout: str = "reject"

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Escalation:
        return cls(
            approvers=dict(spec.get("approvers") or {}),
            timeout_s=float(spec.get("timeout_s") or 0),
            on_timeout=str(spec.get("on_timeout", "reject")),
        )

    def spec(self) -> dict[str, Any]:
        return {
            "approvers": self.approvers,
            "timeout_s": self.timeout_s,
            "on_timeout": self.on_timeout,
        }


@dataclass(frozen=True)
class Gate:
    approvers: Approvers = field(default_factory=dict)
    min_approvals: int = 1
    message: str = ""
    allow_self_approval: bool = False
    on_timeout: str = "reject"
    """reject, approve or escalate (with ``escalate``)."""
    show: dict[str, Any] = field(default_factory=dict)
    escalate: Escalation | None = None
    remind_s: float | None = None
    remind_at: datetime | None = None
    """When the approvers are reminded, once per stage (None: not, or done)."""
    stage: int = 0
    """0 as opened; 1 once escalated."""
    escalated_at: datetime | None = None

    @classmethod
    def opening(cls, spec: ApprovalSpec, masker: Masker, now: datetime) -> Gate:
        """The gate an approval step opens at ``now`` (its message and shown values masked)."""
        return cls(
            approvers=spec.approvers,
            min_approvals=spec.min_approvals,
            message=masker.mask_text(spec.message),
            allow_self_approval=spec.allow_self_approval,
            on_timeout=spec.on_timeout,
            show=masker.mask(spec.show),
            escalate=Escalation.from_spec(spec.escalate) if spec.escalate else None,
            remind_s=spec.remind_s,
            remind_at=now + timedelta(seconds=spec.remind_s) if spec.remind_s else None,
        )

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> Gate:
        """The gate as stored (``approvals.spec``); missing keys take their defaults."""
        spec = spec or {}
        remind_at, escalated_at = spec.get("remind_at"), spec.get("escalated_at")
        escalate = spec.get("escalate")
        return cls(
            approvers=dict(spec.get("approvers") or {}),
            min_approvals=int(spec.get("min_approvals", 1)),
            message=str(spec.get("message") or ""),
            allow_self_approval=bool(spec.get("allow_self_approval")),
            on_timeout=str(spec.get("on_timeout", "reject")),
            show=dict(spec.get("show") or {}),
            escalate=Escalation.from_spec(escalate) if escalate else None,
            remind_s=spec.get("remind_s"),
            remind_at=datetime.fromisoformat(remind_at) if remind_at else None,
            stage=int(spec.get("stage") or 0),
            escalated_at=datetime.fromisoformat(escalated_at) if escalated_at else None,
        )

    def spec(self) -> dict[str, Any]:
        """The gate as stored, and as front ends read it."""
        spec: dict[str, Any] = {
            "approvers": self.approvers,
            "min_approvals": self.min_approvals,
            "message": self.message,
            "allow_self_approval": self.allow_self_approval,
            "on_timeout": self.on_timeout,
            "show": self.show,
            "escalate": self.escalate.spec() if self.escalate else None,
            "remind_s": self.remind_s,
            "remind_at": self.remind_at.isoformat() if self.remind_at else None,
            "stage": self.stage,
        }
        if self.escalated_at is not None:
            spec["escalated_at"] = self.escalated_at.isoformat()
        return spec

    # --- timeouts ----------------------------------------------------------------------

    def deadline(self, opened: datetime, timeout_s: float | None) -> datetime | None:
        return opened + timedelta(seconds=timeout_s) if timeout_s else None

    @property
    def escalation(self) -> Escalation | None:
        """The next stage, asked when nobody decided in time (None: the gate closes)."""
        return self.escalate if self.on_timeout == "escalate" else None

    def timeout_outcome(self) -> str:
        """How the gate closes when nobody decided in time (and it does not escalate)."""
        return "approved" if self.on_timeout == "approve" else "timed_out"

    def escalated(self, more: Escalation, now: datetime) -> tuple[Gate, datetime]:
        """The gate at its next stage ``more``, and its deadline: the stage's approvers
        join the ones asked so far (none dropped, none twice), with its own
        ``on_timeout``; there is no stage after it."""
        merged = merge(self.approvers, more.approvers)
        remind_at = now + timedelta(seconds=self.remind_s) if self.remind_s else None
        gate = replace(
            self,
            approvers=merged,
            on_timeout=more.on_timeout,
            escalate=None,
            stage=self.stage + 1,
            escalated_at=now,
            remind_at=remind_at,
        )
        return gate, now + timedelta(seconds=more.timeout_s)

    def reminded(self) -> Gate:
        return replace(self, remind_at=None)

    # --- who decides -------------------------------------------------------------------

    def self_approval_refused(
        self, user: str, requested_by: str, same_person: SamePerson = operator.eq
    ) -> bool:
        """``user`` started the run and the gate does not allow self-approval."""
        return same_person(user, requested_by) and not self.allow_self_approval

    def lists_anyone(self) -> bool:
        """The gate names no approvers: anyone (but the requester) may decide."""
        return not any(self.approvers.get(kind) for kind in KINDS)

    def approver_names(self, requested_by: str) -> list[str]:
        """Who the gate names to decide, as the API lists them: user ids, Slack user
        groups (``@handle`` or ``S…`` id), Baton groups (``group NAME``); the requester
        left out unless the gate allows self-approval (empty: anyone, the requester
        only so)."""
        users = [str(u) for u in self.approvers.get("users") or []]
        if not self.allow_self_approval:
            users = [u for u in users if u != requested_by]
        handles = [
            g if g.startswith("@") or g.isupper() else f"@{g}"
            for g in self.approvers.get("usergroups") or []
        ]
        return [*users, *handles, *(f"group {g}" for g in self.approvers.get("groups") or [])]

    def describe_approvers(self, requested_by: str) -> str:
        """Who may decide, as people read it (the requester left out unless the gate
        allows self-approval)."""
        anyone = "anyone" if self.allow_self_approval else f"anyone but {requested_by}"
        return ", ".join(self.approver_names(requested_by)) or anyone


def merge(before: Approvers, added: Approvers) -> Approvers:
    """Approvers of two stages as one list per kind, in order, each once."""
    return {
        kind: list(dict.fromkeys([*(before.get(kind) or []), *(added.get(kind) or [])]))
        for kind in KINDS
    }


def people(approvals: Iterable[str], same_person: SamePerson = operator.eq) -> list[str]:
    """The people among the users who approved (one person under two ids counts once)."""
    out: list[str] = []
    for who in approvals:
        if not any(same_person(who, one) for one in out):
            out.append(who)
    return out


def closing(decision: str, approved: int, quorum: int) -> str | None:
    """How a decision closes the gate: any rejection rejects it; approvals close it once
    ``approved`` people reached the quorum; None: it stays open."""
    if decision == "reject":
        return "rejected"
    return "approved" if approved >= quorum else None
