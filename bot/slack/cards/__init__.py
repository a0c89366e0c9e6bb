"""Run cards in Slack, from the engine's events: ``feed`` (``Cards``: intake, pacing,
where each card goes and what it shows), ``posting`` (the outbox, the DM fallback,
uploads), ``approvals`` (prompts, reminders, escalations), ``notices`` (failures,
on-call, resolved alerts) and ``options``."""

from __future__ import annotations

from bot.slack.cards.feed import Cards
from bot.slack.cards.options import CardOptions

__all__ = ["CardOptions", "Cards"]
