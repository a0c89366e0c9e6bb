"""Baton's tables. The database is the source of truth for runs, steps, attempts,
approvals and the audit trail; the engine rebuilds everything else from these rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, index: bool = False, nullable: bool = True) -> Any:
    return Field(default=None, sa_type=UTCDateTime, index=index, nullable=nullable)


def _json(default: Any = None) -> Any:
    if default is None:
        return Field(default=None, sa_type=sa.JSON, nullable=True)
    return Field(default_factory=default, sa_type=sa.JSON)


class Run(SQLModel, table=True):
    """A run. Every list of runs reads newest first along one index ending in
    (created_at, id), whatever it is narrowed by (``engine.queries.RUN_FILTERS``); the
    runs in progress are found by status, so nothing that starts or drives runs reads the
    finished ones."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.Index("ix_runs_created", "created_at", "id"),
        sa.Index("ix_runs_playbook_created", "playbook", "created_at", "id"),
        sa.Index("ix_runs_status_created", "status", "created_at", "id"),
        sa.Index("ix_runs_trigger_created", "trigger", "created_at", "id"),
        sa.Index("ix_runs_requested_by_created", "requested_by", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    playbook: str = Field(max_length=200)
    status: str = Field(max_length=16)
    attempt: int = 1
    params: dict[str, Any] = _json(dict)
    secret_params: str | None = None
    trigger: str = Field(max_length=32)
    source: dict[str, Any] = _json(dict)
    requested_by: str = Field(max_length=200)
    parent_run_id: str | None = Field(default=None, index=True, max_length=32)
    parent_step_id: str | None = Field(default=None, max_length=200)
    concurrency_key: str | None = Field(default=None, index=True, max_length=500)
    definition: dict[str, Any] = _json(dict)
    error: str | None = None
    failed_step: str | None = None
    stop_reason: str | None = Field(default=None, max_length=16)
    stopped_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = _ts(nullable=False)
    queued_at: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts(index=True)
    deadline_at: datetime | None = _ts()
    owner: str | None = Field(default=None, max_length=200)
    epoch: int = 0
    lease_expires_at: datetime | None = _ts()
    drive_failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Step(SQLModel, table=True):
    __tablename__ = "steps"

    run_id: str = Field(primary_key=True, foreign_key="runs.id", max_length=32)
    step_id: str = Field(primary_key=True, max_length=200)
    phase: str = Field(max_length=16)
    position: int = 0
    status: str = Field(max_length=16)
    attempts: int = 0
    output: dict[str, Any] | None = _json()
    error: str | None = None
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    wake_at: datetime | None = _ts()  # read with the run's steps, never searched by
    wake_reason: str | None = Field(default=None, max_length=16)
    approval_id: str | None = Field(default=None, max_length=32)
    child_run_id: str | None = Field(default=None, max_length=32)


class Attempt(SQLModel, table=True):
    __tablename__ = "attempts"
    __table_args__ = (sa.UniqueConstraint("run_id", "step_id", "run_attempt", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", max_length=32)
    step_id: str = Field(max_length=200)
    number: int
    run_attempt: int = 1
    status: str = Field(max_length=16)
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts()
    output: dict[str, Any] | None = _json()
    error: str | None = None
    attachments: dict[str, Any] | None = _json()


class StepItem(SQLModel, table=True):
    """One item of a ``for_each`` step (``engine.foreach``): its own status, attempts,
    output and error, per run attempt. A row per item, written as the item moves, so a
    fan-out of 1,000 items never rewrites one big document per item."""

    __tablename__ = "step_items"

    run_id: str = Field(primary_key=True, foreign_key="runs.id", max_length=32)
    step_id: str = Field(primary_key=True, max_length=200)
    run_attempt: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    item: Any = _json()
    status: str = Field(max_length=16)
    attempts: int = 0
    output: dict[str, Any] | None = _json()
    error: str | None = None
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()


class Approval(SQLModel, table=True):
    __tablename__ = "approvals"

    id: str = Field(primary_key=True, max_length=32)
    run_id: str = Field(index=True, foreign_key="runs.id", max_length=32)
    step_id: str = Field(max_length=200)
    status: str = Field(index=True, max_length=16)
    spec: dict[str, Any] = _json(dict)
    requested_by: str = Field(max_length=200)
    created_at: datetime = _ts(nullable=False)
    deadline_at: datetime | None = _ts()
    closed_at: datetime | None = _ts()
    outcome_reason: str | None = None


class Decision(SQLModel, table=True):
    __tablename__ = "decisions"
    __table_args__ = (sa.UniqueConstraint("approval_id", "user"),)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: str = Field(index=True, foreign_key="approvals.id", max_length=32)
    user: str = Field(max_length=200)
    decision: str = Field(max_length=16)
    comment: str = ""
    at: datetime = _ts(nullable=False)


class Schedule(SQLModel, table=True):
    """A playbook run that comes back: a cron (``kind`` cron) or one time (``kind`` once).
    ``next_fire_at`` is the truth; timers are re-armed from it at start."""

    __tablename__ = "schedules"

    id: str = Field(primary_key=True, max_length=32)
    playbook: str = Field(index=True, max_length=200)
    kind: str = Field(max_length=8)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    params: dict[str, Any] = _json(dict)
    secret_params: str | None = None
    origin: str = Field(max_length=16)
    created_by: str = Field(max_length=200)
    created_at: datetime = _ts(nullable=False)
    next_fire_at: datetime | None = _ts(index=True)
    last_fire_at: datetime | None = _ts()
    last_run_id: str | None = Field(default=None, max_length=32)
    missed: int = 0
    last_error: str | None = None


class RunLog(SQLModel, table=True):
    __tablename__ = "run_logs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, foreign_key="runs.id", max_length=32)
    step_id: str | None = Field(default=None, max_length=200)
    at: datetime = _ts(nullable=False)
    level: str = Field(default="info", max_length=16)
    message: str = ""


class Audit(SQLModel, table=True):
    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(index=True, nullable=False)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=500)
    source: dict[str, Any] = _json(dict)
    detail: dict[str, Any] = _json(dict)
    outcome: str = Field(default="ok", max_length=32)


class ChatPost(SQLModel, table=True):
    """The outbox of chat messages: one row per message Baton posts about a run, keyed
    by (run, step, kind). A sender claims the key before posting, so a restart or a
    takeover edits the message it finds here instead of posting a second one."""

    __tablename__ = "chat_posts"
    __table_args__ = (sa.UniqueConstraint("run_id", "step_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(max_length=32)  # the unique key's index begins with it
    step_id: str = Field(default="", max_length=200)
    kind: str = Field(max_length=64)
    channel: str = Field(max_length=200)
    thread_ts: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)
    state: str = Field(default="claimed", max_length=16)
    error: str | None = None
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime | None = _ts()


class SlackEvent(SQLModel, table=True):
    """Slack event ids already handled: Slack retries an event it thinks was lost, and
    the retry must change nothing (kept a day)."""

    __tablename__ = "slack_events"

    event_id: str = Field(primary_key=True, max_length=64)
    received_at: datetime = _ts(index=True, nullable=False)


class AlertRecord(SQLModel, table=True):
    """Every alert Baton received, as normalized, with what became of it (``outcome``:
    pending, started, attached, held, unmatched, resolved, rejected, failed)."""

    __tablename__ = "alerts"
    __table_args__ = (sa.Index("ix_alerts_outcome_id", "outcome", "id"),)

    id: str = Field(primary_key=True, max_length=32)
    source: str = Field(max_length=32)
    fingerprint: str = Field(index=True, max_length=200)
    status: str = Field(max_length=16)
    name: str = Field(default="", max_length=500)
    labels: dict[str, Any] = _json(dict)
    annotations: dict[str, Any] = _json(dict)
    severity: str | None = Field(default=None, max_length=64)
    starts_at: datetime | None = _ts()
    ends_at: datetime | None = _ts()
    links: list[dict[str, Any]] = _json(list)
    raw: dict[str, Any] | None = _json()
    received_at: datetime = _ts(index=True, nullable=False)
    outcome: str = Field(default="pending", max_length=16)
    reason: str | None = None
    run_id: str | None = Field(default=None, index=True, max_length=32)
    processed_at: datetime | None = _ts()


class AlertRun(SQLModel, table=True):
    """Which run handles an alert (by fingerprint) for one playbook's trigger: repeats
    attach to it, the resolution finds it."""

    __tablename__ = "alert_runs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True, max_length=32)
    fingerprint: str = Field(index=True, max_length=200)
    source: str = Field(max_length=32)
    playbook: str = Field(max_length=200)
    trigger: int = 0
    name: str = Field(default="", max_length=500)
    summary: str = ""
    links: list[dict[str, Any]] = _json(list)
    repeats: int = 0
    first_at: datetime = _ts(nullable=False)
    last_at: datetime = _ts(nullable=False)
    resolved_at: datetime | None = _ts()


class RunCommand(SQLModel, table=True):
    """A run's command inbox: a change asked from outside the run's driver (cancel, a
    closed approval gate, a child run that ended). The node that owns the run applies
    them in order and writes the answer; the caller waits for it."""

    __tablename__ = "run_commands"
    __table_args__ = (
        sa.Index("ix_run_commands_state_run", "state", "run_id"),
        sa.Index("ix_run_commands_run", "run_id"),  # a run's deletion checks its commands
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", max_length=32)
    attempt: int = 1
    kind: str = Field(max_length=16)
    payload: dict[str, Any] = _json(dict)
    by: str = Field(default="", max_length=200)
    created_at: datetime = _ts(nullable=False)
    state: str = Field(default="pending", max_length=16)
    answer: str | None = None
    answered_at: datetime | None = _ts()


class Node(SQLModel, table=True):
    """A process that has the database open (``baton serve``, ``run``, ``console``),
    with its heartbeat: a node is alive while its heartbeat is younger than a lease."""

    __tablename__ = "nodes"

    id: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=16)
    host: str = Field(default="", max_length=200)
    pid: int = 0
    started_at: datetime = _ts(nullable=False)
    heartbeat_at: datetime = _ts(nullable=False)


class DashboardSession(SQLModel, table=True):
    """A dashboard login (``bot.dashboard.auth``), kept here so every replica knows it:
    the SHA-256 of the session id (the cookie alone opens nothing stored here), whose it
    is, the CSRF token its forms carry, and when it ends."""

    __tablename__ = "dashboard_sessions"

    id_sha256: str = Field(primary_key=True, max_length=64)
    person: str = Field(max_length=200)
    csrf: str = Field(max_length=64)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(index=True, nullable=False)


class SchemaVersion(SQLModel, table=True):
    """Batons from before Alembic kept their schema's number here and refuse a database
    whose number is above their own; Alembic-era Batons leave 4 (see ``storage.schema``)."""

    __tablename__ = "schema_version"

    version: int = Field(primary_key=True)


runs = Run.__table__  # type: ignore[attr-defined]
steps = Step.__table__  # type: ignore[attr-defined]
attempts = Attempt.__table__  # type: ignore[attr-defined]
step_items = StepItem.__table__  # type: ignore[attr-defined]
approvals = Approval.__table__  # type: ignore[attr-defined]
decisions = Decision.__table__  # type: ignore[attr-defined]
run_logs = RunLog.__table__  # type: ignore[attr-defined]
audit = Audit.__table__  # type: ignore[attr-defined]
schedules = Schedule.__table__  # type: ignore[attr-defined]
chat_posts = ChatPost.__table__  # type: ignore[attr-defined]
slack_events = SlackEvent.__table__  # type: ignore[attr-defined]
alerts = AlertRecord.__table__  # type: ignore[attr-defined]
alert_runs = AlertRun.__table__  # type: ignore[attr-defined]
schema_version = SchemaVersion.__table__  # type: ignore[attr-defined]
run_commands = RunCommand.__table__  # type: ignore[attr-defined]
nodes = Node.__table__  # type: ignore[attr-defined]
dashboard_sessions = DashboardSession.__table__  # type: ignore[attr-defined]


def now() -> datetime:
    return datetime.now(UTC)
