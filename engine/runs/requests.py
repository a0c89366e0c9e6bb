"""What front ends hand to the engine: one request type, whoever asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunRequest:
    playbook: str
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str = "anonymous"
    trigger: str = "api"
    source: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None
    parent_step_id: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a dry run shows: the resolved params and the order steps would run in."""

    playbook: str
    params: dict[str, Any]
    waves: list[list[str]]
    on_failure: list[list[str]]
    finally_: list[list[str]]
    concurrency_key: str | None


@dataclass(frozen=True)
class DecisionResult:
    approval_id: str
    recorded: bool
    status: str
    message: str
