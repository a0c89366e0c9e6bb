"""Posting through the ``chat_posts`` outbox: a message is claimed before it is posted,
so a retried event, a restart or another Baton never posts it twice; one posted before
is edited in place. A card Slack refuses in a channel Baton is not in goes to the
requester's DM, saying why; a step output too long for a message goes up as a file."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from engine.runs.engine import Engine
from engine.runs.outbox import Outbox, Post
from engine.views import queries

log = logging.getLogger("bot.slack.cards")

NOT_THERE = ("not_in_channel", "channel_not_found", "is_archived", "restricted_action")


class Poster:
    """Slack's Web API and the outbox, for the cards of one engine."""

    def __init__(self, *, engine: Engine, client: AsyncWebClient, outbox: Outbox) -> None:
        self.engine = engine
        self.client = client
        self.outbox = outbox

    async def post(
        self, channel: str, text: str, body: list[dict[str, Any]], thread: str | None
    ) -> str | None:
        resp = await self.client.chat_postMessage(
            channel=channel, thread_ts=thread, text=text, blocks=body
        )
        return str(resp["ts"])

    async def once(
        self, data: dict[str, Any], kind: str, channel: str, thread: str | None, step: str = ""
    ) -> Post | None:
        """Claim a one-time message; None when it was claimed before (posted already)."""
        post = await self.outbox.claim(
            data["id"], kind, channel, step_id=step, thread_ts=thread, at=self.engine.clock.now()
        )
        return post if post.fresh else None

    async def post_card(
        self, card: Post, text: str, body: list[dict[str, Any]], requester: str | None
    ) -> tuple[str | None, str | None]:
        try:
            resp = await self.client.chat_postMessage(
                channel=card.channel, thread_ts=card.thread_ts, text=text, blocks=body
            )
            return resp["ts"], resp["channel"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in NOT_THERE or requester is None:
                log.warning("cannot post the card of run %s: %s", card.run_id, error)
                return None, None
        # Not a member of the channel: tell the requester, in a DM, and keep the card there.
        hint = blocks.context(
            f":information_source: I cannot post in <#{card.channel}> ({error}): "
            "invite me with `/invite @Baton` to see run cards there."
        )
        resp = await self.client.chat_postMessage(
            channel=requester, text=text, blocks=[*body[: blocks.MAX_BLOCKS - 1], hint]
        )
        return resp["ts"], resp["channel"]

    async def upsert(
        self,
        run_id: str,
        kind: str,
        step: str,
        channel: str,
        thread: str | None,
        text: str,
        body: list[dict[str, Any]],
    ) -> None:
        """Post a message once, then edit it in place (the outbox remembers where)."""
        now = self.engine.clock.now()
        post = await self.outbox.claim(
            run_id, kind, channel, step_id=step, thread_ts=thread, at=now
        )
        if post.ts is not None:
            await self.client.chat_update(channel=post.channel, ts=post.ts, text=text, blocks=body)
            return
        ts: str | None = None
        where: str | None = None
        try:
            resp = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread, text=text, blocks=body
            )
            ts, where = str(resp["ts"]), str(resp["channel"])
        except SlackApiError as exc:
            log.warning("cannot post %s of run %s: %s", kind, run_id, exc.response.get("error"))
        # the channel's id, not the #name the setting gave: chat.update takes ids only
        await self.outbox.posted(post, ts=ts, at=now, channel=where)

    async def upload(self, data: dict[str, Any], channel: str, thread: str, step: str) -> None:
        """The whole output of a step, as a file in the thread (never cut silently)."""
        full = await queries.full_outputs(self.engine.store, data["id"], step)
        content = blocks.output_text(full)
        if not content:
            return
        await self.client.files_upload_v2(
            channel=channel,
            thread_ts=thread,
            content=content,
            filename=f"{data['playbook']}-{data['id']}-{step}.txt",
            title=f"output of step {step} (run {data['id']})",
        )
