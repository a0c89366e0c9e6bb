"""What the database plans to do with a statement: ``EXPLAIN QUERY PLAN`` on SQLite,
``EXPLAIN`` on PostgreSQL. Tests check that the hot statements search an index, and the
history bench prints the plans over a large table."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

_PREFIX = {"sqlite": "EXPLAIN QUERY PLAN ", "postgresql": "EXPLAIN "}


def explain(conn: sa.Connection, statement: sa.Executable, params: Any = None) -> list[str]:
    """The plan of ``statement`` with ``params`` (bound as a run would bind them), one
    line per step; nothing is executed."""
    prefix = _PREFIX[conn.dialect.name]

    def before(conn_: Any, cursor: Any, text: str, *rest: Any) -> tuple[str, Any]:
        return prefix + text, rest[0]

    sa.event.listen(conn, "before_cursor_execute", before, retval=True)
    try:
        rows = conn.execute(statement, params).all()
    finally:
        sa.event.remove(conn, "before_cursor_execute", before)
    if conn.dialect.name == "sqlite":
        return [str(r[-1]) for r in rows]  # (id, parent, notused, detail)
    return [str(r[0]) for r in rows]
