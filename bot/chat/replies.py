"""The answer to a chat command, and the few formats the families share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.errors import (
    ApprovalNotFound,
    BatonError,
    ConcurrencyLimit,
    InvalidTransition,
    NotAllowed,
    PlaybookNotFound,
    RunNotFound,
)
from engine.playbooks import params as paramlib
from engine.playbooks.durations import format_duration
from engine.schedules.rows import ScheduleNotFound


@dataclass(frozen=True)
class Reply:
    """A front-end-agnostic answer. ``ok`` False marks a refusal or a mistake;
    ``run_id`` names the run the answer is about, ``follow`` asks the front end to show
    that run's live progress; ``data`` carries structured details for richer renderers;
    ``table_at``: the lines from that index on are a table, aligned in columns (Slack
    shows them as code, so that they stay aligned)."""

    lines: list[str]
    ok: bool = True
    run_id: str | None = None
    follow: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    table_at: int | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def fail(*lines: str) -> Reply:
    return Reply(list(lines), ok=False)


def failure_kind(exc: BatonError) -> str:
    """What kind of failure ``exc`` is, one word every front end answers alike (the API
    and the dashboard with one HTTP status each, ``bot.api_kit.STATUS``): ``not_found``
    (no such playbook, run, approval or schedule), ``conflict`` (the run's state or its
    concurrency key does not allow it now), ``refused`` (not this person), ``invalid``."""
    if isinstance(exc, PlaybookNotFound | RunNotFound | ApprovalNotFound | ScheduleNotFound):
        return "not_found"
    if isinstance(exc, InvalidTransition | ConcurrencyLimit):
        return "conflict"
    return "refused" if isinstance(exc, NotAllowed) else "invalid"


def first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def params_text(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={paramlib.text(v)}" for k, v in (params or {}).items() if v is not None)


def when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else ""


def took(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    return format_duration(delta.total_seconds())


RUN_HEADER = ("RUN", "PLAYBOOK", "STATUS", "TOOK", "BY", "VIA", "CREATED")


def run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            run["id"],
            run["playbook"],
            run["status"],
            took(run["started_at"], run["finished_at"]),
            str(run["requested_by"]),
            str(run["trigger"]),
            when(run["created_at"]),
        ]
        for run in runs
    ]
