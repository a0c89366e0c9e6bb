"""``wait``: park the step until a time, as a timer the engine keeps across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.actions import ActionContext, Suspend
from engine.playbooks import durations


class WaitInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    for_: durations.Duration | None = Field(default=None, alias="for")
    until: datetime | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitInputs:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("give exactly one of `for` (e.g. 30s) or `until` (an ISO time)")
        return self


class WaitAction:
    name: ClassVar[str] = "wait"
    Inputs: ClassVar[type[BaseModel]] = WaitInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Suspend:
        if inputs.until is not None:
            until = inputs.until
            if until.tzinfo is None:
                until = until.replace(tzinfo=UTC)
            return Suspend(until=until)
        delta: timedelta = inputs.for_
        return Suspend(until=ctx.now() + delta)
