"""Alembic's entry point, run by ``storage.migrations`` with the caller's connection
(already in its transaction: Alembic then neither begins nor commits).

Run by hand from the repository (``.venv/bin/alembic revision ...``, configured by
``[tool.alembic]`` in pyproject.toml), it connects to ``BATON_DATABASE_URL`` itself.
``render_as_batch`` makes ``op.batch_alter_table`` (and autogenerate) rebuild SQLite
tables where SQLite's ALTER TABLE cannot change them.
"""

from __future__ import annotations

import os

from alembic import context

from storage import tables
from storage.migrations import baton_owns


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=tables.metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=baton_owns,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    from storage.db import create_engine

    engine = create_engine(os.environ.get("BATON_DATABASE_URL", "sqlite:///./baton.db"))
    try:
        with engine.connect() as conn:
            run(conn)
    finally:
        engine.dispose()
