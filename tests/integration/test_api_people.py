"""People with their own API tokens: a request acts as its person, under their role and
the access rules; the service token stays a trusted integration. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
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

SERVICE = {"Authorization": "Bearer service-token"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


ALICE, BOB, VERA, ADA = (bearer(f"{n}-token") for n in ("alice", "bob", "vera", "ada"))

CONFIG = f"""
users:
  alice: {{token_sha256: {sha("alice-token")}, slack: U01AAA, groups: [sre]}}
  bob: {{token_sha256: {sha("bob-token")}}}
  vera: {{token_sha256: {sha("vera-token")}, role: viewer}}
  ada: {{token_sha256: {sha("ada-token")}, role: admin}}
access:
  rules:
    - playbooks: gate
      groups: [sre]
"""

GATE = """
name: gate
steps:
  - id: ok
    action: approval
    with: {approvers: {users: [U01AAA, bob]}, message: "go?"}
"""

QUORUM = """
name: quorum
steps:
  - id: ok
    action: approval
    with: {approvers: {users: [alice, bob, carol]}, min_approvals: 2, message: "go?"}
"""

Client = TestClient[Any, Any]


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Client, Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "gate.yaml").write_text(textwrap.dedent(GATE))
    (folder / "quorum.yaml").write_text(textwrap.dedent(QUORUM))
    config = tmp_path / "baton.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    settings = Settings(
        database_url=db_url,
        playbooks=folder,
        api_token="service-token",
        key_file=tmp_path / "key",
        config=config,
        api_read_token="required",
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton
        finally:
            await client.close()


async def _runs(baton: Baton) -> list[tuple[str, str]]:
    rows = await baton.store.all(sa.select(t.runs.c.id, t.runs.c.requested_by))
    return [(r.id, r.requested_by) for r in rows]


async def _start(client: Client, headers: dict[str, str], **body: Any) -> Any:
    resp = await client.post("/api/runs", json={"playbook": "gate", **body}, headers=headers)
    return resp.status, await resp.json()


async def test_a_persons_token_starts_runs_as_them_under_their_role_and_the_rules(
    served: tuple[Client, Baton],
) -> None:
    client, baton = served
    status, body = await _start(client, ALICE)
    assert status == 201, body
    mine = await (await client.get(f"/api/runs/{body['id']}", headers=ALICE)).json()
    assert mine["requested_by"] == "alice"
    status, body = await _start(client, ALICE, requested_by="U01AAA")  # her Slack id
    assert status == 201, body

    status, body = await _start(client, ALICE, requested_by="bob")
    assert status == 403
    assert body["error"] == (
        "this token is alice's: requested_by must be alice or left out, not 'bob' "
        "(the service token BATON_API_TOKEN may act for others)"
    )
    status, body = await _start(client, BOB)  # gate: group sre only, and bob is not in it
    assert (status, body["error"]) == (403, "`gate` can be run by group sre")
    status, body = await _start(client, VERA)
    assert status == 403 and "vera is a viewer" in body["error"]
    status, body = await _start(client, VERA, dry_run=True)  # a dry run only reads
    assert status == 200 and body["dry_run"] is True
    status, body = await _start(client, ADA)
    assert status == 201, body
    assert sorted(by for _, by in await _runs(baton)) == ["ada", "alice", "alice"]

    # the service token is trusted as before: it names whom it acts for, unchecked
    status, body = await _start(client, SERVICE, requested_by="bob")
    assert status == 201, body
    status, body = await _start(client, bearer("mallory-token"))
    assert (status, body["error"]) == (401, "wrong bearer token")
    refused = await baton.store.all(
        sa.select(t.audit.c.actor, t.audit.c.action).where(t.audit.c.outcome == "refused")
    )
    assert sorted(tuple(r) for r in refused) == [("bob", "api:run"), ("vera", "api:run")]


async def test_reads_take_a_persons_token_when_required(served: tuple[Client, Baton]) -> None:
    client, _ = served
    for headers in (VERA, ALICE, SERVICE):
        assert (await client.get("/api/runs", headers=headers)).status == 200
    missing = await client.get("/api/runs")
    assert (missing.status, (await missing.json())["error"]) == (
        401,
        "missing bearer token: send Authorization: Bearer $BATON_API_TOKEN or your own token",
    )
    assert (await client.get("/api/runs", headers=bearer("nope"))).status == 401


async def test_decisions_are_the_tokens_person_and_self_approval_holds_across_ids(
    served: tuple[Client, Baton],
) -> None:
    client, baton = served
    _, body = await _start(client, ALICE)
    run_id = body["id"]
    await baton.engine.wait_idle()
    approval = await baton.store.scalar(
        sa.select(t.approvals.c.id).where(t.approvals.c.run_id == run_id)
    )
    url = f"/api/approvals/{approval}"

    async def decide(headers: dict[str, str], **body: Any) -> tuple[int, Any]:
        resp = await client.post(url, json={"decision": "approve", **body}, headers=headers)
        return resp.status, await resp.json()

    status, body = await decide(BOB, user="alice")
    assert status == 403 and "this token is bob's: user must be bob" in body["error"]
    status, body = await decide(ALICE)  # she is an approver by her Slack id, but started it
    assert status == 403 and "alice started run" in body["error"]
    status, body = await decide(SERVICE, user="U01AAA")  # the same person by another id
    assert status == 403 and "U01AAA started run" in body["error"]
    status, body = await decide(VERA)
    assert status == 403 and "vera is a viewer" in body["error"]
    status, body = await decide(ADA)  # an admin is no approver the gate names
    assert status == 403 and "ada may not decide" in body["error"]
    status, body = await decide(BOB)
    assert (status, body["status"]) == (200, "approved"), body
    assert await baton.engine.wait_for(run_id) == "succeeded"
    decided = await baton.store.all(
        sa.select(t.decisions.c.user).where(t.decisions.c.approval_id == approval)
    )
    assert [r.user for r in decided] == ["bob"]


async def test_cancel_and_retry_are_the_tokens_person(served: tuple[Client, Baton]) -> None:
    client, baton = served
    _, body = await _start(client, ALICE)
    run_id = body["id"]
    await baton.engine.wait_idle()
    url = f"/api/runs/{run_id}/cancel"
    other = await client.post(url, params={"by": "ada"}, headers=ALICE)
    assert other.status == 403 and "alice's: by must be alice" in (await other.json())["error"]
    bob = await client.post(url, headers=BOB)  # not bob's run, and gate is group sre's
    assert (bob.status, (await bob.json())["error"]) == (
        403,
        "`gate` can be cancelled by group sre",
    )
    viewer = await client.post(f"/api/runs/{run_id}/retry", headers=VERA)
    assert viewer.status == 403
    mine = await client.post(url, headers=ALICE)
    assert mine.status == 202, await mine.text()
    assert await baton.engine.wait_for(run_id) == "cancelled"
    cancelled = await baton.store.scalar(
        sa.select(t.audit.c.actor).where(t.audit.c.action == "cancel", t.audit.c.target == run_id)
    )
    assert cancelled == "alice"
    unknown = await client.post("/api/runs/nope/cancel", headers=ALICE)
    assert unknown.status == 404


async def test_schedules_are_made_and_removed_as_the_tokens_person(
    served: tuple[Client, Baton],
) -> None:
    client, _ = served
    body = {"playbook": "gate", "cron": "30 6 * * *"}
    made = await client.post("/api/schedules", json=body, headers=ALICE)
    assert made.status == 201, await made.text()
    schedule = await made.json()
    assert schedule["created_by"] == "alice"
    as_bob = await client.post("/api/schedules", json={**body, "user": "bob"}, headers=ALICE)
    assert as_bob.status == 403
    for headers in (BOB, VERA):
        assert (await client.post("/api/schedules", json=body, headers=headers)).status == 403
    url = f"/api/schedules/{schedule['id']}"
    assert (await client.delete(url, headers=BOB)).status == 403
    assert (await client.delete(url, params={"user": "bob"}, headers=ALICE)).status == 403
    gone = await client.delete(url, headers=ALICE)
    assert gone.status == 200, await gone.text()


async def test_one_person_under_two_ids_counts_once_towards_a_quorum(
    served: tuple[Client, Baton],
) -> None:
    """alice approves with her token, then the service token sends her Slack id: the
    same person has decided already, and a gate that needs two people stays open."""
    client, baton = served
    _, body = await _start(client, SERVICE, playbook="quorum", requested_by="carol")
    run_id = body["id"]
    await baton.engine.wait_idle()
    approval = await baton.store.scalar(
        sa.select(t.approvals.c.id).where(t.approvals.c.run_id == run_id)
    )
    url = f"/api/approvals/{approval}"
    first = await client.post(url, json={"decision": "approve"}, headers=ALICE)
    assert (await first.json())["status"] == "pending"
    again = await client.post(url, json={"decision": "approve", "user": "U01AAA"}, headers=SERVICE)
    answer = await again.json()
    assert answer["recorded"] is False and "already decided" in answer["message"], answer
    assert answer["status"] == "pending"
    bob = await client.post(url, json={"decision": "approve"}, headers=BOB)
    assert (await bob.json())["status"] == "approved"
