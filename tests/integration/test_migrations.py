"""Schema migrations on real SQLite files and the real PostgreSQL server: a database of
Baton schema 3 (before Alembic) upgraded without losing a row, and its runs going on; a
database at each revision upgraded to head; the revisions producing exactly the tables of
``storage.tables``; refusals; two upgrades at once on one PostgreSQL database."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from storage import definitions, locks, migrations, schema
from storage.db import create_engine
from storage.store import Store
from tests import schema3
from tests.acceptance.serve import wait_until
from tests.conftest import PG_URL, HarnessFactory
from tests.integration import support as s
from tests.schema3.playbooks import PLAYBOOKS


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    made = create_engine(db_url)
    yield made
    made.dispose()


def at_revision(engine: sa.Engine, revision: str) -> None:
    """A database made by running the revisions up to ``revision``."""
    with schema._changing(engine) as conn:
        migrations.upgrade(conn, revision)


# How to fill a database at each revision with runs in every status, using only what that
# revision has. A new revision's author adds its line (rows written with the columns of
# that revision), and the test below upgrades that database to head too.
def _fill_0002(engine: sa.Engine) -> None:
    """The schema 3 rows (kept as they are: the test compares them), with what
    0002_run_leases added: a node and a command waiting in a run's inbox."""
    schema3.fill(engine)
    meta = sa.MetaData()
    meta.reflect(engine, only=["runs", "run_commands", "nodes"])
    runs, commands, nodes = (meta.tables[n] for n in ("runs", "run_commands", "nodes"))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        waiting = sa.select(runs.c.id).where(runs.c.status == "waiting").limit(1)
        conn.execute(
            commands.insert().values(
                run_id=conn.execute(waiting).scalar_one(), attempt=1, kind="cancel",
                payload={}, by="ann", created_at=at, state="pending",
            )
        )  # fmt: skip
        conn.execute(
            nodes.insert().values(
                id="host:1:ab", kind="serve", host="host", pid=1, started_at=at, heartbeat_at=at
            )
        )


FILLED_AT: dict[str, Callable[[sa.Engine], None]] = {
    "0001_schema_3": schema3.fill,
    "0002_run_leases": _fill_0002,
    "0003_paging_indexes": _fill_0002,  # indexes only: the same rows fit
    "0004_run_commands_run": _fill_0002,  # an index only: the same rows fit
    "0005_dashboard_sessions": _fill_0002,  # 0006 adds a table: the same rows fit
    "0006_step_items": _fill_0002,  # 0007 adds the job queue (PostgreSQL): the same rows fit
    "0007_job_queue": _fill_0002,  # 0008 adds a nullable column: the same rows fit
    "0008_alert_node": _fill_0002,  # 0009 moves runs' definitions to a table of their own
}


async def test_a_schema_3_database_is_upgraded_keeping_every_row_and_its_runs_go_on(
    engine: sa.Engine, harness: HarnessFactory
) -> None:
    schema3.create(engine)
    schema3.fill(engine)
    assert schema.current(engine) == schema.State("legacy", legacy=3)
    with pytest.raises(schema.SchemaOutdated, match=r"run `baton db upgrade`"):
        schema.prepare(engine, upgrade=False)

    schema.prepare(engine, upgrade=True)  # what `baton serve` does at start

    assert schema.current(engine) == schema.State("head", schema.HEAD)
    assert schema3.missing_rows(engine) == []
    with engine.connect() as conn:
        fence = conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar()
    assert fence == schema.FENCE  # a Baton of schema 3 now refuses this database

    # the engine takes the database over: the gate gets its second approval and the run
    # finishes; the step that was running when the old engine stopped is interrupted
    h = await harness(PLAYBOOKS)
    ids = schema3.run_ids()
    gate = await s.approval_id(h, ids["gate/waiting"], "ask")
    result = await h.engine.decide(gate, "carol", "approve")
    assert result.status == "approved"
    await h.engine.wait_idle()
    assert (await h.run_row(ids["gate/waiting"])).status == "succeeded"
    assert await h.statuses(ids["gate/waiting"]) == {"ask": "succeeded", "after": "succeeded"}
    assert (await h.run_row(ids["busy/running"])).status == "failed"
    assert (await h.statuses(ids["busy/running"]))["work"] == "interrupted"
    assert (await h.run_row(ids["hold/queued"])).status == "queued"
    assert len(await h.schedules.list()) == 1
    fresh = await h.run("quick")
    assert (await h.run_row(fresh)).status == "succeeded"


@pytest.mark.parametrize("revision", sorted(FILLED_AT))
async def test_a_database_at_each_revision_is_upgraded_keeping_every_row(
    engine: sa.Engine, db_url: str, revision: str
) -> None:
    at_revision(engine, revision)
    FILLED_AT[revision](engine)
    expected = "head" if revision == schema.HEAD else "behind"
    assert schema.current(engine).kind == expected

    change = schema.upgrade(engine)

    assert (change.before.kind, change.after) == (expected, schema.HEAD)
    assert schema3.missing_rows(engine) == []
    async with Store(db_url) as store:
        statuses = {r.status for r in await store.all(sa.text("SELECT status FROM runs"))}
    assert statuses == schema3.STATUSES


@pytest.mark.parametrize("made", ["by the revisions", "by Baton schema 3, then upgraded"])
def test_the_revisions_make_exactly_the_tables_of_storage_tables(
    engine: sa.Engine, made: str
) -> None:
    """`alembic check`: autogenerate finds nothing to write. Fails when a table of
    storage/tables.py changed without a revision."""
    if made == "by the revisions":
        schema.prepare(engine, upgrade=False)  # an empty database: runs the revisions
    else:
        schema3.create(engine)
        schema.upgrade(engine)
    with engine.connect() as conn:
        assert migrations.differences(conn) == []


def test_the_head_constant_is_alembics_head() -> None:
    assert migrations.head() == schema.HEAD
    first = migrations.script().get_revision(schema.FIRST)
    assert first is not None and first.down_revision is None


def test_an_empty_database_is_created_at_head_by_any_command(engine: sa.Engine) -> None:
    assert schema.current(engine).kind == "empty"
    schema.prepare(engine, upgrade=False)
    assert schema.current(engine) == schema.State("head", schema.HEAD)
    with engine.connect() as conn:
        fence = conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar()
        # on PostgreSQL, in the schema of the search_path, like the tables
        assert {"alembic_version", "runs"} <= set(sa.inspect(conn).get_table_names())
    assert fence == schema.FENCE


def test_a_revision_this_baton_does_not_know_is_not_taken_for_one_it_knows() -> None:
    assert migrations.known(schema.HEAD)
    assert not migrations.known(schema.HEAD[:4])  # Alembic would resolve a prefix
    assert not migrations.known("0099_from_the_future")


def test_a_database_newer_than_this_baton_is_refused(engine: sa.Engine) -> None:
    schema.prepare(engine, upgrade=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    for attempt in (
        lambda: schema.prepare(engine, upgrade=False),
        lambda: schema.prepare(engine, upgrade=True),
        lambda: schema.upgrade(engine),
    ):
        with pytest.raises(schema.SchemaTooNew, match=r"0099_from_the_future.*upgrade Baton"):
            attempt()


def test_schema_version_above_the_fence_is_refused_too(engine: sa.Engine) -> None:
    schema3.create(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO schema_version (version) VALUES (5)")
    with pytest.raises(schema.SchemaTooNew, match=r"\(schema version 5\).*upgrade Baton"):
        schema.prepare(engine, upgrade=True)


def test_a_legacy_database_lacking_a_table_is_not_stamped(engine: sa.Engine) -> None:
    schema3.create(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alert_runs")
    with pytest.raises(
        schema.SchemaBroken, match="says schema 3, but it lacks the tables alert_runs"
    ):
        schema.upgrade(engine)
    assert schema.current(engine).kind == "broken"
    with engine.connect() as conn:
        assert "alembic_version" not in sa.inspect(conn).get_table_names()


def test_a_database_of_an_earlier_schema_is_not_upgraded(engine: sa.Engine) -> None:
    schema3.create(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_version SET version = 2")
    with pytest.raises(schema.SchemaBroken, match=r"early Baton \(schema 2\).*schema 3 on it"):
        schema.prepare(engine, upgrade=True)


def test_a_failed_upgrade_changes_nothing(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema3.create(engine)

    def broken(conn: sa.Connection, target: str = "head") -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("a revision failed")

    monkeypatch.setattr(migrations, "upgrade", broken)
    with pytest.raises(RuntimeError):
        schema.upgrade(engine)
    assert schema.current(engine) == schema.State("legacy", legacy=3)
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    assert "half_done" not in names and "alembic_version" not in names


# --- two servers upgrading one PostgreSQL database at once --------------------------


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own (the advisory lock is database-wide)."""
    name = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def _in_threads(urls: list[str], fn: Callable[[sa.Engine], Any]) -> list[Any]:
    engines = [create_engine(u) for u in urls]
    barrier = threading.Barrier(len(engines))
    results: list[Any] = [None] * len(engines)

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(engines[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in engines:
        e.dispose()
    return results


@pytest.mark.postgres
@pytest.mark.parametrize("start", ["empty", "schema 3"])
def test_two_servers_upgrading_at_once_take_turns(pg_database: str, start: str) -> None:
    if start == "schema 3":
        made = create_engine(pg_database)
        schema3.create(made)
        schema3.fill(made)
        made.dispose()
    changes = _in_threads([pg_database, pg_database], schema.upgrade)
    assert not [c for c in changes if isinstance(c, Exception)], changes
    kinds = sorted(c.before.kind for c in changes)
    assert kinds == sorted(["head", "empty" if start == "empty" else "legacy"])  # one upgrade
    check = create_engine(pg_database)
    try:
        assert schema.current(check) == schema.State("head", schema.HEAD)
        if start == "schema 3":
            assert schema3.missing_rows(check) == []
    finally:
        check.dispose()


@pytest.mark.postgres
def test_an_upgrade_waits_for_the_advisory_lock(pg_database: str) -> None:
    """While another server holds the upgrade lock, an upgrade waits for it (seen in
    pg_locks), then finds the database at head."""
    first, second = create_engine(pg_database), create_engine(pg_database)
    result: list[Any] = []
    try:
        with first.connect() as holder, holder.begin():
            locks.hold(holder, "upgrade")
            schema._apply(holder, schema.inspect(holder))  # creates it, under the lock
            waiter = threading.Thread(target=lambda: result.append(schema.upgrade(second)))
            waiter.start()
            waiting = sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            with first.connect() as probe:

                def blocked() -> bool:
                    probe.rollback()  # a fresh snapshot of pg_locks
                    return bool(probe.execute(waiting).scalar())

                wait_until(blocked, what="the second upgrade waiting for the lock")
            assert not result
        waiter.join(30)
        assert [c.before.kind for c in result] == ["head"]
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_batons_in_two_schemas_of_one_database_do_not_wait_on_each_other(
    pg_database: str,
) -> None:
    """Advisory locks belong to the database; Baton names its own by its schema, so an
    upgrade held open in one schema does not hold up an upgrade in another."""
    admin = create_engine(pg_database)
    with admin.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA one")
        conn.exec_driver_sql("CREATE SCHEMA two")
    first = create_engine(f"{pg_database}?options=-csearch_path%3Done")
    second = create_engine(f"{pg_database}?options=-csearch_path%3Dtwo")
    try:
        with first.connect() as holder, holder.begin():
            locks.hold(holder, "upgrade")
            change = schema.upgrade(second)  # would wait forever on a database-wide key
            assert change.before.kind == "empty"
            assert schema.current(second) == schema.State("head", schema.HEAD)
    finally:
        for engine in (first, second, admin):
            engine.dispose()


def _runs_and_definitions(engine: sa.Engine) -> tuple[list[Any], dict[str, Any]]:
    meta = sa.MetaData()
    with engine.connect() as conn:
        meta.reflect(conn)
        runs = conn.execute(sa.select(meta.tables["runs"])).all()
        stored = {}
        if "definitions" in meta.tables:
            stored = {r.digest: r for r in conn.execute(sa.select(meta.tables["definitions"]))}
    return runs, stored


def test_0009_stores_each_definition_once_and_a_downgrade_gives_runs_their_copies_back(
    engine: sa.Engine,
) -> None:
    at_revision(engine, "0008_alert_node")
    _fill_0002(engine)
    old, _ = _runs_and_definitions(engine)
    copies = {r.id: r.definition for r in old}
    distinct = {definitions.canonical(d) for d in copies.values()}
    assert len(old) > len(distinct) > 1  # some runs share a definition

    schema.upgrade(engine)

    runs, stored = _runs_and_definitions(engine)
    assert "definition" not in runs[0]._fields
    assert len(stored) == len(distinct)
    for run in runs:
        assert stored[run.definition_digest].body == copies[run.id]
        assert run.definition_digest == definitions.digest(copies[run.id])  # as Baton takes it
    newest = {d: max(r.created_at for r in runs if r.definition_digest == d) for d in stored}
    assert {d: row.used_at for d, row in stored.items()} == newest

    with schema._changing(engine) as conn:
        command.downgrade(migrations.config(conn), "0008_alert_node")
    back, stored = _runs_and_definitions(engine)
    assert stored == {} and {r.id: r.definition for r in back} == copies
