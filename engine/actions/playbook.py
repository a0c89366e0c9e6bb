"""``playbook``: run another playbook as a child run and wait for it.

The step's output is the child's: ``{"run_id", "status", "steps": {step_id: output}}``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from engine.actions import ActionContext, ChildRunSpec, Suspend


class PlaybookInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class PlaybookAction:
    name: ClassVar[str] = "playbook"
    Inputs: ClassVar[type[BaseModel]] = PlaybookInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Suspend:
        return Suspend(child=ChildRunSpec(playbook=inputs.name, params=dict(inputs.params)))
