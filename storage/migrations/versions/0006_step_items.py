"""``step_items``: the items of ``for_each`` steps, one row each per run attempt.

A fan-out's items move one by one (started, retried, ended); a row per item keeps each
move a small write, and a crash loses nothing that finished (``engine.runs.fanout``).

Revision ID: 0006_step_items
Revises: 0005_dashboard_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_step_items"
down_revision: str | None = "0005_dashboard_sessions"
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)  # storage.tables.UTCDateTime: UTC, aware on every backend


def upgrade() -> None:
    op.create_table(
        "step_items",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("step_id", sa.String(200), nullable=False),
        sa.Column("run_attempt", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("item", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("run_id", "step_id", "run_attempt", "idx"),
    )


def downgrade() -> None:
    op.drop_table("step_items")
