"""Baton's Alembic environment, configured in code: no ``alembic.ini`` on the user's side.

Imported only when the schema has to change (``storage.schema``'s slow path) and by
``baton db``: a database at head never pays for importing Alembic. Every function takes
the connection the caller opened, inside the transaction (and, on PostgreSQL, under the
advisory lock) that ``storage.schema`` holds, so a whole upgrade commits or rolls back
as one.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent


def baton_owns(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate's filter: the job queue's tables (``procrastinate_*``, revision
    0005) are procrastinate's, not in ``storage.tables``, and stay as they are."""
    return not (type_ == "table" and (name or "").startswith("procrastinate_"))


def config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The head revision, as Alembic computes it from the files in ``versions/``."""
    found = script().get_current_head()
    assert found is not None, "no revision in storage/migrations/versions"
    return found


def known(revision: str) -> bool:
    """Whether ``revision`` is one of this Baton's (exactly: Alembic would also take a
    prefix of one)."""
    return revision in {r.revision for r in script().walk_revisions()}


def upgrade(connection: sa.Connection, target: str = "head") -> None:
    command.upgrade(config(connection), target)


def stamp(connection: sa.Connection, revision: str) -> None:
    command.stamp(config(connection), revision)


def differences(connection: sa.Connection) -> list[object]:
    """What autogenerate would write to bring the database to ``storage.tables``' metadata:
    empty when the migrations and the metadata agree."""
    from storage import tables

    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": baton_owns}
    )
    return list(compare_metadata(context, tables.metadata))
