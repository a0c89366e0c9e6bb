"""Commands typed to Baton: the ``/baton`` slash command, ``@baton`` mentions, DMs.

Each acknowledges first and then runs the line through ``Commands`` in a task of its
own, so the acknowledgement never waits for the work (and a failure of that work is
answered too: something went wrong, see the log). Answers go where
the question was: the slash command's answer only to its author (through its
``response_url``), a mention's answer in the mention's thread, a DM's in the DM.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.slack.contract import MENTION_FIRST, Answer, Front, Where, plain

SLASH = re.compile(r"^/baton")


def register(app: AsyncApp, front: Front) -> None:
    @app.command(SLASH)
    async def slash(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()

        async def answer(text: str, blocks: list[dict[str, Any]]) -> None:
            await respond(text=text, blocks=blocks, response_type="ephemeral")

        front.later(slash_work(body, answer), answer)

    async def slash_work(body: dict[str, Any], answer: Answer) -> None:
        user = body["user_id"]
        where = Where(
            channel=body.get("channel_id"),
            channel_name=await front.channel_name(body.get("channel_id"), body.get("channel_name")),
            user=user,
        )
        actor = await front.actor(user, body.get("user_name", ""))
        await front.run_command(
            actor, plain(body.get("text") or "help"), where, answer, body.get("trigger_id")
        )

    def in_thread(client: Any, channel: str, thread: str | None) -> Answer:
        async def answer(text: str, blocks: list[dict[str, Any]]) -> None:
            await client.chat_postMessage(
                channel=channel, thread_ts=thread, text=text, blocks=blocks
            )

        return answer

    @app.event("app_mention")
    async def mention(event: dict[str, Any], client: Any) -> None:
        user = event.get("user")
        if not user or event.get("bot_id"):
            return
        thread = event.get("thread_ts") or event["ts"]
        answer = in_thread(client, event["channel"], thread)
        front.later(mention_work(event, user, thread, answer), answer)

    async def mention_work(event: dict[str, Any], user: str, thread: str, answer: Answer) -> None:
        channel = event["channel"]
        where = Where(channel, await front.channel_name(channel), user, thread_ts=thread)
        line = MENTION_FIRST.sub("", event.get("text") or "").strip()
        await front.run_command(await front.actor(user), plain(line) or "help", where, answer)

    @app.event("message")
    async def direct(event: dict[str, Any], client: Any) -> None:
        """DMs to Baton are commands; messages in watched channels may be alerts."""
        if event.get("channel_type") in ("channel", "group"):
            mine = {event.get("user"), event.get("bot_id")} & front.bot_ids
            if front.chat_rules and event.get("subtype") in (None, "bot_message") and not mine:
                front.later(front.chat_alert(event))  # never Baton's own cards and notices
            return
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        user = event.get("user")
        if not user:
            return
        answer = in_thread(client, event["channel"], event.get("thread_ts"))
        front.later(direct_work(event, user, answer), answer)

    async def direct_work(event: dict[str, Any], user: str, answer: Answer) -> None:
        where = Where(event["channel"], None, user, thread_ts=event.get("thread_ts"))
        await front.run_command(
            await front.actor(user), plain(event.get("text") or "help"), where, answer
        )
