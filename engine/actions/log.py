"""The ``log`` action: write a line into the run's log (and so into its Slack thread).

Inputs: ``message`` (rendered by the engine like any ``with:`` value) and ``level``
(``info``, ``warning`` or ``error``; recorded in the output, the step never fails).
Output: ``{"message": str, "level": str}``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from engine.actions import ActionContext


class LogInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    level: Literal["info", "warning", "error"] = "info"


class LogAction:
    name: ClassVar[str] = "log"
    Inputs: ClassVar[type[BaseModel]] = LogInputs

    async def run(self, ctx: ActionContext, inputs: LogInputs) -> dict[str, Any]:
        await ctx.log(inputs.message, level=inputs.level)
        return {"message": inputs.message, "level": inputs.level}
