"""What a run's thread and the on-call channel are told besides the card: a failed
step (its output uploaded when cut), the run's failure with who to mention, an alert
resolved, and the alert lines a card started by an alert shows."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.slack import blocks
from bot.slack.cards.options import CardOptions
from bot.slack.cards.posting import Poster
from bot.slack.people import Directory
from engine import events as ev
from engine.playbooks.durations import format_duration
from engine.runs.engine import Engine
from engine.runs.outbox import Post
from engine.views import queries

log = logging.getLogger("bot.slack.cards")


@dataclass
class Failure:
    step_id: str
    attempt: int
    error: str
    output: dict[str, Any]


class Notices:
    def __init__(
        self, *, engine: Engine, poster: Poster, directory: Directory, options: CardOptions
    ) -> None:
        self.engine = engine
        self.poster = poster
        self.directory = directory
        self.options = options

    async def step_failure(
        self, data: dict[str, Any], card: Post, thread: str, failure: Failure
    ) -> None:
        kind = f"step-failed:{data.get('attempt', 1)}:{failure.attempt}"
        post = await self.poster.once(data, kind, card.channel, thread, failure.step_id)
        if post is None:
            return
        text, body, cut = blocks.step_failure(
            data["id"], failure.step_id, failure.error, failure.output, failure.attempt
        )
        ts = await self.poster.post(card.channel, text, body, thread)
        await self.poster.outbox.posted(post, ts=ts, at=self.engine.clock.now())
        if cut:
            await self.poster.upload(data, card.channel, thread, failure.step_id)

    async def resolved(
        self, data: dict[str, Any], card: Post, thread: str, event: ev.AlertResolved
    ) -> None:
        key = f"resolved:{event.fingerprint}"[:64]
        post = await self.poster.once(data, key, card.channel, thread)
        if post is not None:
            name, took = blocks.escape(event.name), format_duration(event.after)
            line = f":white_check_mark: alert *{name}* resolved after {took}"
            ts = await self.poster.post(card.channel, line, [blocks.section(line)], thread)
            await self.poster.outbox.posted(post, ts=ts, at=self.engine.clock.now())

    async def alert_lines(self, run_id: str, source: dict[str, Any]) -> list[str]:
        """What a run started by an alert shows under its title: the alert, its links,
        its owners, how often it fired again, whether it is resolved."""
        alert = source.get("alert") or {}
        severity = f" ({blocks.escape(str(alert['severity']))})" if alert.get("severity") else ""
        lines = [
            f":rotating_light: alert *{blocks.escape(str(alert.get('name', '')))}*{severity}"
            f" from {alert.get('source', '?')}: {blocks.escape(str(alert.get('summary', '')))}"
        ]
        found = await queries.alert_links(self.engine.store, run_id)
        resolved = any(link["after"] is not None for link in found)
        links = [
            f"<{link['url']}|{blocks.escape(link.get('title') or 'link')}>"
            for link in alert.get("links") or []
            if str(link.get("url", "")).startswith(("http://", "https://"))
            # a silence is for a firing alert: once resolved, only the source is useful
            and not (resolved and link.get("title") in ("Alertmanager", "Silence"))
        ]
        if links:
            lines.append(" · ".join(links[:8]))
        owners = [await self.directory.mention(m) for m in source.get("mention") or []]
        if owners:
            lines.append("owners: " + " ".join(owners))
        for link in found:
            if link["repeats"]:
                lines.append(f"fired {link['repeats']} more time{'s' * (link['repeats'] > 1)}")
            if link["after"] is not None:
                lines.append(f":white_check_mark: resolved after {format_duration(link['after'])}")
        return lines

    async def run_failure(
        self, data: dict[str, Any], card: Post | None, thread: str | None
    ) -> None:
        """The run failed: a notice in its thread and one in the on-call channel (the
        playbook's, else the setting's), mentioning whoever the playbook names."""
        attempt = data.get("attempt", 1)
        mentions: list[str] = []
        oncall = self.options.oncall_channel
        if data["playbook"] in self.engine.catalog:
            notify = self.engine.catalog.get(data["playbook"]).notify
            mentions = [await self.directory.mention(m) for m in notify.mention]
            oncall = notify.channel or oncall
        tail = ""
        failed = [s for s in data["steps"] if s["id"] == data.get("failed_step")]
        if failed:
            tail = blocks.clip_tail(blocks.output_text(failed[0]["output"]), 1500)[0]
        poster = self.poster
        if card is not None:
            here = await poster.once(data, f"run-failed:{attempt}", card.channel, thread)
            if here is not None:
                text, body = blocks.run_failure(data, tail, mentions=mentions)
                ts = await poster.post(card.channel, text, body, thread)
                await poster.outbox.posted(here, ts=ts, at=self.engine.clock.now())
        if oncall is None or (card is not None and oncall == card.channel):
            return
        there = await poster.once(data, f"oncall:{attempt}", oncall, None)
        if there is None:
            return
        link = None
        if card is not None:
            with contextlib.suppress(SlackApiError):
                got = await poster.client.chat_getPermalink(
                    channel=card.channel, message_ts=str(card.ts)
                )
                link = got.get("permalink")
        text, body = blocks.run_failure(data, tail, mentions=mentions, link=link)
        try:
            ts = await poster.post(oncall, text, body, None)
        except SlackApiError as exc:
            log.warning(
                "cannot post in the on-call channel %s: %s", oncall, exc.response.get("error")
            )
            ts = None
        await poster.outbox.posted(there, ts=ts, at=self.engine.clock.now())
