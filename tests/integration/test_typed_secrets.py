"""What a person types as params never lands in clear where it could be a secret: a
mistyped secret name (``tokn=`` for ``token``) is masked in the audit trail and in the
reply, and not carried into the run form, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.commands import Actor, Commands
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    PLAYBOOKS,
    SlackBaton,
    served,
    settings_for,
    write_playbooks,
)

TYPED = "hunter3-Typed"

SHIP = {
    "ship": """
        name: ship
        params:
          version: {type: string, required: true}
          env: {type: string, default: staging}
          token: {type: secret, required: false}
        steps:
          - id: go
            action: log
            with: {message: "shipping {{ params.version }}"}
    """
}

ALICE = Actor(id="alice", name="Alice", via="console")


async def _audit_text(store: Any) -> str:
    rows = await store.all(sa.select(t.audit))
    return "\n".join(repr(tuple(r)) for r in rows)


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        pytest.param(f"run ship version=v1 tokn={TYPED}", "tokn=***", id="near-a-secret"),
        pytest.param(f"run ship version=v1 passwd={TYPED}", "passwd=***", id="any-unknown-name"),
        pytest.param(f'schedule ship "0 3 * * *" version=v1 tokn={TYPED}', "tokn=***", id="cron"),
    ],
)
async def test_an_unknown_param_is_masked_in_the_audit_trail(
    harness: HarnessFactory, line: str, shown: str
) -> None:
    h = await harness(SHIP)
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")

    reply = await cmds.handle(ALICE, line, {"front_end": "console"})

    assert not reply.ok and "unknown param" in reply.text and TYPED not in reply.text
    (row,) = await h.store.all(sa.select(t.audit).where(t.audit.c.action.like("command:%")))
    assert shown in row.detail["text"] and "version=v1" in row.detail["text"]
    assert TYPED not in await _audit_text(h.store)
    assert await h.store.all(sa.select(t.runs)) == []


async def test_a_mistyped_secret_is_not_carried_into_the_form(harness: HarnessFactory) -> None:
    h = await harness(SHIP)
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")

    reply = await cmds.handle(ALICE, f"run ship env=prod tokn={TYPED}", {"front_end": "console"})

    assert reply.data["form"] == {"playbook": "ship", "given": {"env": "prod"}}
    assert "tokn=***" in reply.text and TYPED not in reply.text
    assert TYPED not in await _audit_text(h.store)


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with fake.FakeSlack() as slack, served(settings_for(tmp_path, db_url, slack), slack) as s:
        yield s


async def test_a_mistyped_secret_stays_out_of_the_slack_form(sb: SlackBaton) -> None:
    await sb.command(f"run deploy version=v1.2 tokn={TYPED}")

    (opened,) = await sb.slack.wait_for("views.open")
    meta = json.loads(opened.args["view"]["private_metadata"])
    assert meta["given"] == {"version": "v1.2"}
    assert TYPED not in json.dumps([c.args for c in sb.slack.calls])
    assert TYPED not in await _audit_text(sb.baton.store)
