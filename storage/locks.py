"""PostgreSQL advisory locks that belong to one Baton: the schema it lives in.

An advisory lock belongs to a whole database, not to a schema. Two Batons in different
schemas of one database (a staging and a production install, or the test suite, which
gives every test a schema of its own) would otherwise wait on each other's upgrades,
prunes and concurrency keys. So every lock is named by the Baton's schema
(``current_schema()``) and what it guards, and hashed to the two-int lock key:
``pg_advisory_xact_lock(CLASS, hashtext(schema || ':' || name))``. The lock is a
transaction lock: it goes with the commit or rollback.
"""

from __future__ import annotations

import sqlalchemy as sa

CLASS = 0x6261  # the first int of every Baton lock key ("ba")


def key(name: str | sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    """The second int of the lock on ``name`` in this connection's schema."""
    return sa.func.hashtext(sa.func.concat(sa.func.current_schema(), ":", name))


def hold(conn: sa.Connection, name: str) -> None:
    """Wait for, and hold until this transaction ends, the lock on ``name``."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CLASS, key(name))))
