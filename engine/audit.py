"""The audit trail: who did what, to what, from where, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.rows import Rows


def op(
    at: datetime,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any],
    outcome: str = "ok",
    source: dict[str, Any] | None = None,
) -> Rows:
    """The insert of one audit row, to commit with the change it records (in any unit:
    the store writes it with the unit's other ``Rows``, in the order the units gave)."""
    return Rows(
        "audit_new",
        [
            {
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "source": source or {},
                "detail": detail,
                "outcome": outcome,
            }
        ],
    )
