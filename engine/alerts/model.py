"""Alerts from monitoring, normalized: what every source's webhook becomes.

A parser (``bot/alerts/parsers/``) turns one webhook body into ``Alert`` records (and
``Rejected`` ones for entries it could not read); the router (``engine/alerts/router.py``)
matches them against playbooks' alert triggers, deduplicates repeats by fingerprint,
holds what exceeds the rate limits, and links resolutions to the runs they started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Status = Literal["firing", "resolved"]

# what became of a stored alert (``alerts.outcome``)
OUTCOMES = ("pending", "started", "attached", "held", "unmatched", "resolved", "failed", "rejected")


@dataclass(frozen=True)
class Link:
    url: str
    title: str = ""


@dataclass(frozen=True)
class Alert:
    """One alert as Baton knows it, whatever sent it.

    ``fingerprint`` identifies the alert across notifications (the source's own when it
    has one, else a stable hash of the source and the labels); ``status`` is ``firing``
    or ``resolved``; ``labels`` and ``annotations`` are strings; ``severity`` is the
    source's severity when it has one (or the ``severity`` label); ``raw`` is the
    source's own record of this one alert, kept with it."""

    source: str
    fingerprint: str
    status: Status
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    severity: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    links: tuple[Link, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """What people call it: the ``alertname`` label, or a summary, or the fingerprint."""
        return (
            self.labels.get("alertname")
            or self.annotations.get("summary")
            or self.annotations.get("title")
            or self.fingerprint
        )

    @property
    def summary(self) -> str:
        return (
            self.annotations.get("summary")
            or self.annotations.get("description")
            or self.annotations.get("message")
            or self.name
        )


@dataclass(frozen=True)
class Rejected:
    """An entry of a webhook body that parsed as JSON but is not an alert Baton can use:
    stored with the reason, never routed."""

    source: str
    reason: str
    raw: Any = None
