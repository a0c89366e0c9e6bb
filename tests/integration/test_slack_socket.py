"""The Slack front end in Socket Mode only: no signing secret, no ``POST /slack/events``;
Slack's requests arrive as envelopes on the fake's websocket, bolt acks them there, and
everything Baton sends goes to the fake Web API as in HTTP mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.settings import Settings
from bot.slack import blocks
from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    PLAYBOOKS,
    SlackBaton,
    buttons,
    served,
    settings_for,
    texts,
    write_playbooks,
)

MENTION = f"<@{fake.BOT_USER_ID}>"


def socket_settings(tmp_path: Path, db_url: str, slack: fake.FakeSlack) -> Settings:
    """Socket Mode only: an app-level token and no signing secret."""
    settings = settings_for(
        tmp_path, db_url, slack, slack_app_token="xapp-test", slack_signing_secret=None
    )
    assert settings.slack_signing_secret is None and settings.slack_app_token is not None
    return settings


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with fake.FakeSlack() as slack:
        async with served(socket_settings(tmp_path, db_url, slack), slack) as s:
            await slack.socket.wait_connected(1)
            yield s
        # served() closed the socket client before the fake went away: nothing left
        # reconnecting to a server that is gone
        # (one more apps.connections.open: the start-up check of the app token)
        assert slack.socket.connections == len(slack.calls_to("apps.connections.open")) - 1


async def deliver(sb: SlackBaton, kind: str, payload: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """Push one envelope on the newest connection; its ack, checked to be for it."""
    before = len(sb.slack.socket.sent)
    ack = await sb.slack.socket.send(kind, payload, **kw)
    envelope = sb.slack.socket.sent[before]
    assert envelope["type"] == kind
    assert ack["envelope_id"] == envelope["envelope_id"], "the ack names its envelope"
    return ack


async def settle(sb: SlackBaton, run_id: str | None = None) -> None:
    """``SlackBaton.settle``, bounded: a run that never ends fails the test, not the suite."""
    async with asyncio.timeout(10):
        await sb.settle(run_id)


async def run_row(sb: SlackBaton, run_id: str) -> Any:
    row = await sb.baton.store.one(sa.select(t.runs).where(t.runs.c.id == run_id))
    assert row is not None
    return row


# --- Socket Mode only ------------------------------------------------------------------


async def test_socket_mode_only_serves_no_http_endpoint(sb: SlackBaton) -> None:
    assert sb.slack.socket.connections == 1
    checked, opened = sb.slack.calls_to("apps.connections.open")  # the token check, then
    assert checked.ok and opened.ok
    assert opened.headers.get("Authorization") == "Bearer xapp-test", "the app-level token"

    status, _ = await sb.command("run hello who=http")  # even correctly signed
    assert status in (404, 405)
    assert await sb.baton.store.all(sa.select(t.runs)) == []
    assert sb.slack.calls_to("chat.postMessage") == []


# --- slash command -------------------------------------------------------------------------


async def test_a_slash_command_envelope_is_acked_and_starts_a_run_with_its_card(
    sb: SlackBaton,
) -> None:
    command = fake.slash_command("run hello who=socket", channel="C0OPS")
    acks: list[dict[str, Any]] = []

    async def send() -> None:
        acks.append(await deliver(sb, "slash_commands", command, accepts_response_payload=True))

    run = await sb.started(send())
    (ack,) = acks
    assert not ack.get("payload"), "the run card answers, not the ack"
    assert run["playbook"] == "hello" and run["params"] == {"who": "socket"}
    assert run["trigger"] == "slack" and run["requested_by"] == "U0ALICE"

    await settle(sb, run["id"])
    card = await sb.card_of(run["id"])
    assert card["channel"] == "C0OPS", "the card goes where the command was typed"
    shown = texts(card)
    assert "succeeded" in shown and "who=socket" in shown and "<@U0ALICE>" in shown
    assert buttons(card) == []
    assert (await run_row(sb, run["id"])).status == "succeeded"

    # the same run through the HTTP API (reads are open; the token does not hurt)
    headers = {"Authorization": "Bearer api-token"}
    async with sb.session.get(f"{sb.url}/api/runs", headers=headers) as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert [(r["id"], r["status"]) for r in listed] == [(run["id"], "succeeded")]


# --- buttons ---------------------------------------------------------------------------------


async def test_a_cancel_click_envelope_cancels_the_run_and_edits_its_card(sb: SlackBaton) -> None:
    run = await sb.started(deliver(sb, "slash_commands", fake.slash_command("run slow")))
    await settle(sb)
    card = await sb.card_of(run["id"])
    assert buttons(card) == [blocks.CANCEL]
    assert (await run_row(sb, run["id"])).status in ("running", "waiting"), "not over yet"

    click = fake.block_action(
        blocks.CANCEL,
        run["id"],
        user="U0BOB",
        channel=card["channel"],
        message_ts=card["ts"],
        message=card,
    )
    await deliver(sb, "interactive", click)
    await settle(sb, run["id"])

    row = await run_row(sb, run["id"])
    assert row.status == "cancelled" and row.stopped_by == "U0BOB"
    edited = await sb.card_of(run["id"])
    assert edited["ts"] == card["ts"] and edited["edits"] >= 1, "the same card, edited"
    assert "cancelled" in texts(edited) and buttons(edited) == [blocks.RETRY]
    assert len(sb.slack.messages("C0OPS")) == 1


# --- events ------------------------------------------------------------------------------


async def test_a_mention_envelope_is_answered_in_the_mentions_thread(sb: SlackBaton) -> None:
    mention = fake.app_mention(f"{MENTION} help", channel="C0OPS")
    await deliver(sb, "events_api", mention)

    (answer,) = await sb.slack.wait_for("chat.postMessage")
    assert answer.args["channel"] == "C0OPS"
    assert answer.args["thread_ts"] == mention["event"]["ts"]
    assert "run PLAYBOOK" in texts(answer.args)
    (reply,) = sb.slack.thread("C0OPS", mention["event"]["ts"])
    assert reply["ts"] == answer.response["ts"]
    assert await sb.baton.store.all(sa.select(t.runs)) == []


async def test_a_retried_event_envelope_is_handled_once(sb: SlackBaton) -> None:
    # A probe after Baton's own middleware: it sees what gets past the de-duplication,
    # during the dispatch, so before the ack (no waiting on anything that may not come).
    assert sb.front.app is not None
    passed: list[str] = []

    @sb.front.app.middleware
    async def probe(body: dict[str, Any], next: Any) -> None:
        passed.append(body.get("event_id") or "")
        await next()

    mention = fake.app_mention(f"{MENTION} run hello who=once", channel="C0OPS")
    event_id = mention["event_id"]
    run = await sb.started(deliver(sb, "events_api", mention))
    assert passed == [event_id]

    ack = await deliver(sb, "events_api", mention, retry_attempt=1, retry_reason="timeout")
    assert not ack.get("payload")
    assert passed == [event_id], "the retry stopped before any listener"

    await settle(sb, run["id"])
    runs = await sb.baton.store.all(sa.select(t.runs))
    assert [r.id for r in runs] == [run["id"]]
    cards = [c for c in sb.slack.calls_to("chat.postMessage") if run["id"] in json.dumps(c.args)]
    assert len(cards) == 1 and cards[0].args["thread_ts"] == mention["event"]["ts"]
    assert "succeeded" in texts(await sb.card_of(run["id"]))


# --- the connection ------------------------------------------------------------------------


async def test_after_a_disconnect_the_client_reconnects_and_commands_still_work(
    sb: SlackBaton,
) -> None:
    await sb.slack.socket.disconnect("refresh_requested")
    await sb.slack.socket.wait_connected(2)
    opened = await sb.slack.wait_for("apps.connections.open", count=3)
    assert len(opened) == 3 and all(c.ok for c in opened), "a fresh URL for the new socket"

    run = await sb.started(deliver(sb, "slash_commands", fake.slash_command("run hello who=new")))
    await settle(sb, run["id"])
    assert run["params"] == {"who": "new"}
    assert "succeeded" in texts(await sb.card_of(run["id"]))
    assert sb.slack.socket.connections == 2, "no further reconnects"
