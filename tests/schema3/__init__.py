"""A database as Baton of schema 3 (the last before Alembic) left it, frozen so that it
stays schema 3 whatever ``storage.tables`` becomes:

- ``sqlite.sql`` / ``postgresql.sql``: the DDL its ``SQLModel.metadata.create_all`` ran
  (compiled from storage/tables.py at schema 3), with a ``schema_version`` row of 3;
- ``rows.json``: rows its engine wrote (tests/schema3/playbooks.py, ManualClock time):
  runs in every status (queued, running, waiting: one on a retry, one on an approval
  with one decision of two, succeeded, failed, cancelled, timed_out), their steps,
  attempts, logs and audit, a cron schedule, an alert and its run, a chat post and a Slack
  event id. ``running`` is a shell step that was running when the engine stopped.

The same rows fit a database at revision 0001_schema_3 (which is schema 3 written out).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

HERE = Path(__file__).parent
ROWS: dict[str, list[dict[str, Any]]] = json.loads((HERE / "rows.json").read_text())
STATUSES = {"queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"}


def create(engine: sa.Engine) -> None:
    """Make the database the way Baton of schema 3 did."""
    ddl = (HERE / f"{engine.dialect.name}.sql").read_text()
    statements = [_uncomment(s) for s in ddl.split(";\n")]
    with engine.begin() as conn:
        for statement in statements:
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql("INSERT INTO schema_version (version) VALUES (3)")


def _uncomment(statement: str) -> str:
    return "\n".join(line for line in statement.splitlines() if not line.startswith("--"))


def fill(engine: sa.Engine) -> None:
    """Insert the frozen rows (into whatever tables the database has at schema 3)."""
    meta = sa.MetaData()
    meta.reflect(engine, only=list(ROWS))
    with engine.begin() as conn:
        for table in meta.sorted_tables:  # runs before the rows that point to them
            if ROWS[table.name]:
                conn.execute(sa.insert(table), [_load(engine, r) for r in ROWS[table.name]])
        if engine.dialect.name == "postgresql":  # as if the rows had taken their ids
            for name, rows in ROWS.items():
                if "id" in meta.tables[name].c and isinstance(rows[0]["id"], int):
                    top = max(r["id"] for r in rows)
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), {top})"
                    )


def _load(engine: sa.Engine, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict) and set(value) == {"$dt"}:
            moment = datetime.fromisoformat(value["$dt"])
            value = moment if engine.dialect.name == "sqlite" else moment.replace(tzinfo=UTC)
        out[key] = value
    return out


def missing_rows(engine: sa.Engine) -> list[str]:
    """Every frozen row that the database no longer has as it was (new columns may have
    joined it; the old ones must hold the same values). A run's ``definition``, moved to
    the table ``definitions`` by 0009_definitions, is read from there by its digest."""
    meta = sa.MetaData()
    meta.reflect(engine)
    lost = []
    with engine.connect() as conn:
        for name, rows in ROWS.items():
            table = meta.tables[name]
            keys = [c.name for c in table.primary_key.columns]
            have = {
                tuple(r[k] for k in keys): {k: _plain(v) for k, v in r.items()}
                for r in conn.execute(sa.select(table)).mappings()
            }
            if "definition_digest" in table.c:
                defs = meta.tables["definitions"]
                bodies = dict(conn.execute(sa.select(defs.c.digest, defs.c.body)).all())
                for found in have.values():
                    found["definition"] = bodies.get(found["definition_digest"])
            for row in rows:
                found = have.get(tuple(row[k] for k in keys))
                wanted = {k: _plain(_load(engine, row)[k]) for k in row}
                if found is None or any(found.get(k) != v for k, v in wanted.items()):
                    lost.append(f"{name} {[row[k] for k in keys]}: {found}")
    return lost


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat()
    return value


def run_ids() -> dict[str, str]:
    """Run id by playbook and status, e.g. ``gate/waiting``."""
    return {f"{r['playbook']}/{r['status']}": r["id"] for r in ROWS["runs"]}
