"""The API's playbooks, approval gates and schedules: what the console knows, over HTTP."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.runs.requests import RunRequest
from engine.timing import ManualClock, ManualTimers

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SHIP = """
name: ship
description: Ship a version after a review.
params:
  version: {type: string, required: true, pattern: "v[0-9.]+", help: the version}
  env: {type: choice, choices: [staging, prod], default: staging}
  token: {type: secret, default: "hunter22-default"}
triggers:
  - schedule: {cron: "0 9 * * 1", params: {version: v9, token: "trigger-secret-value"}}
steps:
  - id: review
    action: approval
    with: {message: "ship it?", approvers: {users: [bob, carol]}, min_approvals: 2, timeout: 1h}
  - id: go
    action: log
    needs: [review]
    with: {message: "shipping {{ params.version }}"}
finally:
  - id: tidy
    action: log
    with: {message: tidy}
"""

CONFIG = """
access:
  default: allow
  rules:
    - playbooks: ship
      actions: [schedule, unschedule]
      users: [alice]
"""


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[TestClient[Any, Any], Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "ship.yaml").write_text(textwrap.dedent(SHIP))
    config = tmp_path / "baton.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    settings = Settings(
        database_url=db_url,
        playbooks=folder,
        api_token=TOKEN,
        key_file=tmp_path / "key",
        config=config,
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton
        finally:
            await client.close()


async def test_playbooks_with_their_params_and_no_secret(
    served: tuple[TestClient[Any, Any], Baton],
) -> None:
    client, _ = served
    listed = await (await client.get("/api/playbooks")).json()
    assert [p["name"] for p in listed] == ["ship"]
    assert "steps" not in listed[0]
    one = await client.get("/api/playbooks/ship")
    body = await one.json()
    assert body["description"] == "Ship a version after a review."
    params = {p["name"]: p for p in body["params"]}
    assert params["version"] == {
        "name": "version",
        "type": "string",
        "required": True,
        "default": None,
        "choices": None,
        "pattern": "v[0-9.]+",
        "min": None,
        "max": None,
        "help": "the version",
    }
    assert params["env"]["choices"] == ["staging", "prod"]
    assert params["token"]["default"] == "***"
    assert [(s["id"], s["phase"], s["needs"]) for s in body["steps"]] == [
        ("review", "main", []),
        ("go", "main", ["review"]),
        ("tidy", "finally", []),
    ]
    assert body["triggers"][0]["schedule"]["cron"] == "0 9 * * 1"
    text = await one.text()
    assert "hunter22" not in text and "trigger-secret" not in text

    missing = await client.get("/api/playbooks/shp")
    assert missing.status == 404 and "ship" in (await missing.json())["suggestions"]


async def test_waiting_gates_are_listed_and_carried_by_the_run(
    served: tuple[TestClient[Any, Any], Baton],
) -> None:
    client, baton = served
    assert await (await client.get("/api/approvals")).json() == []
    run_id = await baton.engine.start_run(
        RunRequest(playbook="ship", params={"version": "v1.2"}, requested_by="alice")
    )
    await baton.engine.wait_idle()
    (gate,) = await (await client.get("/api/approvals")).json()
    assert gate["run_id"] == run_id and gate["playbook"] == "ship" and gate["step"] == "review"
    assert gate["approvers"] == ["bob", "carol"] and gate["message"] == "ship it?"
    assert gate["allow_self_approval"] is False
    assert (gate["min_approvals"], gate["approvals"]) == (2, 0)
    assert gate["deadline_at"] is not None

    decided = await client.post(
        f"/api/approvals/{gate['id']}", json={"user": "bob", "decision": "approve"}, headers=AUTH
    )
    assert (await decided.json())["status"] == "pending"
    run = await (await client.get(f"/api/runs/{run_id}")).json()
    (carried,) = run["approvals"]
    assert carried["id"] == gate["id"] and carried["step"] == "review"
    assert (carried["approvers"], carried["allow_self_approval"]) == (["bob", "carol"], False)
    assert (carried["status"], carried["approvals"], carried["min_approvals"]) == ("pending", 1, 2)
    (listed,) = await (await client.get("/api/approvals")).json()
    assert listed["approvals"] == 1

    await client.post(
        f"/api/approvals/{gate['id']}", json={"user": "carol", "decision": "approve"}, headers=AUTH
    )
    await baton.engine.wait_idle()
    assert await (await client.get("/api/approvals")).json() == []
    run = await (await client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "succeeded" and run["approvals"][0]["status"] == "approved"


async def test_schedules_listed_added_and_removed_under_the_access_rules(
    served: tuple[TestClient[Any, Any], Baton],
) -> None:
    client, _ = served
    declared = await (await client.get("/api/schedules")).json()
    assert [(s["playbook"], s["origin"], s["when"]) for s in declared] == [
        ("ship", "playbook", "0 9 * * 1")
    ]

    body = {"user": "alice", "playbook": "ship", "cron": "30 6 * * *", "params": {"version": "v2"}}
    assert (await client.post("/api/schedules", json=body)).status == 401
    made = await client.post("/api/schedules", json=body, headers=AUTH)
    assert made.status == 201, await made.text()
    schedule = await made.json()
    assert (schedule["when"], schedule["created_by"], schedule["origin"]) == (
        "30 6 * * *",
        "alice",
        "api",
    )
    assert schedule["next_fire_at"] is not None

    refused = await client.post("/api/schedules", json={**body, "user": "mallory"}, headers=AUTH)
    assert refused.status == 403
    both = await client.post("/api/schedules", json={**body, "when": "in 30m"}, headers=AUTH)
    assert both.status == 400 and "exactly one" in (await both.json())["error"]
    bad = await client.post("/api/schedules", json={**body, "cron": "61 * * * *"}, headers=AUTH)
    assert bad.status == 400
    unknown = await client.post("/api/schedules", json={**body, "playbook": "nope"}, headers=AUTH)
    assert unknown.status == 404

    listed = await (await client.get("/api/schedules")).json()
    assert schedule["id"] in [s["id"] for s in listed]
    sid = schedule["id"]
    denied = await client.delete(f"/api/schedules/{sid}", params={"user": "mallory"}, headers=AUTH)
    assert denied.status == 403
    gone = await client.delete(f"/api/schedules/{sid}", params={"user": "alice"}, headers=AUTH)
    assert gone.status == 200 and (await gone.json())["id"] == sid
    again = await client.delete(f"/api/schedules/{sid}", params={"user": "alice"}, headers=AUTH)
    assert again.status == 404
    declared_id = declared[0]["id"]
    kept = await client.delete(
        f"/api/schedules/{declared_id}", params={"user": "alice"}, headers=AUTH
    )
    assert kept.status == 400 and "declared in playbook" in (await kept.json())["error"]
