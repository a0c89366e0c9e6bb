"""Indexes for lists read a page at a time, and none that no query uses.

Lists of runs read newest first along one index ending in (created_at, id) for each
filter (none, playbook, status, trigger, requested_by): the status one also finds the
runs in progress without reading the finished ones. ``runs.finished_at`` finds the runs
that ended lately (cards to bring up to date after a restart). Alerts of one outcome
read newest first along (outcome, id).

Dropped: ``steps.wake_at`` (timers are re-armed from the steps of the runs in progress,
never searched by time) and ``chat_posts.run_id`` (the unique key's index begins with
it): each cost bytes and a write for every row.

Only indexes change, so SQLite keeps its tables (batch mode rebuilds nothing here).
On PostgreSQL the upgrade holds a lock on ``runs`` while its indexes are built: a few
seconds for a million runs.

Revision ID: 0003_paging_indexes
Revises: 0002_run_leases
"""

from __future__ import annotations

from alembic import op

revision = "0003_paging_indexes"
down_revision: str | None = "0002_run_leases"
branch_labels: str | None = None
depends_on: str | None = None

RUNS_BY = {
    "ix_runs_created": ["created_at", "id"],
    "ix_runs_playbook_created": ["playbook", "created_at", "id"],
    "ix_runs_status_created": ["status", "created_at", "id"],
    "ix_runs_trigger_created": ["trigger", "created_at", "id"],
    "ix_runs_requested_by_created": ["requested_by", "created_at", "id"],
    "ix_runs_finished_at": ["finished_at"],
}
RUNS_BEFORE = {
    "ix_runs_created_at": ["created_at"],
    "ix_runs_playbook": ["playbook"],
    "ix_runs_status": ["status"],
}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in RUNS_BEFORE:
            batch.drop_index(name)
        for name, columns in RUNS_BY.items():
            batch.create_index(name, columns)
    with op.batch_alter_table("steps") as batch:
        batch.drop_index("ix_steps_wake_at")
    with op.batch_alter_table("chat_posts") as batch:
        batch.drop_index("ix_chat_posts_run_id")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_outcome")
        batch.create_index("ix_alerts_outcome_id", ["outcome", "id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_outcome_id")
        batch.create_index("ix_alerts_outcome", ["outcome"])
    with op.batch_alter_table("chat_posts") as batch:
        batch.create_index("ix_chat_posts_run_id", ["run_id"])
    with op.batch_alter_table("steps") as batch:
        batch.create_index("ix_steps_wake_at", ["wake_at"])
    with op.batch_alter_table("runs") as batch:
        for name in RUNS_BY:
            batch.drop_index(name)
        for name, columns in RUNS_BEFORE.items():
            batch.create_index(name, columns)
