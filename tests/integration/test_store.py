"""The Store's contract, on SQLite and PostgreSQL: units commit whole or not at all,
a failing unit never takes its neighbours down, claims guard writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from storage import tables as t
from storage.db import normalize_url
from storage.errors import ClaimLost, StorageError
from storage.store import Store, guard

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with Store(db_url) as s:
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


async def test_times_come_back_aware_in_utc(store: Store) -> None:
    await store.write(new_run("r"))
    row = await store.one(sa.select(t.runs.c.created_at))
    assert row is not None and row.created_at.tzinfo is not None
    assert row.created_at == NOW


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
