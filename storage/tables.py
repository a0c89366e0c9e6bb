"""Baton's tables. The database is the source of truth for runs, steps, attempts,
approvals and the audit trail; the engine rebuilds everything else from these rows.

Plain SQLAlchemy Core tables: Baton reads and writes them with Core statements only, and
declaring them as SQLModel classes cost every `baton` command about 0.5 s of start-up
(importing SQLModel and building its pydantic models). Every schema change is an Alembic
revision in ``storage/migrations/versions`` that brings a database to these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


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

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """On SQLite, the stored text read straight with ``datetime.fromisoformat`` (C):
        SQLAlchemy's own reading goes through a regular expression, which was most of
        the time of a page of runs (1,100 times per page of 50 runs of 10 steps)."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            read = datetime.fromisoformat(value)
            return read.replace(tzinfo=UTC) if read.tzinfo is None else read.astimezone(UTC)

        return process


# Every table of Baton's (Alembic compares the migrations' result with it).
metadata = sa.MetaData()

AnyRow: TypeAlias = "sa.Row[*tuple[Any, ...]]"
"""A row of any select (``sa.Row[Any]`` is a row of one column to SQLAlchemy 2.1's types)."""


# A playbook definition as runs began with it, once per version (``storage.definitions``):
# keyed by the digest of its canonical JSON, which runs hold. ``used_at``: when a run
# last began with it (a prune deletes it only when no run refers to it and it is older).
definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("digest", sa.String(32), primary_key=True),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=False),
)


# A run. Every list of runs reads newest first along one index ending in
# (created_at, id), whatever it is narrowed by (``engine.views.queries.RUN_FILTERS``); the
# runs in progress are found by status, so nothing that starts or drives runs reads the
# finished ones.
runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("playbook", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False, default=1),
    sa.Column("params", sa.JSON(), nullable=False, default=dict),
    sa.Column("secret_params", sa.String(), nullable=True),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("source", sa.JSON(), nullable=False, default=dict),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("parent_run_id", sa.String(32), nullable=True, index=True),
    sa.Column("parent_step_id", sa.String(200), nullable=True),
    sa.Column("concurrency_key", sa.String(500), nullable=True, index=True),
    sa.Column(
        "definition_digest",
        sa.String(32),
        sa.ForeignKey("definitions.digest", name="fk_runs_definition_digest"),
        nullable=False,
        index=True,  # a prune asks whether any run still refers to a definition
    ),
    sa.Column("error", sa.String(), nullable=True),
    sa.Column("failed_step", sa.String(), nullable=True),
    sa.Column("stop_reason", sa.String(16), nullable=True),
    sa.Column("stopped_by", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("queued_at", UTCDateTime(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("deadline_at", UTCDateTime(), nullable=True),
    sa.Column("owner", sa.String(200), nullable=True),
    sa.Column("epoch", sa.Integer(), nullable=False, default=0),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("drive_failures", sa.Integer(), nullable=False, default=0, server_default="0"),
    sa.Index("ix_runs_created", "created_at", "id"),
    sa.Index("ix_runs_playbook_created", "playbook", "created_at", "id"),
    sa.Index("ix_runs_status_created", "status", "created_at", "id"),
    sa.Index("ix_runs_trigger_created", "trigger", "created_at", "id"),
    sa.Index("ix_runs_requested_by_created", "requested_by", "created_at", "id"),
)


steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("position", sa.Integer(), nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("output", sa.JSON(), nullable=True),
    sa.Column("error", sa.String(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column(
        "wake_at", UTCDateTime(), nullable=True
    ),  # read with the run's steps, never searched by
    sa.Column("wake_reason", sa.String(16), nullable=True),
    sa.Column("approval_id", sa.String(32), nullable=True),
    sa.Column("child_run_id", sa.String(32), nullable=True),
)


attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("number", sa.Integer(), nullable=False),
    sa.Column("run_attempt", sa.Integer(), nullable=False, default=1),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("output", sa.JSON(), nullable=True),
    sa.Column("error", sa.String(), nullable=True),
    sa.Column("attachments", sa.JSON(), nullable=True),
    sa.UniqueConstraint("run_id", "step_id", "run_attempt", "number"),
)


# One item of a ``for_each`` step (``engine.playbooks.foreach``): its own status, attempts,
# output and error, per run attempt. A row per item, written as the item moves, so a
# fan-out of 1,000 items never rewrites one big document per item.
step_items = sa.Table(
    "step_items",
    metadata,
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("step_id", sa.String(200), primary_key=True),
    sa.Column("run_attempt", sa.Integer(), primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True),
    sa.Column("item", sa.JSON(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("output", sa.JSON(), nullable=True),
    sa.Column("error", sa.String(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
)


approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("spec", sa.JSON(), nullable=False, default=dict),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("deadline_at", UTCDateTime(), nullable=True),
    sa.Column("closed_at", UTCDateTime(), nullable=True),
    sa.Column("outcome_reason", sa.String(), nullable=True),
)


decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "approval_id", sa.String(32), sa.ForeignKey("approvals.id"), nullable=False, index=True
    ),
    sa.Column("user", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("comment", sa.String(), nullable=False, default=""),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("approval_id", "user"),
)


# A playbook run that comes back: a cron (``kind`` cron) or one time (``kind`` once).
# ``next_fire_at`` is the truth; timers are re-armed from it at start.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("playbook", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("cron", sa.String(200), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False, default="UTC"),
    sa.Column("params", sa.JSON(), nullable=False, default=dict),
    sa.Column("secret_params", sa.String(), nullable=True),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("next_fire_at", UTCDateTime(), nullable=True, index=True),
    sa.Column("last_fire_at", UTCDateTime(), nullable=True),
    sa.Column("last_run_id", sa.String(32), nullable=True),
    sa.Column("missed", sa.Integer(), nullable=False, default=0),
    sa.Column("last_error", sa.String(), nullable=True),
)


run_logs = sa.Table(
    "run_logs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("step_id", sa.String(200), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("level", sa.String(16), nullable=False, default="info"),
    sa.Column("message", sa.String(), nullable=False, default=""),
)


audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(500), nullable=False, default=""),
    sa.Column("source", sa.JSON(), nullable=False, default=dict),
    sa.Column("detail", sa.JSON(), nullable=False, default=dict),
    sa.Column("outcome", sa.String(32), nullable=False, default="ok"),
)


# The outbox of chat messages: one row per message Baton posts about a run, keyed
# by (run, step, kind). A sender claims the key before posting, so a restart or a
# takeover edits the message it finds here instead of posting a second one.
chat_posts = sa.Table(
    "chat_posts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False),  # the unique key's index begins with it
    sa.Column("step_id", sa.String(200), nullable=False, default=""),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=True),
    sa.Column("ts", sa.String(32), nullable=True),
    sa.Column("state", sa.String(16), nullable=False, default="claimed"),
    sa.Column("error", sa.String(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("run_id", "step_id", "kind"),
)


# Slack event ids already handled: Slack retries an event it thinks was lost, and
# the retry must change nothing (kept a day).
slack_events = sa.Table(
    "slack_events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
)


# Every alert Baton received, as normalized, with what became of it (``outcome``:
# pending, started, attached, held, unmatched, resolved, rejected, failed).
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(200), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("name", sa.String(500), nullable=False, default=""),
    sa.Column("labels", sa.JSON(), nullable=False, default=dict),
    sa.Column("annotations", sa.JSON(), nullable=False, default=dict),
    sa.Column("severity", sa.String(64), nullable=True),
    sa.Column("starts_at", UTCDateTime(), nullable=True),
    sa.Column("ends_at", UTCDateTime(), nullable=True),
    sa.Column("links", sa.JSON(), nullable=False, default=list),
    sa.Column("raw", sa.JSON(), nullable=True),
    sa.Column("received_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False, default="pending"),
    sa.Column("reason", sa.String(), nullable=True),
    sa.Column("run_id", sa.String(32), nullable=True, index=True),
    sa.Column("processed_at", UTCDateTime(), nullable=True),
    # the ``baton serve`` node routing it while it is pending: a live node's queue holds
    # it; the alerts of a node gone (dead, stopped) are taken over by another
    sa.Column("node", sa.String(200), nullable=True),
    sa.Index("ix_alerts_outcome_id", "outcome", "id"),
)


# Which run handles an alert (by fingerprint) for one playbook's trigger: repeats
# attach to it, the resolution finds it.
alert_runs = sa.Table(
    "alert_runs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("fingerprint", sa.String(200), nullable=False, index=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("playbook", sa.String(200), nullable=False),
    sa.Column("trigger", sa.Integer(), nullable=False, default=0),
    sa.Column("name", sa.String(500), nullable=False, default=""),
    sa.Column("summary", sa.String(), nullable=False, default=""),
    sa.Column("links", sa.JSON(), nullable=False, default=list),
    sa.Column("repeats", sa.Integer(), nullable=False, default=0),
    sa.Column("first_at", UTCDateTime(), nullable=False),
    sa.Column("last_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
)


# A run's command inbox: a change asked from outside the run's driver (cancel, a
# closed approval gate, a child run that ended). The node that owns the run applies
# them in order and writes the answer; the caller waits for it.
run_commands = sa.Table(
    "run_commands",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False, default=1),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False, default=dict),
    sa.Column("by", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("answer", sa.String(), nullable=True),
    sa.Column("answered_at", UTCDateTime(), nullable=True),
    sa.Index("ix_run_commands_state_run", "state", "run_id"),
    sa.Index("ix_run_commands_run", "run_id"),  # a run's deletion checks its commands
)


# A process that has the database open (``baton serve``, ``run``, ``console``),
# with its heartbeat: a node is alive while its heartbeat is younger than a lease.
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("host", sa.String(200), nullable=False, default=""),
    sa.Column("pid", sa.Integer(), nullable=False, default=0),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
)


# A dashboard login (``bot.dashboard.auth``), kept here so every replica knows it:
# the SHA-256 of the session id (the cookie alone opens nothing stored here), whose it
# is, the CSRF token its forms carry, and when it ends.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("person", sa.String(200), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False, index=True),
)


# Batons from before Alembic kept their schema's number here and refuse a database
# whose number is above their own; Alembic-era Batons leave 4 (see ``storage.schema``).
schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer(), primary_key=True),
)


def now() -> datetime:
    return datetime.now(UTC)
