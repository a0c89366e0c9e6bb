"""``approval``: park the step until people decide (``Engine.decide``), with a quorum."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.actions import ActionContext, ApprovalSpec, Suspend
from engine.durations import parse_duration


class Approvers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(default_factory=list)
    usergroups: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class ApprovalInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approvers: Approvers = Approvers()
    min_approvals: int = Field(default=1, ge=1)
    message: str = "Approval needed to continue."
    allow_self_approval: bool = False
    timeout: str | float | None = None
    on_timeout: Literal["reject", "approve"] = "reject"
    show: dict[str, Any] = Field(default_factory=dict)

    @field_validator("approvers", mode="before")
    @classmethod
    def _list_means_users(cls, v: Any) -> Any:
        return {"users": v} if isinstance(v, list) else v

    @field_validator("timeout")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if v is not None:
            parse_duration(v)
        return v


class ApprovalAction:
    name: ClassVar[str] = "approval"
    Inputs: ClassVar[type[BaseModel]] = ApprovalInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Suspend:
        timeout = parse_duration(inputs.timeout).total_seconds() if inputs.timeout else None
        return Suspend(
            approval=ApprovalSpec(
                approvers=inputs.approvers.model_dump(),
                min_approvals=inputs.min_approvals,
                message=inputs.message,
                allow_self_approval=inputs.allow_self_approval,
                timeout_s=timeout,
                on_timeout=inputs.on_timeout,
                show=inputs.show,
            )
        )
