"""Lists a page at a time (keyset paging): ``GET /api/runs`` and ``GET /api/alerts``
follow ``Link: <...>; rel="next"`` to the end, every row once, newest first, filters kept;
a cursor not given out is a 400 that says what to do. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.timing import ManualClock, ManualTimers
from engine.views import paging
from storage import definitions
from storage import tables as t

Client = TestClient[Any, Any]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Client, Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    settings = Settings(database_url=db_url, playbooks=folder, key_file=tmp_path / "key")
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton
        finally:
            await client.close()


def _run(i: int, at: datetime, **values: Any) -> dict[str, Any]:
    return {
        "id": f"r{i:04d}", "playbook": "deploy", "status": "succeeded", "params": {},
        "trigger": "api", "source": {}, "requested_by": "ann",
        "definition_digest": definitions.digest({}),
        "created_at": at, "finished_at": at, **values,
    }  # fmt: skip


async def _insert_runs(baton: Baton) -> list[dict[str, Any]]:
    """17 finished runs: some share a created_at (the id breaks the tie), some of another
    playbook, status, trigger or person."""
    rows = [
        _run(
            i,
            T0 + timedelta(seconds=i // 3),  # three runs a second: ties
            playbook=("deploy", "backup")[i % 2],
            status=("succeeded", "failed", "cancelled")[i % 3],
            trigger=("api", "schedule")[i % 4 == 0],
            requested_by=("ann", "bob", "cy")[i % 3],
        )
        for i in range(17)
    ]
    await baton.store.write(definitions.put({}, T0)[1])  # the definition the runs refer to
    await baton.store.write(t.runs.insert().values(rows))
    return rows


def _newest_first(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]


async def _follow(client: Client, url: str) -> tuple[list[list[str]], list[str]]:
    """Every page from ``url`` on, following the next links; and the links."""
    pages, links = [], []
    while True:
        resp = await client.get(url)
        assert resp.status == 200, await resp.text()
        pages.append([r["id"] for r in await resp.json()])
        link = resp.headers.get("Link")
        if link is None:
            return pages, links
        match = LINK.match(link)
        assert match, link
        url = match["url"]
        links.append(url)


@pytest.mark.parametrize(
    "query",
    ["", "playbook=backup", "status=failed", "trigger=schedule", "requested_by=bob",
     "playbook=deploy&status=succeeded"],
    ids=["all", "playbook", "status", "trigger", "requested_by", "two-filters"],
)  # fmt: skip
async def test_runs_page_by_page_with_their_filters(
    served: tuple[Client, Baton], query: str
) -> None:
    client, baton = served
    rows = await _insert_runs(baton)
    wanted = dict(p.split("=") for p in query.split("&") if p)
    expected = _newest_first([r for r in rows if all(r[k] == v for k, v in wanted.items())])

    pages, links = await _follow(client, f"/api/runs?limit=2&{query}")

    assert [i for page in pages for i in page] == expected
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    assert all(f"&{query}" in link or not query for link in links)  # filters and limit kept
    assert all(link.startswith("/api/runs?limit=2") for link in links)


async def test_a_page_does_not_shift_when_newer_runs_arrive(served: tuple[Client, Baton]) -> None:
    client, baton = served
    rows = await _insert_runs(baton)
    first = await client.get("/api/runs?limit=5")
    link = LINK.match(first.headers["Link"])
    assert link is not None
    await baton.store.write(t.runs.insert().values([_run(99, T0 + timedelta(days=1))]))

    second = await client.get(link["url"])

    assert [r["id"] for r in await second.json()] == _newest_first(rows)[5:10]


async def test_the_last_page_has_no_next_link(served: tuple[Client, Baton]) -> None:
    client, baton = served
    rows = await _insert_runs(baton)
    resp = await client.get("/api/runs?limit=17")
    assert len(await resp.json()) == len(rows)
    assert "Link" not in resp.headers


@pytest.mark.parametrize(
    "cursor",
    ["nonsense!", paging.encode("alerts", "a1"), paging.encode("runs", "yesterday", "r1"),
     paging.encode("runs", "2026-03-01T00:00:00", "r1"), "W10", ""],
    ids=["garbage", "of-alerts", "not-a-time", "naive-time", "wrong-shape", "empty"],
)  # fmt: skip
async def test_a_cursor_not_given_out_is_a_400_that_says_what_to_do(
    served: tuple[Client, Baton], cursor: str
) -> None:
    client, baton = served
    await _insert_runs(baton)
    resp = await client.get("/api/runs", params={"cursor": cursor})
    if cursor == "":  # an empty cursor is no cursor: the first page
        assert resp.status == 200
        return
    assert resp.status == 400
    assert "leave it out to start again from the newest" in (await resp.json())["error"]


async def test_alerts_page_by_page(served: tuple[Client, Baton]) -> None:
    client, baton = served
    alerts = [
        {"id": f"a{i:03d}", "source": "generic", "fingerprint": f"f{i}", "status": "firing",
         "received_at": T0, "outcome": ("held", "started")[i % 2]}
        for i in range(7)
    ]  # fmt: skip
    await baton.store.write(t.alerts.insert().values(alerts))

    pages, _ = await _follow(client, "/api/alerts?limit=2&outcome=held")
    everything, _ = await _follow(client, "/api/alerts?limit=3")

    assert pages == [["a006", "a004"], ["a002", "a000"]]
    assert [i for p in everything for i in p] == [f"a{i:03d}" for i in reversed(range(7))]
    bad = await client.get("/api/alerts", params={"cursor": paging.encode("runs", "x", "y")})
    assert bad.status == 400
