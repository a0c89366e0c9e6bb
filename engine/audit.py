"""The audit trail: who did what, to what, from where, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import tables as t
from storage.store import Op


def op(
    at: datetime,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    outcome: str = "ok",
    source: dict[str, Any] | None = None,
) -> Op:
    """The insert of one audit row, to commit with the change it records."""
    return t.audit.insert().values(
        at=at,
        actor=actor,
        action=action,
        target=target,
        source=source or {},
        detail=detail,
        outcome=outcome,
    )
