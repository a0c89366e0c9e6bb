"""``approval``: park the step until people decide (``Engine.decide``), with a quorum.

``timeout`` with ``on_timeout``: ``reject`` (the step fails), ``approve`` (it goes on), or
``escalate``: the approvers of ``escalate`` join the gate with a new ``timeout`` and their
own ``on_timeout``. ``remind``: after that long undecided (in each stage), the approvers
are reminded.

Quorum: ``min_approvals`` must be reachable by the people the gate lists (``users``,
plus the members of ``groups`` when Baton's config is known, plus those of ``escalate``).
``baton validate`` counts them and refuses a gate that can never be approved; a gate that
names Slack ``usergroups`` (or a group whose members include one) cannot be counted
before it opens and is not checked. When the gate opens, the person who started the run
is left out unless ``allow_self_approval``: if the others cannot reach the quorum, the
step fails at once with the reason instead of waiting for a decision nobody may give."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.access import rules as access
from engine.actions import ActionContext, ApprovalSpec, Suspend
from engine.errors import ActionError
from engine.playbooks import durations


class Approvers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(default_factory=list)
    usergroups: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


def _list_means_users(v: Any) -> Any:
    return {"users": v} if isinstance(v, list) else v


class Escalation(BaseModel):
    """Who is asked next when nobody decided in time, for how long, and what then."""

    model_config = ConfigDict(extra="forbid")

    approvers: Approvers
    timeout: durations.Timeout
    on_timeout: Literal["reject", "approve"] = "reject"

    _approvers = field_validator("approvers", mode="before")(_list_means_users)


class ApprovalInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approvers: Approvers = Approvers()
    min_approvals: int = Field(default=1, ge=1)
    message: str = "Approval needed to continue."
    allow_self_approval: bool = False
    timeout: durations.Timeout | None = None
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate: Escalation | None = None
    remind: durations.Timeout | None = None
    show: dict[str, Any] = Field(default_factory=dict)

    _approvers = field_validator("approvers", mode="before")(_list_means_users)

    @model_validator(mode="after")
    def _escalation_complete(self) -> ApprovalInputs:
        if self.on_timeout == "escalate" and (self.escalate is None or self.timeout is None):
            raise ValueError(
                "on_timeout: escalate needs a `timeout` and an `escalate: {approvers: ..., "
                "timeout: ...}` saying who is asked next"
            )
        return self


def listed_approvers(
    inputs: ApprovalInputs, groups: Mapping[str, frozenset[str]] | None = None
) -> set[str] | None:
    """Everyone the gate lists (escalation included), or None when that cannot be known
    without asking Slack: no approvers (anyone may decide), Slack user groups, or Baton
    groups when ``groups`` (the config's) is not given or holds a Slack user group."""
    stages = [inputs.approvers]
    if inputs.on_timeout == "escalate" and inputs.escalate is not None:
        stages.append(inputs.escalate.approvers)
    if not any(a.users or a.usergroups or a.groups for a in stages):
        return None
    people: set[str] = set()
    for approvers in stages:
        if approvers.usergroups:
            return None
        people.update(approvers.users)
        for group in approvers.groups:
            members = (groups or {}).get(group)
            if members is None or any(access.is_usergroup(m) for m in members):
                return None
            people.update(members)
    return people


def quorum_problem(
    inputs: ApprovalInputs,
    groups: Mapping[str, frozenset[str]] | None = None,
    requested_by: str | None = None,
) -> str | None:
    """Why the gate could never be approved (None: it can, or nobody can tell yet).
    With ``requested_by``, that person is left out unless self-approval is allowed."""
    people = listed_approvers(inputs, groups)
    if people is None:
        return None
    need = inputs.min_approvals
    listed = ", ".join(sorted(people)) or "nobody"
    if need > len(people):
        return (
            f"min_approvals is {need} but the gate lists only {len(people)} approver"
            f"{'' if len(people) == 1 else 's'} ({listed}): list more approvers or "
            f"lower min_approvals"
        )
    if requested_by in people and not inputs.allow_self_approval and need > len(people) - 1:
        return (
            f"{requested_by} started this run and may not approve it, which leaves "
            f"{len(people) - 1} of the {need} approvals needed ({listed}): someone else must "
            "start it, or list more approvers, or set allow_self_approval: true"
        )
    return None


class ApprovalAction:
    name: ClassVar[str] = "approval"
    Inputs: ClassVar[type[BaseModel]] = ApprovalInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Suspend:
        problem = quorum_problem(inputs, requested_by=ctx.requested_by)
        if problem is not None:
            raise ActionError(problem)
        timeout = inputs.timeout.total_seconds() if inputs.timeout else None
        remind = inputs.remind.total_seconds() if inputs.remind else None
        escalate = None
        if inputs.on_timeout == "escalate" and inputs.escalate is not None:
            escalate = {
                "approvers": inputs.escalate.approvers.model_dump(),
                "timeout_s": inputs.escalate.timeout.total_seconds(),
                "on_timeout": inputs.escalate.on_timeout,
            }
        return Suspend(
            approval=ApprovalSpec(
                approvers=inputs.approvers.model_dump(),
                min_approvals=inputs.min_approvals,
                message=inputs.message,
                allow_self_approval=inputs.allow_self_approval,
                timeout_s=timeout,
                on_timeout=inputs.on_timeout,
                show=inputs.show,
                escalate=escalate,
                remind_s=remind,
            )
        )
