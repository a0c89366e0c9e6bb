"""The database schema at start: one small query when it is at head, Alembic (imported only
then) when it must be created, adopted or upgraded.

A database is in one of these states (``inspect``):

- ``head``: ``alembic_version`` holds ``HEAD``. The common start, and the cheap one: one
  ``SELECT`` on ``alembic_version``, compared with the constant below (a unit test checks
  it is Alembic's computed head, so a new revision cannot forget to bump it).
- ``empty``: none of Baton's tables. Every command may create it, by running the
  revisions from the first: making a database from nothing upgrades no data (the README's
  "Try it" starts with ``baton run``). Measured here, that costs 28 ms on SQLite and 87 ms
  on PostgreSQL (``create_all`` took 12 and 80), plus 90 ms once per process to import
  Alembic: not worth a second way of making a database (``create_all`` and a stamp),
  which would skip whatever a revision does besides tables (seed rows, raw SQL).
- ``legacy``: made by a Baton from before Alembic (``schema_version`` 3, no
  ``alembic_version``). Once its tables are checked, it is stamped at the first revision
  (which is schema 3, written out) and upgraded from there.
- ``behind``: at a revision this code knows, older than head.
- ``newer``: at a revision this code does not know, or fenced by a newer Baton: refused,
  "upgrade Baton".
- ``broken``: Baton's tables without a version Baton can trust: refused with what is
  wrong.

Only ``prepare(upgrade=True)`` (``baton serve``) and ``upgrade`` (``baton db upgrade``)
change an existing database; the other commands stop and say what to run.

The ``schema_version`` table stays, as a fence for older Batons: every upgrade leaves a
row ``FENCE`` (4) in it, and a Baton of schema 3 refuses a database whose version is above
its own ("upgrade Baton"), so an old replica cannot write into an upgraded database.
Alembic's ``alembic_version`` is the truth from schema 4 on; ``FENCE`` never changes.

Every change happens in one transaction, which on PostgreSQL first takes the advisory
lock "upgrade" of its schema (``storage.locks``) and on SQLite the write lock (``BEGIN
IMMEDIATE``): two servers starting at once on one database take turns, and the second, reading the
state again under the lock, finds the database at head. PostgreSQL's DDL is
transactional, and so is SQLite's: an upgrade that fails leaves the database as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from storage import locks, tables
from storage.errors import DatabaseUnavailable, StorageError

log = logging.getLogger(__name__)

HEAD = "0009_definitions"  # the newest revision in storage/migrations/versions
FIRST = "0001_schema_3"  # what a database of Baton schema 3 is stamped at
LEGACY = 3  # the last schema_version of Batons before Alembic
FENCE = 4  # written by every upgrade: Batons of schema <= 3 then refuse the database

# The tables and columns of schema 3 (revision 0001): what a legacy database must have.
SCHEMA_3: dict[str, str] = {
    "runs": (
        "id playbook status attempt params secret_params trigger source requested_by "
        "parent_run_id parent_step_id concurrency_key definition error failed_step "
        "stop_reason stopped_by created_at queued_at started_at finished_at deadline_at "
        "owner epoch"
    ),
    "steps": (
        "run_id step_id phase position status attempts output error started_at "
        "finished_at wake_at wake_reason approval_id child_run_id"
    ),
    "attempts": (
        "id run_id step_id number run_attempt status started_at finished_at output error "
        "attachments"
    ),
    "approvals": (
        "id run_id step_id status spec requested_by created_at deadline_at closed_at outcome_reason"
    ),
    "decisions": "id approval_id user decision comment at",
    "schedules": (
        "id playbook kind cron timezone params secret_params origin created_by created_at "
        "next_fire_at last_fire_at last_run_id missed last_error"
    ),
    "run_logs": "id run_id step_id at level message",
    "audit": "id at actor action target source detail outcome",
    "chat_posts": ("id run_id step_id kind channel thread_ts ts state error created_at updated_at"),
    "slack_events": "event_id received_at",
    "alerts": (
        "id source fingerprint status name labels annotations severity starts_at ends_at "
        "links raw received_at outcome reason run_id processed_at"
    ),
    "alert_runs": (
        "id run_id fingerprint source playbook trigger name summary links repeats first_at "
        "last_at resolved_at"
    ),
    "schema_version": "version",
}

UPGRADE_HINT = "run `baton db upgrade` (or start `baton serve`, which upgrades)"

_alembic_version = sa.table("alembic_version", sa.column("version_num", sa.String(32)))

Kind = Literal["head", "empty", "legacy", "behind", "newer", "broken"]


@dataclass(frozen=True)
class State:
    kind: Kind
    revision: str | None = None  # in alembic_version
    legacy: int | None = None  # schema_version of a database without alembic_version
    problem: str = ""  # for broken

    def describe(self) -> str:
        if self.kind == "head":
            return f"{self.revision} (head)"
        if self.kind == "empty":
            return "not created yet"
        if self.kind == "legacy":
            return f"made by an older Baton (schema {self.legacy}, not stamped)"
        if self.kind == "behind":
            return f"{self.revision}, behind head {HEAD}"
        if self.kind == "newer":
            if self.revision is not None:
                return f"at revision {self.revision}, which this Baton does not know"
            return f"schema version {self.legacy}"
        return self.problem

    def why(self) -> str:
        """Why an older schema is older, in a few words (for refusals)."""
        if self.kind == "legacy":
            return f"schema {self.legacy}, from before migrations"
        return f"at {self.revision}, head is {HEAD}"


class SchemaOutdated(StorageError):
    """The database must be upgraded before this command can use it."""

    def __init__(self, state: State, hint: str = UPGRADE_HINT) -> None:
        self.state = state
        super().__init__(f"the database schema is older than this Baton ({state.why()}): {hint}")


class SchemaTooNew(StorageError):
    def __init__(self, state: State) -> None:
        self.state = state
        super().__init__(
            f"the database is newer than this Baton ({state.describe()}): it was upgraded "
            "by a newer Baton; upgrade Baton"
        )


class SchemaBroken(StorageError):
    def __init__(self, state: State) -> None:
        self.state = state
        super().__init__(f"the database cannot be used: {state.problem}")


@dataclass(frozen=True)
class Change:
    """What ``upgrade`` did: the state it found and the revision it left."""

    before: State
    after: str

    def describe(self) -> str:
        before, head = self.before, f"{self.after} (head)"
        if before.kind == "head":
            return f"already at head ({self.after}): nothing to do"
        if before.kind == "empty":
            return f"created the database at {head}"
        if before.kind == "legacy":
            return (
                f"upgraded the database from schema {before.legacy} (made by an older Baton, "
                f"stamped {FIRST}) to {head}"
            )
        return f"upgraded the database from {before.revision} to {head}"


def prepare(engine: sa.Engine, *, upgrade: bool) -> None:
    """Make the database usable by this Baton at start. At head: one query. Empty: create
    it. Older: upgrade it when ``upgrade``, else refuse with what to run."""
    if _stored_revision(engine) == HEAD:
        return
    with _changing(engine) as conn:
        state = inspect(conn)
        if state.kind in ("legacy", "behind") and not upgrade:
            raise SchemaOutdated(state)
        change = _apply(conn, state)
    if change.before.kind in ("legacy", "behind"):
        log.info("%s", change.describe())


def upgrade(engine: sa.Engine) -> Change:
    """``baton db upgrade``: bring the database to head, whatever Baton-made state it is in."""
    with _changing(engine) as conn:
        return _apply(conn, inspect(conn))


def current(engine: sa.Engine) -> State:
    """``baton db current``: the state, read without changing or locking anything."""
    with _connect(engine) as conn, conn.begin():
        return inspect(conn)


def inspect(conn: sa.Connection) -> State:
    names = set(sa.inspect(conn).get_table_names())
    if "alembic_version" in names:
        revision = conn.execute(sa.select(_alembic_version.c.version_num)).scalar()
        if revision == HEAD:
            return State("head", revision)
        if revision is not None:
            from storage import migrations

            kind: Kind = "behind" if migrations.known(revision) else "newer"
            return State(kind, revision)
    ours = names & SCHEMA_3.keys()
    if not ours:
        return State("empty")
    legacy = None
    if "schema_version" in names:
        legacy = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
    if legacy is None:
        return State(
            "broken",
            problem=f"it has Baton's tables ({', '.join(sorted(ours))}) "
            "but no version (neither alembic_version nor schema_version)",
        )
    if legacy > FENCE:
        return State("newer", legacy=legacy)
    if legacy == FENCE:
        return State(
            "broken",
            legacy=legacy,
            problem="it was upgraded by a Baton with "
            "Alembic (schema_version 4) but its alembic_version table is missing",
        )
    if legacy < LEGACY:
        return State(
            "broken",
            legacy=legacy,
            problem=f"it was made by an early Baton (schema {legacy}), and this Baton "
            f"upgrades schema {LEGACY} only: start a Baton of schema {LEGACY} on it once "
            "(it adds the missing tables), then this one",
        )
    missing = _missing(conn, names)
    if missing:
        return State(
            "broken",
            legacy=legacy,
            problem=f"it says schema {legacy}, but {'; '.join(missing)}",
        )
    return State("legacy", legacy=legacy)


def _missing(conn: sa.Connection, names: set[str]) -> list[str]:
    """What a legacy database lacks of schema 3 (tables, then columns)."""
    lacking = sorted(SCHEMA_3.keys() - names)
    if lacking:
        return [f"it lacks the tables {', '.join(lacking)}"]
    inspector = sa.inspect(conn)
    out = []
    for table, columns in SCHEMA_3.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        gone = [c for c in columns.split() if c not in have]
        if gone:
            out.append(f"table {table} lacks the columns {', '.join(gone)}")
    return out


def _apply(conn: sa.Connection, state: State) -> Change:
    if state.kind == "head":
        return Change(state, HEAD)
    if state.kind == "newer":
        raise SchemaTooNew(state)
    if state.kind == "broken":
        raise SchemaBroken(state)
    from storage import migrations

    if state.kind == "legacy":
        migrations.stamp(conn, FIRST)
    migrations.upgrade(conn)
    _fence(conn)
    return Change(state, HEAD)


def _fence(conn: sa.Connection) -> None:
    have = conn.execute(sa.select(sa.func.max(tables.schema_version.c.version))).scalar()
    if have is None or have < FENCE:
        conn.execute(sa.insert(tables.schema_version).values(version=FENCE))


def _stored_revision(engine: sa.Engine) -> str | None:
    """The fast path's one query; None when there is no version table (or no server:
    the slow path then says which)."""
    try:
        with engine.connect().execution_options(baton_read=True) as conn:
            return conn.execute(sa.select(_alembic_version.c.version_num)).scalar()
    except sa.exc.DBAPIError:
        return None


@contextmanager
def _connect(engine: sa.Engine) -> Iterator[sa.Connection]:
    try:
        conn = engine.connect()
    except sa.exc.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database {engine.url!r}: {exc.orig}") from exc
    with conn:
        yield conn


@contextmanager
def _changing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One transaction holding the upgrade lock. On SQLite, foreign keys are off during it
    (batch mode rebuilds tables that others reference) and checked before the commit."""
    sqlite = engine.dialect.name == "sqlite"
    with _connect(engine) as conn:
        if sqlite:
            _pragma(conn, "PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                if not sqlite:
                    locks.hold(conn, "upgrade")
                yield conn
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise StorageError(
                        "the upgrade would leave rows whose foreign keys point nowhere: "
                        "nothing was changed"
                    )
        finally:
            if sqlite:
                _pragma(conn, "PRAGMA foreign_keys=ON")


def _pragma(conn: sa.Connection, sql: str) -> None:
    """Outside any transaction (SQLite ignores foreign_keys inside one), on the driver."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(sql)
