"""``baton db backup FILE``: a consistent copy of a live SQLite database.

SQLite's online backup API copies the pages in one read transaction: in WAL mode that is
a snapshot that writers do not wait for (``baton serve`` goes on committing), and the copy
is the database as of one commit, never torn. The copy is written beside ``FILE`` under a
temporary name, switched to a plain rollback journal (one self-contained file), checked
with ``PRAGMA quick_check`` and only then renamed to ``FILE``: an interrupted backup never
leaves a half-written file under that name. An existing ``FILE`` is replaced only if it is
an earlier copy (a SQLite database) or empty.

PostgreSQL has its own tools: ``pg_dump`` (see ``pg_dump_command``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from storage.errors import StorageError


@dataclass(frozen=True)
class Copy:
    path: Path
    bytes: int
    runs: int
    seconds: float


class BackupRefused(StorageError):
    """Not a backup this command can make (another database kind, a bad target)."""


def sqlite_path(engine: sa.Engine) -> Path | None:
    """The file of a SQLite database (None: PostgreSQL, or an in-memory database)."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    if engine.url.database == ":memory:":
        return None
    return Path(engine.url.database)


SIDECARS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a live database: writing a backup over one destroys it."""


def backup(engine: sa.Engine, target: Path) -> Copy:
    source = sqlite_path(engine)
    if source is None:
        raise BackupRefused(pg_dump_hint(engine, target))
    if not source.exists():
        raise BackupRefused(f"there is no database at {source} to back up")
    target = target.expanduser()
    if target.is_dir():
        raise BackupRefused(f"{target} is a folder: give the backup's file name")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupRefused(f"{target} is the database itself: give another file")
    live = {source.resolve().with_name(source.resolve().name + end) for end in SIDECARS}
    if target.resolve() in live:
        raise BackupRefused(
            f"{target} is a file of the live database (its write-ahead log, shared memory or "
            "journal): give another file"
        )
    if target.exists() and not target.is_file():
        raise BackupRefused(
            f"{target} is not a regular file (a device, a FIFO or a socket): give a file name"
        )
    if target.is_file() and not _replaceable(target):
        raise BackupRefused(
            f"{target} exists and is not a SQLite database: give another file (an older "
            "backup is replaced; any other file is left alone)"
        )
    if not target.parent.is_dir():
        raise BackupRefused(f"folder {target.parent} does not exist")
    partial = target.with_name(f".{target.name}.partial")
    started = time.monotonic()
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            _copy(driver, partial)
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise BackupRefused(f"cannot write the backup to {target}: {exc}") from exc
    with sqlite3.connect(target) as check:
        runs = int(check.execute("SELECT count(*) FROM runs").fetchone()[0])
    check.close()
    return Copy(target, target.stat().st_size, runs, time.monotonic() - started)


SQLITE_HEADER = b"SQLite format 3\x00"


def _replaceable(target: Path) -> bool:
    """An existing file a backup may replace: an earlier copy (a SQLite database), or an
    empty file. Anything else is someone's file given by mistake."""
    try:
        with target.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return True  # unreadable: writing the copy will say why
    return head in (b"", SQLITE_HEADER)


def _copy(source: sqlite3.Connection, partial: Path) -> None:
    partial.unlink(missing_ok=True)
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest)  # all pages in one step: one snapshot, never restarted
        dest.execute("PRAGMA journal_mode=DELETE")
        verdict = dest.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"the copy fails its check: {verdict}")
    finally:
        dest.close()


def pg_dump_command(engine: sa.Engine, target: Path) -> str:
    """The ``pg_dump`` line for this database (its password left out: PGPASSWORD or
    ~/.pgpass give it)."""
    url = engine.url.set(drivername="postgresql")._replace(password=None)  # set() keeps it
    return f"pg_dump --format=custom --file={target} '{url.render_as_string(hide_password=False)}'"


def pg_dump_hint(engine: sa.Engine, target: Path) -> str:
    if engine.dialect.name != "postgresql":
        return "baton db backup copies SQLite files; this database is neither SQLite nor PostgreSQL"
    return (
        "baton db backup copies SQLite databases; for PostgreSQL use pg_dump (a consistent "
        f"snapshot while Baton runs):\n  {pg_dump_command(engine, target)}\n"
        "and restore with pg_restore (see the README's Backups)"
    )
