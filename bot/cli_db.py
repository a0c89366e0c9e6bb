"""``baton db``: the database's schema, from the command line (room for more
subcommands: prune, backup, stats). Alembic is imported only here and when a schema has
to change, never by a start at head."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="the database: upgrade its schema, show its revision",
        description="Look after the database of BATON_DATABASE_URL.",
    )
    dbsub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    dbsub.add_parser(
        "upgrade",
        help="bring the schema to this Baton's head revision (creating it if need be)",
        description="Bring the database schema to this Baton's head revision: a database "
        "made by an older Baton is upgraded (one made before Alembic is checked and stamped "
        "first), an empty one created; rows are kept. Safe to run again: at head it changes "
        "nothing. `baton serve` does the same at start unless BATON_AUTO_UPGRADE is false.",
    )
    dbsub.add_parser(
        "current",
        help="show the schema's revision and whether it is behind",
        description="Show the database's schema revision. Exit status: 0 at head, 1 when "
        "`baton db upgrade` has work to do (behind, made by an older Baton, not created "
        "yet), 2 when this Baton cannot use it (newer than this Baton, or not Baton's).",
    )


def run(settings: Settings, command: str) -> int:
    from storage import schema
    from storage.db import create_engine
    from storage.errors import DatabaseUnavailable

    engine = create_engine(settings.database_url)
    try:
        if command == "upgrade":
            change = schema.upgrade(engine)
            print(change.describe())
            return 0
        state = schema.current(engine)
    except DatabaseUnavailable as exc:  # not "behind": this Baton cannot use it now
        print(f"baton: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if state.kind == "head":
        print(state.describe())
        return 0
    if state.kind in ("newer", "broken"):
        error = schema.SchemaTooNew(state) if state.kind == "newer" else schema.SchemaBroken(state)
        print(f"baton: {error}", file=sys.stderr)
        return 2
    if state.kind == "empty":
        print(f"not created yet: `baton db upgrade` (or any command) creates it at {schema.HEAD}")
    else:
        print(f"{state.describe()}: run `baton db upgrade`")
    return 1
