"""Approval prompts in a run's thread (and their copy in the approvals channel), edited
as decisions come, and the reminders and escalations that name who must decide."""

from __future__ import annotations

from typing import Any

from bot.slack import blocks
from bot.slack.cards.options import CardOptions
from bot.slack.cards.posting import Poster
from bot.slack.people import Directory
from engine.runs.engine import Engine
from engine.runs.outbox import Post
from engine.views import queries


class Approvals:
    def __init__(
        self, *, engine: Engine, poster: Poster, directory: Directory, options: CardOptions
    ) -> None:
        self.engine = engine
        self.poster = poster
        self.directory = directory
        self.options = options

    async def approvers_text(self, spec: dict[str, Any], requested_by: str) -> str:
        """Who may decide, as mentions (a Baton group with its members)."""
        approvers = spec.get("approvers") or {}
        shown = [await self.directory.mention(u) for u in approvers.get("users") or []]
        for ug in approvers.get("usergroups") or []:
            shown.append(await self.directory.mention(ug if ug[:1] in "@S" else f"@{ug}"))
        for name in approvers.get("groups") or []:
            members = [await self.directory.mention(m) for m in self.options.groups.get(name, ())]
            shown.append(f"group {name}" + (f" ({' '.join(members)})" if members else ""))
        if not shown:
            shown = ["anyone"]
        if not spec.get("allow_self_approval"):
            shown.append(f"(not <@{requested_by}>, who asked)")
        return " ".join(shown)

    async def gate(self, card: Post | None, thread: str | None, approval_id: str) -> None:
        """The prompt of one gate, posted once and then edited to its current state."""
        gate = await queries.approval_view(self.engine.store, approval_id)
        approvers = await self.approvers_text(gate["spec"], gate["requested_by"])
        text, body = blocks.approval_prompt(gate, approvers, self.engine.clock.now())
        if gate["status"] == "pending":  # the approvers are notified from the text
            text = f"{approvers}: {text}"
        key, step = f"approval:{approval_id}", gate["step_id"]
        upsert = self.poster.upsert
        if card is not None:
            await upsert(gate["run_id"], key, step, card.channel, thread, text, body)
        copy = self.options.approvals_channel
        if copy is not None and (card is None or copy != card.channel):
            await upsert(gate["run_id"], f"{key}:copy", step, copy, None, text, body)

    async def nudge(
        self, card: Post, thread: str, approval_id: str, kind: str, whom: dict[str, list[str]]
    ) -> None:
        """A reminder or an escalation (``kind``) naming ``whom`` but those who decided."""
        gate = await queries.approval_view(self.engine.store, approval_id)
        if gate["status"] != "pending":
            return
        decided = {d["user"] for d in gate["decisions"]}
        spec = {**gate["spec"], "approvers": whom}
        mentions = await self.approvers_text(spec, gate["requested_by"])
        for user in decided:
            mentions = mentions.replace(f"<@{user}>", "").replace("  ", " ")
        deadline = blocks.when(gate["deadline_at"])
        if kind == "escalated":
            head = f":arrow_up: approval `{approval_id}` escalated: {mentions} please decide"
        else:
            head = f":bell: reminder: approval `{approval_id}` waits for {mentions}"
        line = head + (f" by {deadline}" if deadline else "")
        text = f"approval {approval_id} {kind}"
        await self.poster.post(card.channel, text, [blocks.section(line)], thread)
        copy = self.options.approvals_channel
        if copy is not None and copy != card.channel:
            await self.poster.post(copy, text, [blocks.section(line)], None)
