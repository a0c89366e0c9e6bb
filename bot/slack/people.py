"""Who is who in the workspace: user groups, channel names, and how to mention them.

Answers come from Slack's Web API and are cached for ``ttl`` seconds, so a burst of
commands costs one ``usergroups.list`` call, not one per command. A lookup that fails
(a missing scope, Slack down, a proxy's error page) is logged and answers empty: access
rules that name user groups then refuse rather than guess, and a channel goes by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.blocks import markup
from bot.slack.client import reason

log = logging.getLogger(__name__)

T = TypeVar("T")


class Directory:
    """A failed lookup is kept only ``retry`` seconds (not the whole ``ttl``), and a burst
    of requests after the cache expires makes one call, not one each."""

    def __init__(self, client: AsyncWebClient, ttl: float = 300.0, retry: float = 10.0) -> None:
        self.client = client
        self.ttl = ttl
        self.retry = retry
        self._groups: tuple[float, dict[str, tuple[str, frozenset[str]]]] | None = None
        self._channels: dict[str, tuple[float, str | None]] = {}
        self._lock = asyncio.Lock()
        self._channel_lock = asyncio.Lock()

    async def _cached_call(
        self, what: str, call: Callable[[], Awaitable[T]], empty: T
    ) -> tuple[T, float]:
        """The answer and until when (monotonic) it may be kept."""
        try:
            return await call(), time.monotonic() + self.ttl
        except Exception as exc:  # refused, Slack down, a proxy's page: empty, try again soon
            log.warning("Slack %s failed: %s", what, reason(exc))
        return empty, time.monotonic() + self.retry

    async def usergroups(self) -> dict[str, tuple[str, frozenset[str]]]:
        """id -> (handle, member ids) for every user group of the workspace."""
        if self._groups is not None and time.monotonic() < self._groups[0]:
            return self._groups[1]
        async with self._lock:
            if self._groups is not None and time.monotonic() < self._groups[0]:
                return self._groups[1]  # another request fetched them meanwhile
            return await self._fetch_groups()

    async def _fetch_groups(self) -> dict[str, tuple[str, frozenset[str]]]:
        async def fetch() -> dict[str, tuple[str, frozenset[str]]]:
            resp = await self.client.usergroups_list(include_users=True)
            found: dict[str, tuple[str, frozenset[str]]] = {}
            for group in resp.get("usergroups") or []:
                users = group.get("users")
                if users is None:
                    more = await self.client.usergroups_users_list(usergroup=group["id"])
                    users = more.get("users") or []
                found[group["id"]] = (str(group.get("handle") or ""), frozenset(users))
            return found

        empty: dict[str, tuple[str, frozenset[str]]] = {}
        groups, until = await self._cached_call("usergroups.list", fetch, empty)
        self._groups = (until, groups)
        return groups

    async def groups_of(self, user: str) -> frozenset[str]:
        """The user groups ``user`` is in, by id and by ``@handle``."""
        out: set[str] = set()
        for group_id, (handle, members) in (await self.usergroups()).items():
            if user in members:
                out.add(group_id)
                if handle:
                    out.add(f"@{handle}")
        return frozenset(out)

    async def channel_name(self, channel: str) -> str:
        """The channel's name; its id when Slack does not say (the lookup failed)."""
        hit = self._channels.get(channel)
        if hit is None or time.monotonic() >= hit[0]:
            async with self._channel_lock:
                hit = self._channels.get(channel)
                if hit is None or time.monotonic() >= hit[0]:  # nobody looked it up meanwhile
                    hit = self._channels[channel] = await self._fetch_channel(channel)
        return hit[1] or channel

    async def _fetch_channel(self, channel: str) -> tuple[float, str | None]:

        async def fetch() -> str | None:
            resp = await self.client.conversations_info(channel=channel)
            info: dict[str, Any] = resp.get("channel") or {}
            return info.get("name")

        name, until = await self._cached_call("conversations.info", fetch, None)
        return until, name

    async def mention(self, who: str) -> str:
        """Slack markup that mentions ``who``: a user id, a user group id or ``@handle``,
        a channel id or ``#name``; anything else as written."""
        quick = markup(who)
        if quick != who:
            return quick
        if who in ("@here", "@channel"):
            return f"<!{who[1:]}>"
        if who.startswith("@"):
            for group_id, (handle, _) in (await self.usergroups()).items():
                if handle.lower() == who[1:].lower():
                    return f"<!subteam^{group_id}>"
        return who
