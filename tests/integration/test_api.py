"""The HTTP API through a real aiohttp server, on SQLite and PostgreSQL."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.timing import ManualClock, ManualTimers
from storage import tables as t

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

HELLO = """
name: hello
description: Say hello.
params:
  who: {type: string, required: true, help: who to greet}
  times: {type: int, default: 1, min: 1, max: 3}
steps:
  - id: greet
    action: shell
    with: {argv: [echo, "hello {{ params.who }} x{{ params.times }}"]}
"""


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[TestClient[Any, Any], Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "hello.yaml").write_text(textwrap.dedent(HELLO))
    settings = Settings(
        database_url=db_url, playbooks=folder, api_token=TOKEN, key_file=tmp_path / "key"
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton
        finally:
            await client.close()


async def test_healthz(served: tuple[TestClient[Any, Any], Baton]) -> None:
    client, _ = served
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_post_run_creates_a_run_that_completes(
    served: tuple[TestClient[Any, Any], Baton],
) -> None:
    client, baton = served
    resp = await client.post(
        "/api/runs",
        json={"playbook": "hello", "params": {"who": "ops", "times": "2"}},
        headers=AUTH,
    )
    assert resp.status == 201
    run_id = (await resp.json())["id"]
    await baton.engine.wait_for(run_id)

    run = await (await client.get(f"/api/runs/{run_id}")).json()
    assert set(run) >= {
        "id",
        "playbook",
        "status",
        "params",
        "trigger",
        "requested_by",
        "created_at",
        "started_at",
        "finished_at",
        "steps",
    }
    assert run["status"] == "succeeded"
    assert run["trigger"] == "api"
    assert run["params"] == {"who": "ops", "times": 2}
    [step] = run["steps"]
    assert set(step) >= {"id", "status", "attempts", "output", "error", "started_at", "finished_at"}
    assert step["output"]["stdout"] == "hello ops x2\n"

    listed = await (await client.get("/api/runs")).json()
    assert [r["id"] for r in listed] == [run_id]
    audit = await baton.store.all(sa.select(t.audit.c.action, t.audit.c.target))
    assert ("run", "hello") in [tuple(a) for a in audit]


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"Authorization": "Basic x"}, 401)],
    ids=["no-token", "wrong-token", "wrong-scheme"],
)
async def test_writes_need_the_token(
    served: tuple[TestClient[Any, Any], Baton], headers: dict[str, str], status: int
) -> None:
    client, baton = served
    resp = await client.post("/api/runs", json={"playbook": "hello"}, headers=headers)
    assert resp.status == status
    assert "token" in (await resp.json())["error"]
    assert await baton.store.scalar(sa.select(sa.func.count()).select_from(t.runs)) == 0


async def test_writes_refused_without_a_configured_token(tmp_path: Path, db_url: str) -> None:
    settings = Settings(database_url=db_url, playbooks=tmp_path, key_file=tmp_path / "key")
    clock = ManualClock()
    async with (
        open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton,
        TestClient(TestServer(api.create_app(settings, baton))) as client,
    ):
        resp = await client.post("/api/runs", json={"playbook": "x"}, headers=AUTH)
        assert resp.status == 403
        assert "BATON_API_TOKEN" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"playbook": "helo", "params": {"who": "x"}}, 404, "Did you mean 'hello'"),
        ({"playbook": "hello", "params": {}}, 400, "who"),
        ({"playbook": "hello", "params": {"who": "x", "times": 9}}, 400, "times"),
        ({"playbook": "hello", "params": {"who": "x", "tims": 2}}, 400, "times"),
        ({"params": {}}, 400, "playbook"),
        ({"playbook": "hello", "params": [1]}, 400, "params"),
    ],
    ids=[
        "unknown-playbook",
        "missing-param",
        "out-of-range",
        "unknown-param",
        "no-playbook",
        "params-not-object",
    ],
)
async def test_bad_requests_get_clear_messages_and_write_nothing(
    served: tuple[TestClient[Any, Any], Baton], body: dict[str, Any], status: int, needle: str
) -> None:
    client, baton = served
    resp = await client.post("/api/runs", json=body, headers=AUTH)
    assert resp.status == status
    assert needle in (await resp.json())["error"]
    assert await baton.store.scalar(sa.select(sa.func.count()).select_from(t.runs)) == 0


async def test_malformed_json_is_400(served: tuple[TestClient[Any, Any], Baton]) -> None:
    client, _ = served
    resp = await client.post("/api/runs", data=b"{not json", headers=AUTH)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]


async def test_unknown_run_is_404(served: tuple[TestClient[Any, Any], Baton]) -> None:
    client, _ = served
    resp = await client.get("/api/runs/nope")
    assert resp.status == 404
    assert "nope" in (await resp.json())["error"]


async def test_dry_run_plans_without_running(served: tuple[TestClient[Any, Any], Baton]) -> None:
    client, baton = served
    resp = await client.post(
        "/api/runs",
        json={"playbook": "hello", "params": {"who": "x"}, "dry_run": True},
        headers=AUTH,
    )
    assert resp.status == 200
    assert (await resp.json())["waves"] == [["greet"]]
    assert await baton.store.scalar(sa.select(sa.func.count()).select_from(t.runs)) == 0


async def test_metrics_count_runs(served: tuple[TestClient[Any, Any], Baton]) -> None:
    client, baton = served
    resp = await client.post(
        "/api/runs", json={"playbook": "hello", "params": {"who": "a"}}, headers=AUTH
    )
    await baton.engine.wait_for((await resp.json())["id"])
    text = await (await client.get("/metrics")).text()
    assert 'baton_runs{status="succeeded"} 1' in text


GATE = """
name: gate
steps:
  - id: ok
    action: approval
    with: {approvers: [bob], message: "go?"}
"""


async def test_approvals_decided_over_the_api(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "gate.yaml").write_text(textwrap.dedent(GATE))
    settings = Settings(
        database_url=db_url, playbooks=folder, api_token=TOKEN, key_file=tmp_path / "key"
    )
    clock = ManualClock()
    async with (
        open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton,
        TestClient(TestServer(api.create_app(settings, baton))) as client,
    ):
        resp = await client.post(
            "/api/runs", json={"playbook": "gate", "requested_by": "alice"}, headers=AUTH
        )
        run_id = (await resp.json())["id"]
        await baton.engine.wait_idle()
        approval = await baton.store.scalar(
            sa.select(t.approvals.c.id).where(t.approvals.c.run_id == run_id)
        )
        url = f"/api/approvals/{approval}"
        assert (await client.post(url, json={"user": "bob", "decision": "approve"})).status == 401
        refused = await client.post(url, json={"user": "eve", "decision": "approve"}, headers=AUTH)
        assert refused.status == 403
        assert "bob" in (await refused.json())["error"]
        bad = await client.post(url, json={"user": "bob", "decision": "maybe"}, headers=AUTH)
        assert bad.status == 400
        ok = await client.post(url, json={"user": "bob", "decision": "approve"}, headers=AUTH)
        assert (await ok.json())["status"] == "approved"
        assert await baton.engine.wait_for(run_id) == "succeeded"
        missing = await client.post(
            "/api/approvals/nope", json={"user": "bob", "decision": "approve"}, headers=AUTH
        )
        assert missing.status == 404


@pytest.mark.parametrize("limit", ["0", "-5", "501", "many"], ids=str)
async def test_list_limit_out_of_range_is_400(
    served: tuple[TestClient[Any, Any], Baton], limit: str
) -> None:
    client, _ = served
    resp = await client.get(f"/api/runs?limit={limit}")
    assert resp.status == 400
    assert "1 to 500" in (await resp.json())["error"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [("/api/runs?status=faild", "timed_out"), ("/api/alerts?outcome=hled", "held")],
    ids=["run-status", "alert-outcome"],
)
async def test_a_mistyped_filter_is_400_not_an_empty_list(
    served: tuple[TestClient[Any, Any], Baton], path: str, needle: str
) -> None:
    client, _ = served
    resp = await client.get(path)
    assert resp.status == 400 and needle in (await resp.json())["error"]


async def test_reads_need_the_token_when_required(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "hello.yaml").write_text(textwrap.dedent(HELLO))
    settings = Settings(
        database_url=db_url,
        playbooks=folder,
        api_token=TOKEN,
        key_file=tmp_path / "key",
        api_read_token="required",
    )
    clock = ManualClock()
    async with (
        open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton,
        TestClient(TestServer(api.create_app(settings, baton))) as client,
    ):
        resp = await client.post(
            "/api/runs", json={"playbook": "hello", "params": {"who": "ops"}}, headers=AUTH
        )
        run_id = (await resp.json())["id"]
        # the / page is the dashboard's: a login, not a bearer token (test_dashboard_auth)
        home = await client.get("/", headers=AUTH, allow_redirects=False)
        assert (home.status, home.headers["Location"]) == (303, "/login?next=/")
        reads = ["/api/runs", f"/api/runs/{run_id}", "/api/alerts"]
        for path in reads:
            resp = await client.get(path)
            assert resp.status == 401, path
            assert (await resp.json())["error"] == (
                "missing bearer token: send Authorization: Bearer $BATON_API_TOKEN"
            )
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status == 401, path
            assert (await client.get(path, headers=AUTH)).status == 200, path
        runs = await (await client.get("/api/runs", headers=AUTH)).json()
        assert [r["id"] for r in runs] == [run_id]
        for path in ("/healthz", "/metrics"):  # status and counts stay open
            assert (await client.get(path)).status == 200, path
