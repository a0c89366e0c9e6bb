"""The Slack directory (its cache, lookups that fail, a proxy's page for an answer) and
Baton's Web API client reading such a page as a failed call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.slack import client
from bot.slack.people import Directory
from tests.fakes import slack as fake


@pytest.fixture
async def slack() -> AsyncIterator[fake.FakeSlack]:
    async with fake.FakeSlack() as s:
        yield s


def directory(slack: fake.FakeSlack, **kw: float) -> Directory:
    return Directory(AsyncWebClient(token="xoxb-test", base_url=slack.url), **kw)


async def test_a_burst_of_lookups_makes_one_call(slack: fake.FakeSlack) -> None:
    people = directory(slack)
    found = await asyncio.gather(*[people.groups_of("U0ALICE") for _ in range(20)])
    assert all(f == {"S0ONCALL", "@oncall"} for f in found)
    assert len(slack.calls_to("usergroups.list")) == 1
    await people.groups_of("U0CAROL")
    assert len(slack.calls_to("usergroups.list")) == 1, "kept for the ttl"


async def test_a_failed_lookup_is_tried_again_after_the_short_retry(slack: fake.FakeSlack) -> None:
    people = directory(slack, retry=0.0)  # a failure is kept no time at all
    slack.fail("usergroups.list", "missing_scope")
    assert await people.groups_of("U0ALICE") == frozenset()
    assert await people.groups_of("U0ALICE") == {"S0ONCALL", "@oncall"}
    assert len(slack.calls_to("usergroups.list")) == 2


async def test_mentions_resolve_handles_to_user_groups(slack: fake.FakeSlack) -> None:
    people = directory(slack)
    assert await people.mention("@oncall") == "<!subteam^S0ONCALL>"
    assert await people.mention("U0BOB") == "<@U0BOB>"
    assert await people.mention("@here") == "<!here>"
    assert await people.mention("@nobody") == "@nobody"


async def test_a_burst_of_channel_lookups_makes_one_call(slack: fake.FakeSlack) -> None:
    people = directory(slack)
    names = await asyncio.gather(*[people.channel_name("C0OPS") for _ in range(20)])
    assert names == ["ops"] * 20
    assert len(slack.calls_to("conversations.info")) == 1


PROXY_PAGES = [
    pytest.param(503, "<html><body>503 Service Unavailable</body></html>", "text/html", id="503"),
    pytest.param(405, "Method Not Allowed", "text/plain", id="405"),
    pytest.param(502, "<html>Bad Gateway</html>", "application/json", id="502-claims-json"),
    pytest.param(200, "<html>Sign in to the proxy</html>", "text/plain", id="200-portal"),
]


@pytest.mark.parametrize(("status", "page", "content_type"), PROXY_PAGES)
async def test_a_lookup_answered_by_a_proxy_page_degrades_to_the_id(
    slack: fake.FakeSlack, status: int, page: str, content_type: str
) -> None:
    """Even on a plain slack_sdk client (whose errors carry the page as a string)."""
    people = directory(slack, retry=0.0)
    slack.fail_raw("conversations.info", status, page, content_type)
    assert await people.channel_name("C0OPS") == "C0OPS"
    assert await people.channel_name("C0OPS") == "ops", "tried again, answered"
    slack.fail_raw("usergroups.list", status, page, content_type)
    assert await people.groups_of("U0ALICE") == frozenset()


@pytest.mark.parametrize(("status", "page", "content_type"), PROXY_PAGES)
async def test_baton_s_client_reads_a_proxy_page_as_a_failed_call(
    slack: fake.FakeSlack, status: int, page: str, content_type: str
) -> None:
    web = client.make_client(Settings(slack_bot_token="xoxb-test", slack_api_url=slack.url), None)
    slack.fail_raw("chat.postMessage", status, page, content_type)
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C0OPS", text="hi")
    expected = "not_json" if status == 200 else f"http_{status}"
    assert caught.value.response.get("error") == expected  # what every handler reads
    assert client.reason(caught.value) == expected
    sent = await web.chat_postMessage(channel="C0OPS", text="hi")  # the next call is fine
    assert sent["ok"] and slack.messages("C0OPS")[-1]["text"] == "hi"
