"""Who may decide on an approval gate, for the engine: the step's ``approvers`` against
the deciding user's Slack user groups (looked up and cached by the Slack front end, when
there is one) and the Baton groups of ``BATON_CONFIG``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.access import rules as access

GroupsOf = Callable[[str], Awaitable[frozenset[str]]]


class ApproverCheck:
    def __init__(self, rules: access.AccessRules, groups_of: GroupsOf | None = None) -> None:
        self.rules = rules
        self.groups_of = groups_of

    async def __call__(self, user: str, approvers: dict[str, Any]) -> bool:
        usergroups: frozenset[str] = frozenset()
        named = bool(approvers.get("usergroups"))
        if not named:
            named = self.rules.names_usergroups(approvers.get("groups") or [])
        if self.groups_of is not None and named:
            usergroups = await self.groups_of(user)
        actor = access.Actor(id=user, usergroups=usergroups)
        return access.may_approve(self.rules, actor, approvers)
