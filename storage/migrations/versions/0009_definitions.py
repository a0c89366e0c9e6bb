"""``definitions``: each playbook definition stored once per version, runs referring to it
by digest (``runs.definition_digest``) instead of each keeping a copy (``runs.definition``,
800 of the 1,000 bytes of a run's row). See ``storage.definitions``.

The existing runs' definitions move into the new table: each is read, its digest taken
(the first 128 bits of the SHA-256 of its canonical JSON, as ``storage.definitions``
takes it: written out here, so that this revision stays what it is), stored once, and
its runs given the digest; ``used_at`` is the start of its newest run. Then the old
column goes (SQLite: the table is rebuilt, in batch mode). Downgrade puts the copies back.

Revision ID: 0009_definitions
Revises: 0008_alert_node
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009_definitions"
down_revision: str | None = "0008_alert_node"
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)  # storage.tables.UTCDateTime: UTC, aware on every backend
PAGE = 5_000  # runs read at a time
FK = "fk_runs_definition_digest"
INDEX = "ix_runs_definition_digest"

_runs = sa.table(
    "runs",
    sa.column("id", sa.String),
    sa.column("definition", sa.JSON),
    sa.column("definition_digest", sa.String),
    sa.column("created_at", TS),
)
_definitions = sa.table(
    "definitions",
    sa.column("digest", sa.String),
    sa.column("body", sa.JSON),
    sa.column("used_at", TS),
)


def _digest(definition: Any) -> str:
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def upgrade() -> None:
    op.create_table(
        "definitions",
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("used_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("definition_digest", sa.String(32), nullable=True))
    _move_definitions(op.get_bind())
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("definition_digest", existing_type=sa.String(32), nullable=False)
        batch.create_foreign_key(FK, "definitions", ["definition_digest"], ["digest"])
        batch.create_index(INDEX, ["definition_digest"])
        batch.drop_column("definition")


def _move_definitions(conn: sa.Connection) -> None:
    """Every run's definition into ``definitions``, and its digest into the run."""
    bodies: dict[str, Any] = {}
    used: dict[str, datetime] = {}
    digests: list[dict[str, str]] = []
    after = None
    while True:
        page = sa.select(_runs.c.id, _runs.c.definition, _runs.c.created_at).order_by(_runs.c.id)
        if after is not None:
            page = page.where(_runs.c.id > after)
        rows = conn.execute(page.limit(PAGE)).all()
        if not rows:
            break
        after = rows[-1].id
        for row in rows:
            definition = row.definition if row.definition is not None else {}
            key = _digest(definition)
            bodies.setdefault(key, definition)
            if key not in used or row.created_at > used[key]:
                used[key] = row.created_at
            digests.append({"run": row.id, "key": key})
    if bodies:
        conn.execute(
            _definitions.insert(),
            [{"digest": k, "body": b, "used_at": used[k]} for k, b in bodies.items()],
        )
    if digests:
        conn.execute(
            _runs.update()
            .where(_runs.c.id == sa.bindparam("run"))
            .values(definition_digest=sa.bindparam("key")),
            digests,
        )


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("definition", sa.JSON(), nullable=True))
    conn = op.get_bind()
    bodies = {r.digest: r.body for r in conn.execute(sa.select(_definitions))}
    rows = conn.execute(sa.select(_runs.c.id, _runs.c.definition_digest)).all()
    if rows:
        conn.execute(
            _runs.update()
            .where(_runs.c.id == sa.bindparam("run"))
            .values(definition=sa.bindparam("body")),
            [{"run": r.id, "body": bodies[r.definition_digest]} for r in rows],
        )
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("definition", existing_type=sa.JSON(), nullable=False)
        batch.drop_index(INDEX)
        batch.drop_constraint(FK, type_="foreignkey")
        batch.drop_column("definition_digest")
    op.drop_table("definitions")
