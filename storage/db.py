"""Database set-up: plain URLs in, the right driver and pragmas out.

Baton writes through one writer thread on a synchronous SQLAlchemy engine (the standard
``sqlite3`` module, ``psycopg`` for PostgreSQL): measured here, a commit of two Core
statements costs 0.57 ms that way on SQLite against 1.65 ms through aiosqlite, and the
thread lets the store commit groups of transitions at once. See ``storage.store``; the
schema (created, checked, upgraded) is ``storage.schema``'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from storage.errors import StorageError


def normalize_url(url: str) -> URL:
    """Accept plain URLs (``sqlite:///x.db``, ``postgresql://u@h/db``) and pick the driver."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError(
            f"BATON_DATABASE_URL {url!r} is not a database URL: use e.g. "
            "sqlite:///./baton.db or postgresql://user@host/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise StorageError(
        f"BATON_DATABASE_URL uses {backend!r}; Baton supports sqlite:// and postgresql://"
    )


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (read without checking the rest of it:
    ``baton validate`` asks, and must not fail on a URL it never connects to)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode survives a killed process (only a power cut can lose the last
    # commits), which is the crash Baton promises to survive.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    """Writes take the lock up front (IMMEDIATE, never upgraded); reads never take it."""
    read = conn.get_execution_options().get("baton_read", False)
    # straight to the driver: this runs for every commit of the hot path
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("BEGIN DEFERRED" if read else "BEGIN IMMEDIATE")


def _idle_limit(seconds: float) -> Callable[[Any, Any], None]:
    """A PostgreSQL session that sits idle inside a transaction longer than ``seconds``
    is ended by the server: a node frozen mid-transaction (SIGSTOP, a VM paused) lets go
    of its row locks instead of stalling every other node that writes those rows."""
    statement = f"SET idle_in_transaction_session_timeout = {max(1, round(seconds * 1000))}"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(statement)
        dbapi_conn.commit()  # else the pool's reset would roll the setting back

    return on_connect


def create_engine(url: str, *, idle_limit: float | None = None) -> sa.Engine:
    """An engine for ``url``. ``idle_limit`` (PostgreSQL): seconds a session may sit idle
    within a transaction before the server ends it (see ``_idle_limit``)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=8,
            max_overflow=8,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy drive BEGIN so write transactions are IMMEDIATE, never upgraded.
        sa.event.listen(engine, "begin", _sqlite_begin)

        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        sa.event.listen(engine, "connect", _no_pysqlite_begin)
        return engine
    engine = sa.create_engine(parsed, pool_size=8, max_overflow=8, pool_pre_ping=True)
    if idle_limit is not None:
        sa.event.listen(engine, "connect", _idle_limit(idle_limit))
    return engine
