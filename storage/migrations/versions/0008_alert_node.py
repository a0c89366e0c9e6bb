"""``alerts.node``: the ``baton serve`` node that routes a pending alert. With several
replicas, the pending alerts of one that died (or stopped) are taken over by a live one
instead of waiting for a restart; alerts stored before this revision have none and are
taken by the first node that looks.

Revision ID: 0008_alert_node
Revises: 0007_job_queue
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_alert_node"
down_revision: str | None = "0007_job_queue"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("node", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("node")
