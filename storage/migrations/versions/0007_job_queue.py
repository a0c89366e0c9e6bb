"""The job queue of workers (``runs_on``): procrastinate's tables, types and functions,
on PostgreSQL only (SQLite has no workers: ``runs_on`` is refused there). Installed
from the procrastinate that Baton pins (pyproject: 3.10.x), which owns that SQL; moving
to a newer procrastinate means adding its SQL migrations as a revision of their own.
Downgrade drops them, with the jobs in them.

Revision ID: 0007_job_queue
Revises: 0006_step_items
"""

from __future__ import annotations

from importlib import resources

from alembic import op

revision = "0007_job_queue"
down_revision: str | None = "0006_step_items"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    exists = bind.exec_driver_sql("SELECT to_regclass('procrastinate_jobs')").scalar()
    if exists is not None:  # installed by hand before Baton did it
        return
    schema = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    driver = bind.connection.driver_connection
    assert driver is not None
    driver.execute(schema)  # no parameters: the SQL's own % signs are left alone


DROP_FUNCTIONS = """
DO $$ DECLARE f record; BEGIN
  FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proname LIKE 'procrastinate%' AND n.nspname = current_schema() LOOP
    EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE';
  END LOOP;
END $$
"""


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    driver = bind.connection.driver_connection
    assert driver is not None
    driver.execute(DROP_FUNCTIONS)
    for table in ("events", "periodic_defers", "jobs", "workers"):
        driver.execute(f"DROP TABLE IF EXISTS procrastinate_{table} CASCADE")
    for kind in ("job_status", "job_event_type", "job_to_defer_v1"):
        driver.execute(f"DROP TYPE IF EXISTS procrastinate_{kind} CASCADE")
