"""Leases on runs, the command inbox, and the nodes table.

One Baton across processes: a run in progress is driven by one node under a lease
(``runs.owner``/``epoch``, and now ``lease_expires_at``); ``drive_failures`` counts the
times a driver gave a run up because the database refused its writes. Changes asked from
outside a run's driver are rows of ``run_commands``; ``nodes`` holds each process's
heartbeat.

Runs stored before this revision have no lease: a ``serve`` node adopts those in
progress at once (an older Baton drove them; it must be stopped before this upgrade).

Revision ID: 0002_run_leases
Revises: 0001_schema_3
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_run_leases"
down_revision: str | None = "0001_schema_3"
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)  # storage.tables.UTCDateTime: UTC, aware on every backend


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "run_commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("answer", sa.String(), nullable=True),
        sa.Column("answered_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_commands_state_run", "run_commands", ["state", "run_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lease_expires_at", TS, nullable=True))
        batch.add_column(
            sa.Column("drive_failures", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("drive_failures")
        batch.drop_column("lease_expires_at")
    op.drop_index("ix_run_commands_state_run", table_name="run_commands")
    op.drop_table("run_commands")
    op.drop_table("nodes")
