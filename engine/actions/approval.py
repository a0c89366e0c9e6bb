"""``approval``: park the step until people decide (``Engine.decide``), with a quorum.

``timeout`` with ``on_timeout``: ``reject`` (the step fails), ``approve`` (it goes on), or
``escalate``: the approvers of ``escalate`` join the gate with a new ``timeout`` and their
own ``on_timeout``. ``remind``: after that long undecided (in each stage), the approvers
are reminded."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.actions import ActionContext, ApprovalSpec, Suspend
from engine.durations import parse_duration


class Approvers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(default_factory=list)
    usergroups: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


def _list_means_users(v: Any) -> Any:
    return {"users": v} if isinstance(v, list) else v


def _duration(v: Any) -> Any:
    if v is not None:
        parse_duration(v)
    return v


class Escalation(BaseModel):
    """Who is asked next when nobody decided in time, for how long, and what then."""

    model_config = ConfigDict(extra="forbid")

    approvers: Approvers
    timeout: str | float
    on_timeout: Literal["reject", "approve"] = "reject"

    _approvers = field_validator("approvers", mode="before")(_list_means_users)
    _timeout = field_validator("timeout")(_duration)


class ApprovalInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approvers: Approvers = Approvers()
    min_approvals: int = Field(default=1, ge=1)
    message: str = "Approval needed to continue."
    allow_self_approval: bool = False
    timeout: str | float | None = None
    on_timeout: Literal["reject", "approve", "escalate"] = "reject"
    escalate: Escalation | None = None
    remind: str | float | None = None
    show: dict[str, Any] = Field(default_factory=dict)

    _approvers = field_validator("approvers", mode="before")(_list_means_users)
    _durations = field_validator("timeout", "remind")(_duration)

    @model_validator(mode="after")
    def _escalation_complete(self) -> ApprovalInputs:
        if self.on_timeout == "escalate" and (self.escalate is None or self.timeout is None):
            raise ValueError(
                "on_timeout: escalate needs a `timeout` and an `escalate: {approvers: ..., "
                "timeout: ...}` saying who is asked next"
            )
        return self


class ApprovalAction:
    name: ClassVar[str] = "approval"
    Inputs: ClassVar[type[BaseModel]] = ApprovalInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Suspend:
        timeout = parse_duration(inputs.timeout).total_seconds() if inputs.timeout else None
        remind = parse_duration(inputs.remind).total_seconds() if inputs.remind else None
        escalate = None
        if inputs.on_timeout == "escalate" and inputs.escalate is not None:
            escalate = {
                "approvers": inputs.escalate.approvers.model_dump(),
                "timeout_s": parse_duration(inputs.escalate.timeout).total_seconds(),
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
