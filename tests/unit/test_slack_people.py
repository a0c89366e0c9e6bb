"""The Slack directory's cache: answers kept, failures retried soon, bursts share a call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

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
