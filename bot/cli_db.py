"""``baton db``: the database from the command line: its schema (upgrade, current), its
history (prune), a copy of it (backup) and its size (stats). Alembic is imported only
here and when a schema has to change, never by a start at head."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa

    from bot.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="the database: upgrade its schema, show its revision, prune, back up, measure",
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

    prune = dbsub.add_parser(
        "prune",
        help="delete finished runs (and what hangs off them), settled alerts and chat "
        "bookkeeping older than AGE",
        description="Delete runs that finished more than AGE ago with their steps, attempts, "
        "logs, approval gates and decisions, inbox commands, chat posts and alert links; "
        "settled alerts, chat posts and processed Slack event ids older than AGE; audit rows "
        "older than BATON_AUDIT_RETENTION. Never an active run (queued, running, waiting), "
        "nor a finished run whose parent or child run is active or younger than AGE (a run "
        "goes with its whole family). Works in small transactions, safe while `baton serve` "
        "runs. Prints the rows deleted per table.",
    )
    prune.add_argument(
        "--older-than", dest="age", metavar="AGE", required=True, type=_age, help="e.g. 90d, 12w"
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )
    backup = dbsub.add_parser(
        "backup",
        help="copy the live SQLite database to FILE (PostgreSQL: shows the pg_dump command)",
        description="Copy the SQLite database to FILE with SQLite's online backup API: a "
        "consistent snapshot, safe while `baton serve` runs. FILE is written under a temporary "
        "name, checked, then renamed (an existing FILE is replaced only if it is an earlier "
        "backup or empty). On PostgreSQL, prints "
        "the pg_dump command to use instead.",
    )
    backup.add_argument("file", metavar="FILE", type=Path, help="where to write the copy")
    dbsub.add_parser(
        "stats",
        help="rows and bytes per table, and the age of the oldest run",
        description="Rows and bytes (table and indexes) per table, and the oldest run.",
    )


def _age(text: str) -> timedelta:
    from bot.settings import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(settings: Settings, args: argparse.Namespace) -> int:
    command = args.db_command
    if command == "prune":
        return _prune(settings, args.age, args.dry_run)
    if command == "backup":
        return _backup(settings, args.file)
    if command == "stats":
        return _stats(settings)
    return _schema(settings, command)


def _schema(settings: Settings, command: str) -> int:
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


def _open(settings: Settings) -> sa.Engine:
    """The database, usable by this Baton (an older schema refused with what to run, as
    every command but serve does). A SQLite file that is not there is not made: a
    mistyped BATON_DATABASE_URL would otherwise back up or prune an empty database."""
    from storage import schema
    from storage.db import create_engine, normalize_url
    from storage.errors import StorageError

    url = normalize_url(settings.database_url)
    path = url.database if url.get_backend_name() == "sqlite" else None
    if path not in (None, "", ":memory:") and not Path(str(path)).exists():
        raise StorageError(f"there is no database at {url.database}: check BATON_DATABASE_URL")
    engine = create_engine(settings.database_url)
    try:
        schema.prepare(engine, upgrade=False)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _prune(settings: Settings, age: timedelta, dry_run: bool) -> int:
    from engine import retention
    from storage import prune, prune_log

    now = datetime.now(UTC)
    engine = _open(settings)
    try:
        policy = retention.policy(now, age, settings.audit_age)
        report = prune.prune(engine, policy, dry_run=dry_run)
        if not dry_run:
            prune_log.record(
                engine,
                report,
                actor=getpass.getuser(),
                target=f"older than {_days(age)}",
                at=now,
                source={"front_end": "cli"},
            )
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    width = max(len(name) for name in report.counts)
    print(f"{'table':<{width}}  {verb}")
    for table, n in report.counts.items():
        print(f"{table:<{width}}  {n:>{len(verb)},}")
    print(f"{'total':<{width}}  {report.total:>{len(verb)},}")
    print(
        f"runs finished before {_when(now - age)}; audit rows before "
        f"{_when(now - settings.audit_age)} (BATON_AUDIT_RETENTION={settings.audit_retention})"
    )
    if report.spared:
        print(
            f"kept {report.spared} old finished run(s) whose parent or child run is still "
            "active or younger"
        )
    if report.error:
        print(
            f"baton: the prune stopped early: {report.error} (what is counted above is "
            "deleted; run it again to go on)",
            file=sys.stderr,
        )
        return 1
    if dry_run:
        print("dry run: nothing was deleted")
    return 0


def _backup(settings: Settings, file: Path) -> int:
    from storage import backup
    from storage.sizes import human

    engine = _open(settings)
    try:
        if backup.sqlite_path(engine) is None:
            print(f"baton: {backup.pg_dump_hint(engine, file)}", file=sys.stderr)
            return 2
        copy = backup.backup(engine, file)
    finally:
        engine.dispose()
    print(
        f"backed up {human(copy.bytes)} ({copy.runs:,} runs) to {copy.path} "
        f"in {copy.seconds:.1f}s; restore: stop Baton, copy it over the database file "
        "(and remove the old -wal and -shm files)"
    )
    return 0


def _stats(settings: Settings) -> int:
    from storage import sizes

    engine = _open(settings)
    try:
        measured = sizes.measure(engine)
    finally:
        engine.dispose()
    width = max(len("total"), *(len(s.name) for s in measured.tables))
    print(f"{'table':<{width}}  {'rows':>11}  {'bytes':>10}")
    for s in measured.tables:
        print(f"{s.name:<{width}}  {s.rows:>11,}  {sizes.human(s.bytes):>10}")
    print(f"{'total':<{width}}  {measured.rows:>11,}  {sizes.human(measured.bytes):>10}")
    if measured.estimated:
        print("bytes estimated from the page count (this SQLite has no dbstat)")
    if measured.oldest_run is None:
        print("oldest run: none")
    else:
        age = datetime.now(UTC) - measured.oldest_run
        print(f"oldest run: {_when(measured.oldest_run)} ({_days(age)} old)")
    return 0


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _days(age: timedelta) -> str:
    """90 days -> '90d'; under two days in hours, under two hours in minutes."""
    seconds = age.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f}d"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 60:.0f}m"
