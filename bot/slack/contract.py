"""What Slack's listeners and middleware work with, apart from the front end itself:
where a request came from (``Where``), how to answer it (``Answer``), a line as its
author typed it (``plain``), and ``Front``, the part of ``bot.slack.front.SlackFront``
they call. With this module between them, ``bot.slack.front`` imports its listeners and
they never import it back."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.alerts.parsers import ChatRule
    from bot.commands import Reply
    from engine.access.rules import Actor
    from engine.runs.engine import Engine
    from engine.runs.outbox import Outbox

LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
MENTION_FIRST = re.compile(r"^\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>\s*")


def plain(text: str) -> str:
    """What a person typed, from Slack's markup: links and mentions back to their text
    (``<https://x|x>`` -> ``x``, ``<#C1|ops>`` -> ``#ops``, ``<@U1>`` -> ``U1``), entities
    unescaped. The command parser then sees the line as written."""

    def one(m: re.Match[str]) -> str:
        target, label = m.group(1), m.group(2)
        if target.startswith("#"):
            return f"#{label}" if label else target
        if target.startswith("@"):
            return label or target[1:]
        if target.startswith("!subteam^"):
            return label or target
        return label or target

    return html.unescape(LINK.sub(one, text))


Answer = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
"""How a request is answered: ``answer(text, blocks)``."""


@dataclass
class Where:
    """Where a Slack request came from, and how to answer there."""

    channel: str | None
    channel_name: str | None
    user: str
    thread_ts: str | None = None

    def source(self) -> dict[str, Any]:
        out: dict[str, Any] = {"front_end": "slack", "user": self.user}
        if self.channel:
            out["channel"] = self.channel
        if self.channel_name:
            out["channel_name"] = self.channel_name
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        return out


class Front(Protocol):
    """The Slack front end as its listeners and middleware see it (``SlackFront``)."""

    @property
    def client(self) -> AsyncWebClient: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def bot_ids(self) -> set[str]: ...
    @property
    def chat_rules(self) -> list[ChatRule]: ...

    def later(self, work: Coroutine[Any, Any, Any], answer: Answer | None = None) -> None: ...
    async def sorry(self, answer: Answer) -> None: ...
    def teller(self, where: Where) -> Answer: ...
    async def chat_alert(self, event: dict[str, Any]) -> None: ...
    async def actor(self, user: str, name: str = "") -> Actor: ...
    async def channel_name(self, channel: str | None, given: str | None = None) -> str | None: ...
    async def run_command(
        self,
        actor: Actor,
        text: str,
        where: Where,
        answer: Any,
        trigger_id: str | None = None,
        quiet: bool = False,
    ) -> Reply: ...
    async def open_form(self, trigger_id: str, form: dict[str, Any], where: Where) -> bool: ...
    async def tell(self, where: Where, text: str, body: list[dict[str, Any]]) -> None: ...
