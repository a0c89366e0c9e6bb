"""``baton db stats``: how big the database is, table by table, and how far back it goes.

Bytes per table count the table and its indexes. On SQLite they come from the ``dbstat``
virtual table (exact, pages in use); a SQLite built without it gets an estimate instead:
the file's pages shared out by each table's share of the rows. On PostgreSQL they are
``pg_total_relation_size`` (table, indexes and TOAST).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from storage import tables as t


@dataclass(frozen=True)
class TableSize:
    name: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class Sizes:
    tables: list[TableSize]
    oldest_run: datetime | None  # created_at of the oldest run kept
    estimated: bool  # bytes shared out by rows (SQLite without dbstat)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.tables)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.tables)


def measure(engine: sa.Engine) -> Sizes:
    with engine.connect().execution_options(baton_read=True) as conn, conn.begin():
        names = sorted(sa.inspect(conn).get_table_names())
        rows = {name: _count(conn, name) for name in names}
        estimated = False
        if conn.dialect.name == "sqlite":
            try:
                size = _sqlite_dbstat(conn)
            except sa.exc.OperationalError:  # no such table: dbstat
                size, estimated = _sqlite_estimate(conn, rows), True
        else:
            size = _postgresql(conn)
        oldest = conn.execute(sa.select(sa.func.min(t.runs.c.created_at))).scalar()
    sizes = [TableSize(name, rows[name], size.get(name, 0)) for name in names]
    return Sizes(sizes, oldest, estimated)


def _count(conn: sa.Connection, name: str) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar() or 0)


def _sqlite_dbstat(conn: sa.Connection) -> dict[str, int]:
    """Bytes of pages in use per table, its indexes included."""
    rows = conn.exec_driver_sql(
        "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat AS s "
        "LEFT JOIN sqlite_schema AS m ON m.name = s.name GROUP BY 1"
    )
    return {str(name): int(size) for name, size in rows}


def _sqlite_estimate(conn: sa.Connection, rows: dict[str, int]) -> dict[str, int]:
    page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
    pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    total = sum(rows.values()) or 1
    return {name: page_size * pages * n // total for name, n in rows.items()}


def _postgresql(conn: sa.Connection) -> dict[str, int]:
    rows = conn.exec_driver_sql(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class AS c "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
    )
    return {str(name): int(size) for name, size in rows}


def human(size: int) -> str:
    """1536 -> '1.5 kB'."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
