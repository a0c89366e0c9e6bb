"""The fake Slack, checked through the real slack_sdk clients: if these pass, code that
works against the fake talks to Slack the way slack_sdk does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_bolt.request.internals import parse_body
from slack_bolt.request.payload_utils import (
    is_block_actions,
    is_event,
    is_im_message_event,
    is_slash_command,
    is_view_submission,
    to_event,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    FakeSlack,
    app_mention,
    block_action,
    bot_message,
    encode_command,
    encode_event,
    encode_interactive,
    im_message,
    post_signed,
    sign,
    slash_command,
    view_submission,
)

BOT_TOKEN = "xoxb-test"
APP_TOKEN = "xapp-test"
SECRET = "signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)


async def test_post_update_and_thread_are_stored(slack: FakeSlack, client: AsyncWebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* queued"}}]
    first = await client.chat_postMessage(channel="C0OPS", text="deploy queued", blocks=blocks)
    reply = await client.chat_postMessage(channel="#ops", text="step 1 ok", thread_ts=first["ts"])
    await client.chat_update(channel="C0OPS", ts=first["ts"], text="deploy done")

    assert first["channel"] == reply["channel"] == "C0OPS"
    assert first["message"]["blocks"] == blocks
    assert float(first["ts"]) < float(reply["ts"])
    parent = slack.message("C0OPS", first["ts"])
    assert (parent["text"], parent["blocks"], parent["edits"]) == ("deploy done", blocks, 1)
    assert parent["history"] == [
        {"text": "deploy queued", "blocks": blocks, "attachments": None, "metadata": None}
    ]
    assert [m["text"] for m in slack.thread("C0OPS", first["ts"])] == ["step 1 ok"]
    call = slack.calls_to("chat.postMessage")[0]
    assert call.args["blocks"] == blocks
    assert call.headers["Authorization"] == f"Bearer {BOT_TOKEN}"


async def test_update_of_unknown_ts_fails_like_slack(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as failure:
        await client.chat_update(channel="C0OPS", ts="1.000001", text="nope")
    assert failure.value.response["error"] == "message_not_found"
    assert not slack.calls_to("chat.update")[0].ok


async def test_user_id_posts_into_their_dm(slack: FakeSlack, client: AsyncWebClient) -> None:
    sent = await client.chat_postMessage(channel="U0ALICE", text="your run finished")
    opened = await client.conversations_open(users="U0ALICE")
    assert sent["channel"] == opened["channel"]["id"] == "D0ALICE"
    assert [m["text"] for m in slack.messages("D0ALICE")] == ["your run finished"]
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.chat_postMessage(channel="#nowhere", text="x")


async def test_permalink_ephemeral_and_delete(slack: FakeSlack, client: AsyncWebClient) -> None:
    parent = await client.chat_postMessage(channel="C0OPS", text="parent")
    reply = await client.chat_postMessage(channel="C0OPS", text="reply", thread_ts=parent["ts"])
    link = await client.chat_getPermalink(channel="C0OPS", message_ts=reply["ts"])
    whisper = await client.chat_postEphemeral(channel="C0OPS", user="U0BOB", text="only you")
    await client.chat_delete(channel="C0OPS", ts=parent["ts"])

    packed = reply["ts"].replace(".", "")
    assert link["permalink"] == (
        f"https://baton-test.slack.com/archives/C0OPS/p{packed}?thread_ts={parent['ts']}&cid=C0OPS"
    )
    assert slack.ephemerals[0]["ts"] == whisper["message_ts"]
    assert slack.ephemerals[0]["user"] == "U0BOB"
    assert [m["text"] for m in slack.messages("C0OPS")] == ["reply"]
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_delete(channel="C0OPS", ts=parent["ts"])


async def test_rate_limit_is_retried_by_the_sdk_handler(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler sleeps Retry-After plus random() seconds; pin the jitter to keep this fast.
    monkeypatch.setattr(builtin_async_handlers.random, "random", lambda: 0.0)
    retrying = AsyncWebClient(
        token=BOT_TOKEN, base_url=slack.url, retry_handlers=[AsyncRateLimitErrorRetryHandler()]
    )
    slack.rate_limit("chat.postMessage", times=1, retry_after=0)

    sent = await retrying.chat_postMessage(channel="C0OPS", text="hello")

    assert sent["ok"]
    attempts = slack.calls_to("chat.postMessage")
    assert [(c.limited, c.ok) for c in attempts] == [(True, False), (False, True)]
    assert len(slack.messages("C0OPS")) == 1


async def test_rate_limit_without_retry_surfaces_429(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as failure:
        await client.chat_postMessage(channel="C0OPS", text="hello")
    assert failure.value.response.status_code == 429
    assert failure.value.response.headers["Retry-After"] == "7"
    assert failure.value.response["error"] == "ratelimited"


async def test_injected_failure_then_recovery(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        await client.chat_postMessage(channel="C0OPS", text="a")
    await client.chat_postMessage(channel="C0OPS", text="b")
    assert [m["text"] for m in slack.messages("C0OPS")] == ["b"]


async def test_files_upload_v2_stores_content_in_the_thread(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    parent = await client.chat_postMessage(channel="C0OPS", text="run 7")
    done = await client.files_upload_v2(
        channel="C0OPS",
        thread_ts=parent["ts"],
        content="line 1\nline 2\n",
        filename="run-7.log",
        initial_comment="full log",
    )

    [stored] = slack.files
    assert done["file"]["id"] == stored.id
    assert (stored.name, stored.text) == ("run-7.log", "line 1\nline 2\n")
    assert (stored.channel, stored.thread_ts) == ("C0OPS", parent["ts"])
    [share] = slack.thread("C0OPS", parent["ts"])
    assert (share["text"], share["files"][0]["id"]) == ("full log", stored.id)
    [upload] = slack.calls_to("upload")
    assert "Authorization" not in upload.headers


async def test_usergroups(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.usergroups["S0DBA"] = {"handle": "dba", "users": ["U0BOB", "U0CAROL"]}
    members = await client.usergroups_users_list(usergroup="S0DBA")
    listed = await client.usergroups_list(include_users=True)
    assert members["users"] == ["U0BOB", "U0CAROL"]
    assert {g["handle"]: g["users"] for g in listed["usergroups"]}["dba"] == ["U0BOB", "U0CAROL"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        await client.usergroups_users_list(usergroup="S0NONE")


async def test_lookups(slack: FakeSlack, client: AsyncWebClient) -> None:
    info = await client.conversations_info(channel="C0OPS")
    user = await client.users_info(user="U0BOB")
    stranger = await client.users_info(user="U0ZED")
    assert (info["channel"]["name"], info["channel"]["is_channel"]) == ("ops", True)
    assert user["user"]["profile"]["display_name"] == "bob"
    assert stranger["user"]["name"] == "user-u0zed"
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.conversations_info(channel="C0GONE")


async def test_views_need_a_trigger_and_can_be_updated(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    view = {"type": "modal", "callback_id": "run", "title": {"type": "plain_text", "text": "Run"}}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_open(view=view)

    opened = await client.views_open(trigger_id="123.456.abc", view=view)
    view_id = opened["view"]["id"]
    updated = await client.views_update(view_id=view_id, view={**view, "private_metadata": "x"})

    assert view_id.startswith("V")
    assert updated["view"]["id"] == view_id
    assert slack.views[view_id]["private_metadata"] == "x"


async def test_tokens_are_checked(slack: FakeSlack) -> None:
    ok = await AsyncWebClient(token=BOT_TOKEN, base_url=slack.url).auth_test()
    assert (ok["user_id"], ok["bot_id"]) == ("UBATON", "BBATON")
    for token, error in [("xoxb-wrong", "invalid_auth"), (None, "not_authed")]:
        with pytest.raises(SlackApiError) as failure:
            await AsyncWebClient(token=token, base_url=slack.url).auth_test()
        assert failure.value.response["error"] == error


async def test_wait_for_reports_what_arrived(slack: FakeSlack, client: AsyncWebClient) -> None:
    await client.chat_postMessage(channel="C0OPS", text="one")
    [call] = await slack.wait_for("chat.postMessage", lambda c: c.args["text"] == "one")
    assert call.ok
    with pytest.raises(AssertionError, match="got 1"):
        await slack.wait_for("chat.postMessage", count=2, timeout=0.05)


async def test_socket_mode_client_acks_and_reconnects(slack: FakeSlack) -> None:
    client = SocketModeClient(APP_TOKEN, web_client=AsyncWebClient(base_url=slack.url))
    seen: list[SocketModeRequest] = []

    async def on_request(sm: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        seen.append(request)
        response = SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "on it"})
        await sm.send_socket_mode_response(response)

    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()
        await slack.socket.wait_connected(1)
        ack = await slack.socket.send("slash_commands", slash_command("status"), True)
        assert ack == {"envelope_id": seen[0].envelope_id, "payload": {"text": "on it"}}
        assert (seen[0].type, seen[0].payload["text"]) == ("slash_commands", "status")

        await slack.socket.disconnect()
        await slack.socket.wait_connected(2)
        ack = await slack.socket.send("events_api", app_mention("<@UBATON> hi"))

        assert ack == {"envelope_id": seen[1].envelope_id, "payload": {"text": "on it"}}
        assert len(slack.calls_to("apps.connections.open")) == 2
        assert slack.calls_to("apps.connections.open")[0].ok
    finally:
        await client.close()


async def test_socket_url_needs_the_app_token(slack: FakeSlack, client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        await client.apps_connections_open(app_token=BOT_TOKEN)


def test_signature_matches_slack_sdk_verifier() -> None:
    body, _ = encode_command(slash_command("run deploy"))
    headers = sign(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(
        body, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )
    assert not verifier.is_valid(
        body + "&x=1", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    )


async def test_post_signed_reaches_a_response_url(slack: FakeSlack) -> None:
    body, content_type = encode_event({"text": "done", "replace_original": True})
    async with aiohttp.ClientSession() as session:
        status, _ = await post_signed(
            session, slack.response_url("cmd"), body, content_type, SECRET
        )
    [call] = slack.calls_to("response_url")
    assert status == 200
    assert call.args == {"text": "done", "replace_original": True, "_name": "cmd"}
    assert SignatureVerifier(SECRET).is_valid_request(body, call.headers)


def test_payloads_are_what_bolt_recognises() -> None:
    command = parse_body(*encode_command(slash_command("status web", channel="C0DEPLOYS")))
    click = parse_body(*encode_interactive(block_action("approve", "run-1")))
    submit = view_submission("run", {"b": {"a": {"type": "plain_text_input", "value": "v"}}})
    mention, dm, other_bot = app_mention("<@UBATON> hi"), im_message("hi"), bot_message("alert")

    assert is_slash_command(command) and command["channel_name"] == "deploys"
    assert is_block_actions(click) and click["actions"][0]["value"] == "run-1"
    assert is_view_submission(parse_body(*encode_interactive(submit)))
    assert is_event(parse_body(*encode_event(mention)))
    assert (to_event(mention) or {})["blocks"][0]["elements"][0]["elements"][0]["user_id"] == (
        "UBATON"
    )
    assert is_im_message_event(dm)
    assert (to_event(other_bot) or {})["subtype"] == "bot_message"
    assert len({p["event_id"] for p in (mention, dm, other_bot, app_mention("x"))}) == 4
