"""What the cards are told: where to post besides the run's own place, and how often."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CardOptions:
    interval: float = 1.0  # seconds between two edits of one card
    runs_channel: str | None = None  # runs not asked for in Slack
    oncall_channel: str | None = None  # failure notices, besides the run's thread
    approvals_channel: str | None = None  # a copy of every approval prompt
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # Baton groups
