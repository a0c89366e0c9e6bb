"""The Store's contract, on SQLite and PostgreSQL: units commit whole or not at all,
a failing unit never takes its neighbours down, claims guard writes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from engine import audit
from storage import definitions, rows
from storage import tables as t
from storage.db import create_engine, normalize_url
from storage.errors import ClaimLost, StorageError
from storage.rows import Rows
from storage.store import Store, guard, transient

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEFINITION = {"name": "p", "steps": [{"id": "s", "with": {}}]}
DIGEST = definitions.digest(DEFINITION)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with Store(db_url) as s:
        await s.write(definitions.put(DEFINITION, NOW)[1])  # what the runs here began with
        yield s


def new_run(run_id: str, epoch: int = 1) -> sa.Insert:
    return t.runs.insert().values(
        id=run_id,
        playbook="p",
        status="running",
        trigger="test",
        requested_by="me",
        created_at=NOW,
        epoch=epoch,
        definition_digest=DIGEST,
    )


async def count_runs(store: Store) -> int:
    return int(await store.scalar(sa.select(sa.func.count()).select_from(t.runs)))


async def test_a_unit_commits_all_its_ops(store: Store) -> None:
    await store.write(
        new_run("r1"), t.runs.update().where(t.runs.c.id == "r1").values(status="succeeded")
    )
    row = await store.one(sa.select(t.runs).where(t.runs.c.id == "r1"))
    assert row is not None and row.status == "succeeded"
    assert row.created_at == NOW


async def test_a_failing_unit_leaves_nothing_and_spares_its_batch(store: Store) -> None:
    await store.write(new_run("dup"))
    results = await asyncio.gather(
        store.write(new_run("a")),
        store.write(new_run("b"), new_run("dup")),  # fails on the duplicate key
        store.write(new_run("c")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sa.exc.IntegrityError)
    ids = {r.id for r in await store.all(sa.select(t.runs.c.id))}
    assert ids == {"dup", "a", "c"}


async def test_concurrent_units_share_commits(store: Store) -> None:
    before = store.commits
    await asyncio.gather(*(store.write(new_run(f"r{i}")) for i in range(200)))
    assert await count_runs(store) == 200
    assert store.commits - before < 200  # grouped: fewer commits than units


async def test_guard_refuses_a_stale_epoch(store: Store) -> None:
    await store.write(new_run("r", epoch=2))
    stale = t.runs.update().where(t.runs.c.id == "r").values(status="failed")
    with pytest.raises(ClaimLost):
        await store.write(guard("r", 1), stale)
    row = await store.one(sa.select(t.runs.c.status).where(t.runs.c.id == "r"))
    assert row is not None and row.status == "running"
    await store.write(guard("r", 2), stale)
    row = await store.one(sa.select(t.runs.c.status).where(t.runs.c.id == "r"))
    assert row is not None and row.status == "failed"


@pytest.mark.parametrize("order", ["claim first", "guarded first"])
async def test_a_claim_in_the_same_batch_fences_the_guarded_unit_beside_it(
    store: Store, order: str
) -> None:
    """The cancel of a queued run (it moves the epoch on) and a start of that run guarded
    by the old epoch, committed in one batch: exactly one of them takes effect, whichever
    came first (the guards are checked after the batch's statements)."""
    await store.write(new_run("r", epoch=1), t.runs.update().values(status="queued"))
    gate = threading.Event()

    def hold(conn: sa.Connection) -> None:  # keeps the writer busy while both queue up
        gate.wait(10)

    first = asyncio.ensure_future(store.write(hold))
    await asyncio.sleep(0)
    cancel = (
        t.runs.update()
        .where(t.runs.c.id == "r", t.runs.c.status == "queued")
        .values(epoch=2, status="cancelled")
    )
    begin = {"id": "r", "status": "running", "started_at": NOW, "deadline_at": None}
    begin |= {"owner": "starter", "epoch": 2, "lease_expires_at": None}
    units = [store.write(cancel), store.write(guard("r", 1), Rows("run_begin", [begin]))]
    if order == "guarded first":
        units.reverse()
    pending = [asyncio.ensure_future(u) for u in units]
    await asyncio.sleep(0)  # both are queued now, behind `hold`: one batch for the two
    gate.set()
    await first
    results = await asyncio.gather(*pending, return_exceptions=True)
    if order == "guarded first":
        results.reverse()
    cancelled, started = results
    row = await store.one(sa.select(t.runs.c.status, t.runs.c.owner).where(t.runs.c.id == "r"))
    assert row is not None
    if isinstance(started, ClaimLost):
        assert cancelled[0].rowcount == 1
        assert (row.status, row.owner) == ("cancelled", None)
    else:
        assert cancelled[0].rowcount == 0, "both took effect"
        assert (row.status, row.owner) == ("running", "starter")
    assert order == "guarded first" or isinstance(started, ClaimLost)


@pytest.mark.parametrize("stale", ["none", "first"])
async def test_units_guarded_on_one_run_in_one_batch_are_checked_one_by_one(
    store: Store, stale: str
) -> None:
    """Two units guarded on the same run in one batch (two starts of one queued run: a
    retry's and an admission round's on the same node) are checked each against what
    the other wrote: exactly one start takes effect, and a unit guarded by a stale epoch
    never lands. One check for the whole batch let both starts land (the run driven
    twice by one node), and checked only the last unit's epoch of a run."""
    await store.write(new_run("r", epoch=1), t.runs.update().values(status="queued"))
    gate = threading.Event()

    def hold(conn: sa.Connection) -> None:  # keeps the writer busy while both queue up
        gate.wait(10)

    def start(owner: str, epoch: int) -> Any:
        begin = {"id": "r", "status": "running", "started_at": NOW, "deadline_at": None}
        begin |= {"owner": owner, "epoch": 2, "lease_expires_at": None}
        return store.write(guard("r", epoch), Rows("run_begin", [begin]))

    first = asyncio.ensure_future(store.write(hold))
    await asyncio.sleep(0)
    units = [start("one", 0 if stale == "first" else 1), start("two", 1)]
    pending = [asyncio.ensure_future(u) for u in units]
    await asyncio.sleep(0)  # both are queued now, behind `hold`: one batch for the two
    gate.set()
    await first
    results = await asyncio.gather(*pending, return_exceptions=True)
    lost = [isinstance(r, ClaimLost) for r in results]
    row = await store.one(sa.select(t.runs.c.owner, t.runs.c.epoch).where(t.runs.c.id == "r"))
    assert row is not None
    winner = "two" if stale == "first" else "one"  # the first, unless its epoch is stale
    assert lost == [winner == "two", winner == "one"], results
    assert (row.owner, row.epoch) == (winner, 2)


async def test_times_come_back_aware_in_utc(store: Store) -> None:
    await store.write(new_run("r"))
    row = await store.one(sa.select(t.runs.c.created_at))
    assert row is not None and row.created_at.tzinfo is not None
    assert row.created_at == NOW


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("2026-01-01 00:00:00.000000", NOW),  # as SQLAlchemy writes it
        ("2026-01-01 00:00:00", NOW),  # as SQLite's CURRENT_TIMESTAMP does
        ("2026-01-01 00:00:00.250000", NOW.replace(microsecond=250000)),
        ("2026-01-01T02:00:00+02:00", NOW),  # a zone: moved to UTC
    ],
)
def test_sqlite_times_are_read_from_any_iso_text(tmp_path: Any, stored: str, read: Any) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    t.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE times (at TEXT)")
        conn.exec_driver_sql("INSERT INTO times VALUES (?)", (stored,))
        times = sa.table("times", sa.column("at", t.UTCDateTime()))
        got = conn.execute(sa.select(times.c.at)).scalar_one()
    engine.dispose()
    assert got == read and got.utcoffset() is not None and got.tzinfo == UTC


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///./x.db", "sqlite"),
        ("sqlite+aiosqlite:///./x.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+psycopg"),
    ],
    ids=["sqlite", "sqlite-aio", "postgresql", "postgres-alias", "postgresql-asyncpg"],
)
def test_plain_urls_pick_the_driver(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"], ids=["mysql", "garbage"])
def test_unsupported_urls_say_what_works(url: str) -> None:
    with pytest.raises(StorageError, match="sqlite"):
        normalize_url(url)


# --- Rows kinds that start runs: the same rows as the SQLAlchemy statements ---------

LATER = datetime(2026, 1, 1, 2, 3, 4, 567890, tzinfo=UTC)


def run_values(run_id: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "playbook": "p",
        "status": "queued",
        "attempt": 1,
        "params": {"who": 'w "q" \u00e9', "n": 3, "none": None, "list": [1, 2.5, True]},
        "secret_params": None,
        "trigger": "slack",
        "source": {"channel": "C1", "u": "\u00fc"},
        "requested_by": "me",
        "parent_run_id": None,
        "parent_step_id": None,
        "concurrency_key": "k",
        "definition_digest": DIGEST,
        "created_at": NOW,
        "queued_at": NOW,
        "started_at": None,
        "deadline_at": None,
        "owner": "baton",
        "epoch": 0,
        "lease_expires_at": LATER,
    }


AUDIT = {
    "at": LATER,
    "actor": "me",
    "action": "run",
    "target": "p",
    "source": {},
    "detail": {"run_id": "x", "params": {"a": None}},
    "outcome": "ok",
}


async def stored(store: Store, table: sa.Table, where: Any) -> tuple[Any, ...]:
    """A row as the database holds it (JSON and times as text) and as SQLAlchemy reads it."""
    text = [sa.cast(c, sa.Text) if store.dialect == "postgresql" else c for c in table.c]
    as_text: list[Any] = [sa.type_coerce(c, sa.Text) for c in text]
    raw = await store.one(sa.select(*as_text).where(where))
    row = await store.one(sa.select(table).where(where))
    assert raw is not None and row is not None
    return tuple(raw), tuple(row)


async def test_run_rows_store_what_the_statements_store(store: Store) -> None:
    begun = {
        "status": "running",
        "started_at": LATER,
        "deadline_at": LATER,
        "owner": "o",
        "lease_expires_at": LATER,
    }
    await store.write(
        t.runs.insert().values(run_values("sa")),
        t.runs.update().where(t.runs.c.id == "sa").values(**begun, epoch=1),
        t.audit.insert().values(AUDIT),
    )
    await store.write(
        Rows("run_new", [run_values("rows")]),
        Rows("run_begin", [{**begun, "epoch": 1, "id": "rows"}]),
        Rows("audit_new", [AUDIT]),
    )
    by_sa = await stored(store, t.runs, t.runs.c.id == "sa")
    by_rows = await stored(store, t.runs, t.runs.c.id == "rows")
    assert [v for v in by_rows[0] if v != "rows"] == [v for v in by_sa[0] if v != "sa"]
    assert by_rows[1][1:] == by_sa[1][1:] and by_rows[1][0] == "rows"
    assert by_rows[1][t.runs.c.keys().index("started_at")] == LATER
    audits = await store.all(sa.select(t.audit.c.id))
    first, second = [await stored(store, t.audit, t.audit.c.id == a.id) for a in audits]
    assert first[0][1:] == second[0][1:] and first[1][1:] == second[1][1:]


async def test_audit_op_is_rows_that_commit_in_any_unit(store: Store) -> None:
    def plain(conn: sa.Connection) -> str:
        conn.execute(new_run("r"))
        return "done"

    def unit(i: int) -> list[Any]:
        other = plain if i == 3 else new_run(f"r{i}")
        return [audit.op(LATER, f"u{i}", "act", "t", {"i": i}), other]

    results = await asyncio.gather(*(store.write(*unit(i)) for i in range(6)))
    assert results[3] == [None, "done"]
    trail = await store.all(sa.select(t.audit).order_by(t.audit.c.id))
    assert [(r.actor, r.detail, r.source, r.at) for r in trail] == [
        (f"u{i}", {"i": i}, {}, LATER) for i in range(6)
    ]


async def test_a_duplicate_run_fails_its_unit_as_an_integrity_error(store: Store) -> None:
    await store.write(Rows("run_new", [run_values("dup")]))
    results = await asyncio.gather(
        store.write(Rows("run_new", [run_values("a")]), audit.op(NOW, "a", "run", "p", {})),
        store.write(Rows("run_new", [run_values("dup")]), audit.op(NOW, "b", "run", "p", {})),
        store.write(Rows("run_new", [run_values("c")]), audit.op(NOW, "c", "run", "p", {})),
        return_exceptions=True,
    )
    assert isinstance(results[1], sa.exc.IntegrityError)
    assert {r.id for r in await store.all(sa.select(t.runs.c.id))} == {"dup", "a", "c"}
    assert [r.actor for r in await store.all(sa.select(t.audit).order_by(t.audit.c.id))] == [
        "a",
        "c",
    ]


def test_run_and_audit_kinds_cover_their_tables() -> None:
    """A column added to runs, audit or alerts must reach the prepared inserts
    (SQLAlchemy would fill in its default; the prepared SQL would not). How each value is
    converted is read off the column's type, so it needs no list to keep up."""
    set_later = {
        "error",
        "failed_step",
        "stop_reason",
        "stopped_by",
        "finished_at",
        "drive_failures",
    }
    assert set(rows.RUN_NEW) == set(t.runs.c.keys()) - set_later
    assert set(rows.AUDIT_NEW) == set(t.audit.c.keys()) - {"id"}
    assert set(rows.ALERT_NEW) == set(t.alerts.c.keys())


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_session_frozen_inside_a_transaction_is_ended_and_lets_go_of_its_locks(
    db_url: str,
) -> None:
    """A node frozen mid-commit (SIGSTOP, a paused VM) must not hold its locks for ever:
    with ``idle_limit`` the server ends its session, and a writer waiting on its lock
    goes on."""
    limited = create_engine(db_url, idle_limit=1)
    plain = create_engine(db_url)
    try:
        with limited.connect() as frozen:
            shown = frozen.exec_driver_sql("SHOW idle_in_transaction_session_timeout")
            assert shown.scalar() == "1s"
            frozen.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")  # in a transaction
            with plain.connect() as waiting:
                # never reached unless the frozen session goes: 30 s, not for ever, on failure
                waiting.exec_driver_sql("SET lock_timeout = '30s'")
                waiting.exec_driver_sql("SELECT pg_advisory_xact_lock(4242)")
                waiting.rollback()
            with pytest.raises(sa.exc.DBAPIError) as ended:
                frozen.exec_driver_sql("SELECT 1")
            # when the node wakes, its writer takes this as a lost connection and goes on
            assert transient(ended.value), ended.value
        with plain.connect() as other:  # the setting is the node's own, not the cluster's
            assert other.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "0"
    finally:
        limited.dispose()
        plain.dispose()
