"""What front ends hand to the engine: one request type, whoever asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Trigger(StrEnum):
    """What started a run (its ``trigger``): the one list every front end, the runs'
    filters (the dashboard, ``GET /api/runs``) and the metrics' labels go by."""

    API = "api"
    CLI = "cli"
    CONSOLE = "console"
    SLACK = "slack"
    WEB = "web"
    SCHEDULE = "schedule"
    ALERT = "alert"
    PLAYBOOK = "playbook"  # a child run, started by its parent's `playbook` step


TRIGGERS = tuple(str(kind) for kind in Trigger)


def trigger_problem(value: str) -> str | None:
    """Why ``value`` is no trigger a run can have (None: it is one)."""
    if value in TRIGGERS:
        return None
    return f"trigger must be one of {', '.join(TRIGGERS)}, not {value!r}"


@dataclass(frozen=True)
class RunRequest:
    playbook: str
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: str = "anonymous"
    trigger: str = Trigger.API
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
