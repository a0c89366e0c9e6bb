"""The Slack front end when things go wrong: requests replayed within the signature
window, a Web API that answers with a proxy's page, and failures behind a listener.
Whatever happens, nothing runs twice and nobody is left without an answer."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.slack import blocks, middleware
from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    PLAYBOOKS,
    SlackBaton,
    served,
    settings_for,
    texts,
    write_playbooks,
)


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with fake.FakeSlack() as slack, served(settings_for(tmp_path, db_url, slack), slack) as s:
        yield s


async def runs(sb: SlackBaton) -> list[Any]:
    return await sb.baton.store.all(sa.select(t.runs))


async def audited(sb: SlackBaton, action: str) -> list[Any]:
    return await sb.baton.store.all(sa.select(t.audit).where(t.audit.c.action == action))


# --- replays: the same signed request again -------------------------------------------------


async def test_a_replayed_slash_command_is_answered_and_runs_nothing(sb: SlackBaton) -> None:
    body, ctype = fake.encode_command(fake.slash_command("run hello who=once"))
    stamp = int(time.time())
    run = await sb.started(sb.post(body, ctype, timestamp=stamp))
    status, text = await sb.post(body, ctype, timestamp=stamp)  # the very same request
    assert (status, text) == (200, ""), "answered like the first, as Slack expects"
    await sb.settle(run["id"])
    assert [r.id for r in await runs(sb)] == [run["id"]]

    # the same command signed anew (a person typing it again) is a new request
    again = await sb.started(sb.post(body, ctype, timestamp=stamp + 1))
    await sb.settle(again["id"])
    assert len(await runs(sb)) == 2


async def test_a_replayed_form_submission_starts_one_run(sb: SlackBaton) -> None:
    meta = json.dumps({"playbook": "hello", "given": {}, "where": {"channel": "C0OPS"}})
    values = {"param:who": {"value": {"type": "plain_text_input", "value": "form"}}}
    sent = fake.view_submission(blocks.RUN_FORM, values, private_metadata=meta)
    body, ctype = fake.encode_interactive(sent)
    stamp = int(time.time())
    run = await sb.started(sb.post(body, ctype, timestamp=stamp))
    status, text = await sb.post(body, ctype, timestamp=stamp)
    assert (status, text) == (200, "")
    await sb.settle(run["id"])
    assert [r.id for r in await runs(sb)] == [run["id"]]


async def test_a_replayed_click_is_not_carried_out_twice(sb: SlackBaton) -> None:
    run = await sb.started(sb.command("run slow"))
    body, ctype = fake.encode_interactive(fake.block_action(blocks.CANCEL, run["id"]))
    stamp = int(time.time())
    await sb.post(body, ctype, timestamp=stamp)
    status, text = await sb.post(body, ctype, timestamp=stamp)
    assert (status, text) == (200, "")
    await sb.settle(run["id"])
    assert len(await audited(sb, "command:cancel")) == 1, "one click, one cancel audited"


async def test_a_replay_to_another_replica_is_refused_too(tmp_path: Path, db_url: str) -> None:
    """Two processes on one database: the copy sent to the second finds the first's key."""
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    body, ctype = fake.encode_command(fake.slash_command("run hello who=replica"))
    stamp = int(time.time())
    async with fake.FakeSlack() as slack, AsyncExitStack() as stack:
        one = await stack.enter_async_context(served(settings_for(tmp_path, db_url, slack), slack))
        two = await stack.enter_async_context(served(settings_for(tmp_path, db_url, slack), slack))
        run = await one.started(one.post(body, ctype, timestamp=stamp))
        status, text = await two.post(body, ctype, timestamp=stamp)
        assert (status, text) == (200, "")
        await one.settle(run["id"])
        await two.settle()
        assert [r.id for r in await runs(one)] == [run["id"]]


# --- a Web API that answers with something that is not Slack's JSON ------------------------


@pytest.mark.parametrize(
    ("status", "page", "content_type"),
    [
        (503, "<html><body>503 Service Unavailable</body></html>", "text/html"),
        (405, "Method Not Allowed", "text/plain"),
        (502, "<html>Bad Gateway</html>", "application/json"),
    ],
    ids=["proxy-503-html", "405-plain", "502-claims-json"],
)
async def test_a_mention_is_answered_when_the_channel_lookup_gets_a_proxy_page(
    sb: SlackBaton, status: int, page: str, content_type: str
) -> None:
    sb.slack.fail_raw("conversations.info", status, page, content_type)
    mention = fake.app_mention(f"<@{fake.BOT_USER_ID}> run hello who=anyway")
    run = await sb.started(sb.event(mention))
    await sb.settle(run["id"])
    (lookup,) = sb.slack.calls_to("conversations.info")
    assert lookup.response["status"] == status, "the proxy's page was what Baton got"
    assert run["params"] == {"who": "anyway"}
    card = await sb.card_of(run["id"])
    assert card["thread_ts"] == mention["event"]["ts"], "answered in the mention's thread"
    (asked,) = await audited(sb, "command:run")
    assert asked.source["channel_name"] == "C0OPS", "the channel goes by its id"


async def test_a_proxy_page_for_an_answer_is_read_as_a_failed_call(sb: SlackBaton) -> None:
    """The ephemeral answer gets a 405 in plain text: the DM fallback is taken, as for
    any refused call."""
    sb.slack.fail_raw("chat.postEphemeral", 405, "Method Not Allowed", "text/plain")
    await sb.click(blocks.CANCEL, "nosuchrun")
    (dm,) = await sb.slack.wait_for("chat.postMessage")
    assert dm.args["channel"] == "U0ALICE"
    assert "nosuchrun" in texts(dm.args)


# --- any failure behind a listener gets an answer -------------------------------------------


@pytest.fixture
def broken(sb: SlackBaton, monkeypatch: pytest.MonkeyPatch) -> SlackBaton:
    """A Baton whose command handling fails unexpectedly (a bug, the database gone)."""

    async def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("an unexpected failure")

    monkeypatch.setattr(sb.front.commands, "handle", fails)
    return sb


def sorry(call: fake.Call) -> bool:
    return middleware.SORRY in json.dumps(call.args)


async def test_a_failed_slash_command_tells_its_author(broken: SlackBaton) -> None:
    url = broken.slack.response_url("failed")
    status, _ = await broken.command("playbooks", response_url=url)
    assert status == 200
    (answer,) = await broken.slack.wait_for("response_url", sorry)
    assert answer.args["response_type"] == "ephemeral"
    assert "Traceback" not in json.dumps(answer.args) and "RuntimeError" not in answer.args["text"]


async def test_a_failed_mention_is_answered_in_its_thread(broken: SlackBaton) -> None:
    mention = fake.app_mention(f"<@{fake.BOT_USER_ID}> playbooks")
    await broken.event(mention)
    (answer,) = await broken.slack.wait_for("chat.postMessage", sorry)
    assert answer.args["channel"] == "C0OPS"
    assert answer.args["thread_ts"] == mention["event"]["ts"]


async def test_a_failed_dm_is_answered_in_the_dm(broken: SlackBaton) -> None:
    await broken.event(fake.im_message("playbooks", channel="D0ALICE"))
    (answer,) = await broken.slack.wait_for("chat.postMessage", sorry)
    assert answer.args["channel"] == "D0ALICE"


async def test_a_failed_click_tells_the_clicker(broken: SlackBaton) -> None:
    await broken.click(blocks.RETRY, "r1", channel="C0DEPLOYS")
    (answer,) = await broken.slack.wait_for("chat.postEphemeral", sorry)
    assert answer.args["user"] == "U0ALICE" and answer.args["channel"] == "C0DEPLOYS"


async def test_a_listener_failing_before_its_ack_answers_200_and_tells_the_user(
    sb: SlackBaton,
) -> None:
    """A form whose metadata is not what Baton wrote: no 500 (Slack would show its own
    error), the submitter is told."""
    values = {"param:who": {"value": {"type": "plain_text_input", "value": "x"}}}
    sent = fake.view_submission(blocks.RUN_FORM, values, private_metadata="{not json")
    status, text = await sb.post(*fake.encode_interactive(sent))
    assert (status, text) == (200, "")
    (answer,) = await sb.slack.wait_for("chat.postMessage", sorry)
    assert answer.args["channel"] == "U0ALICE"
    assert await runs(sb) == []


async def test_a_database_failure_recording_the_request_tells_the_author(
    sb: SlackBaton, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fails(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("database gone")

    monkeypatch.setattr(sb.front.outbox, "seen_event", fails)
    url = sb.slack.response_url("no-database")
    status, _ = await sb.command("run hello who=x", response_url=url)
    assert status == 200, "the ack never waits for the database"
    (answer,) = await sb.slack.wait_for("response_url", sorry)
    assert answer.args["response_type"] == "ephemeral"
    assert await runs(sb) == []


async def test_a_slash_command_whose_listener_fails_is_answered_in_the_ack(
    sb: SlackBaton, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: Any, **kwargs: Any) -> None:
        for work in args:  # the work that will never run
            if hasattr(work, "close"):
                work.close()
        raise RuntimeError("cannot hand the work on")

    monkeypatch.setattr(sb.front, "later", fails)
    status, text = await sb.command("playbooks")
    assert (status, text) == (200, middleware.SORRY)
