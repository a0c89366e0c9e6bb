"""Shared fixtures. ``db_url`` runs a test on SQLite and on PostgreSQL (127.0.0.1:5432,
database ``test``), each test in a fresh database or schema; there is no silent skip:
PostgreSQL being down fails the PostgreSQL half."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.fakes.sshd import Sshd, start_sshd
from tests.harness import Harness, open_harness

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'baton.db'}"
        return
    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def harness(tmp_path: Path, db_url: str) -> AsyncIterator[HarnessFactory]:
    opened: list[Harness] = []

    async def make(playbooks: dict[str, str], secrets: dict[str, str] | None = None) -> Harness:
        h = await open_harness(tmp_path, db_url, playbooks, secrets)
        opened.append(h)
        return h

    yield make
    for h in opened:
        h.schedules.stop()
        await h.engine.stop(drain=0)
        h.events.close()
        await h.store.close()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 for the whole session (``tests.fakes.sshd``)."""
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
