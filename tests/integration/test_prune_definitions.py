"""Pruning playbook definitions (stored once per version, ``storage.definitions``): one
goes with the last run that refers to it, and never while a run is being started with it,
even when that run commits while the prune deletes (PostgreSQL's row locks)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from engine import retention
from storage import definitions, prune, schema
from storage import tables as t
from storage.db import create_engine
from storage.rows import RowWriter
from storage.store import Store
from tests.acceptance.serve import wait_until
from tests.integration.test_prune import AGE, LATER, finished_runs

AT = datetime(2026, 1, 1, tzinfo=UTC)
OTHER = {"name": "other", "steps": [{"id": "s", "action": "log"}]}


def start_run(conn: sa.Connection, run_id: str, definition: dict[str, Any]) -> None:
    """What admission writes for a new run, in ``conn``'s transaction: the definition's
    upsert (as the store runs it) and the run referring to it."""
    digest, put = definitions.put(definition, AT + LATER)
    RowWriter(conn.dialect.name).execute(conn, put)
    conn.execute(
        t.runs.insert().values(
            id=run_id, playbook="quick", status="queued", trigger="cli", requested_by="amy",
            created_at=AT + LATER, definition_digest=digest,
        )
    )  # fmt: skip


def stored(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(t.definitions.c.digest)).scalars())


def test_a_definition_goes_with_its_last_run_and_a_dry_run_counts_it(db_url: str) -> None:
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    finished_runs(engine, 3, AT)  # all three of the definition {}
    with engine.begin() as conn:
        start_run(conn, "young", OTHER)  # OTHER: a run younger than the age refers to it
        conn.execute(t.runs.update().values(definition_digest=definitions.digest(OTHER)).where(
            t.runs.c.id == "run0002"
        ))  # fmt: skip
    policy = retention.policy(AT + LATER, AGE, None, batch=1)  # a batch per run

    dry = prune.prune(engine, policy, dry_run=True)
    report = prune.prune(engine, policy, pause=lambda _: None)

    assert (report.counts["runs"], report.error) == (3, None)
    assert dry.counts["definitions"] == report.counts["definitions"] == 1
    assert stored(engine) == {definitions.digest(OTHER)}  # the young run's is kept
    engine.dispose()


def test_a_definition_a_run_takes_between_the_look_and_the_delete_is_kept(db_url: str) -> None:
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    finished_runs(engine, 1, AT)
    started: list[str] = []

    def start_one(conn: sa.Connection, cursor: Any, statement: str, *rest: Any) -> None:
        if started or not statement.startswith("SELECT definitions.digest"):
            return
        started.append("new")  # the look found {} unused; the delete is still to come
        with engine.begin() as other:
            start_run(other, "new", {})

    sa.event.listen(engine, "after_cursor_execute", start_one)
    report = prune.prune(engine, retention.policy(AT + LATER, AGE, None), pause=lambda _: None)
    assert started == ["new"]
    assert (report.counts["runs"], report.counts["definitions"], report.error) == (1, 0, None)
    assert stored(engine) == {definitions.digest({})}
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_run_starting_while_its_definition_is_deleted_keeps_it(db_url: str) -> None:
    """The run's transaction has stored its definition (moving ``used_at`` on) but not
    committed when the prune's delete reaches the row: the delete waits for it, then
    finds the row moved on, and keeps it."""
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    finished_runs(engine, 1, AT)
    admission = engine.connect()
    trans = admission.begin()
    done = threading.Event()
    started: list[str] = []

    def waiting_for_a_lock() -> bool:
        with engine.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND starts_with(query, 'DELETE FROM definitions')"
            )
            return bool(conn.exec_driver_sql(query).scalar())

    def commit_once_the_prune_waits() -> None:
        try:
            wait_until(waiting_for_a_lock, what="the prune's delete waiting on the row")
            done.set()
        finally:  # the run commits (and the prune goes on) whatever happened
            trans.commit()

    def start_one(conn: sa.Connection, cursor: Any, statement: str, *rest: Any) -> None:
        if started or not statement.startswith("SELECT definitions.digest"):
            return
        started.append("new")  # the look found {} unused; the delete is still to come
        start_run(admission, "new", {})  # its definition stored, nothing committed yet
        committer.start()

    committer = threading.Thread(target=commit_once_the_prune_waits)
    sa.event.listen(engine, "after_cursor_execute", start_one)
    report = prune.prune(engine, retention.policy(AT + LATER, AGE, None), pause=lambda _: None)
    committer.join()
    admission.close()
    assert done.is_set()
    assert (report.counts["runs"], report.counts["definitions"], report.error) == (1, 0, None)
    with engine.connect() as conn:
        run = conn.execute(sa.select(t.runs.c.definition_digest)).scalar_one()
    assert stored(engine) == {run}
    engine.dispose()


async def test_a_definition_is_stored_once_and_each_run_moves_its_used_at_on(db_url: str) -> None:
    later = AT + LATER
    async with Store(db_url) as store:
        # two units in one group commit, and one on its own later: one row, the last time
        await asyncio.gather(*(store.write(definitions.put(OTHER, AT)[1]) for _ in range(2)))
        digest, put = definitions.put(OTHER, later)
        await store.write(put, definitions.put(OTHER, AT)[1])  # one unit, twice: the last
        rows = await store.all(sa.select(t.definitions))
        assert [(r.digest, r.body, r.used_at) for r in rows] == [(digest, OTHER, AT)]
        await store.write(put)
        assert await store.scalar(sa.select(t.definitions.c.used_at)) == later
        assert await definitions.read(store, digest) == OTHER
