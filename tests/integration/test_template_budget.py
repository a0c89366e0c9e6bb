"""Heavy templates against the real server and engine, on SQLite and PostgreSQL: the step
(or the request) fails with the template budget's reason, and the server keeps answering
while they render."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.playbooks import sandbox
from engine.timing import ManualClock, ManualTimers

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOOPS = "{% for i in range(params.n) %}{% for j in range(params.n) %}.{% endfor %}{% endfor %}"
PLAYBOOKS = {
    "heavy": f"""
        name: heavy
        params:
          n: {{type: int, default: 10}}
        steps:
          - id: loops
            action: log
            with: {{message: "{LOOPS}"}}
          - id: gated
            action: log
            when: "{LOOPS}"
            with: {{message: never}}
          - id: light
            action: log
            with: {{message: "twice {{{{ params.n * 2 }}}}"}}
    """,
    "timed": f"""
        name: timed
        params:
          n: {{type: int, default: 10}}
        steps:
          - id: loops
            action: log
            timeout: 50ms
            with: {{message: "{LOOPS}"}}
    """,
    "keyed": f"""
        name: keyed
        params:
          n: {{type: int, default: 10}}
        concurrency: {{key: "{LOOPS}", limit: 1}}
        steps:
          - id: a
            action: log
            with: {{message: hi}}
    """,
}

Served = tuple[TestClient[Any, Any], Baton]


@pytest.fixture
def serve(tmp_path: Path, db_url: str) -> Callable[..., AbstractAsyncContextManager[Served]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in PLAYBOOKS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))

    @asynccontextmanager
    async def served(**settings: Any) -> AsyncIterator[Served]:
        config = Settings(
            database_url=db_url,
            playbooks=folder,
            api_token=TOKEN,
            key_file=tmp_path / "key",
            **settings,
        )
        clock = ManualClock()
        try:
            async with open_baton(config, clock=clock, timers=ManualTimers(clock)) as baton:
                client = TestClient(TestServer(api.create_app(config, baton)))
                await client.start_server()
                try:
                    yield client, baton
                finally:
                    await client.close()
        finally:
            sandbox.configure(sandbox.DEFAULT_BUDGET)

    return served


async def start(client: TestClient[Any, Any], playbook: str, n: int) -> str:
    resp = await client.post(
        "/api/runs", json={"playbook": playbook, "params": {"n": n}}, headers=AUTH
    )
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def test_heavy_templates_fail_their_steps_while_the_server_answers(
    serve: Callable[..., AbstractAsyncContextManager[Served]],
) -> None:
    async with serve() as (client, baton):
        run_id = await start(client, "heavy", 10_000)  # 100 million iterations per template
        ended = asyncio.ensure_future(baton.engine.wait_for(run_id))
        health = await client.get("/healthz")  # answered while the templates are in flight
        assert health.status == 200
        await ended
        run = await (await client.get(f"/api/runs/{run_id}")).json()
        assert run["status"] == "failed", run
        steps = {s["id"]: s for s in run["steps"]}
        assert steps["light"]["status"] == "succeeded", steps["light"]["error"]
        assert steps["light"]["output"]["message"] == "twice 20000"
        for step, prefix in (("loops", "template '"), ("gated", "when: template '")):
            assert steps[step]["status"] == "failed"
            error = steps[step]["error"]
            assert error.startswith(prefix), error
            assert "template budget exceeded: more than 50,000 units of work" in error, error
            assert "BATON_TEMPLATE_BUDGET" in error


async def test_a_step_timeout_stops_its_templates(
    serve: Callable[..., AbstractAsyncContextManager[Served]],
) -> None:
    async with serve(template_budget=10**9) as (client, baton):  # the timeout comes first
        run_id = await start(client, "timed", 10_000)
        assert (await client.get("/healthz")).status == 200
        await baton.engine.wait_for(run_id)
        run = await (await client.get(f"/api/runs/{run_id}")).json()
        [step] = run["steps"]
        assert step["status"] == "failed"
        assert step["error"].endswith(
            "template budget exceeded: still rendering at the step's timeout (50ms)"
        ), step["error"]


async def test_a_heavy_concurrency_key_refuses_the_request(
    serve: Callable[..., AbstractAsyncContextManager[Served]],
) -> None:
    async with serve() as (client, _):
        resp = await client.post(
            "/api/runs", json={"playbook": "keyed", "params": {"n": 10_000}}, headers=AUTH
        )
        assert resp.status == 400
        assert "template budget exceeded" in (await resp.json())["error"]
        assert (await client.get("/api/runs")).status == 200
        assert await start(client, "keyed", 2)  # a light key still starts runs
