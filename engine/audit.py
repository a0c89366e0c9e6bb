"""The audit trail: who did what, to what, from where, and how it ended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import tables as t
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


def tries_from(action: str, remote: str, since: datetime) -> sa.Select[Any]:
    """How many times ``remote`` (the ``source`` address) did ``action`` since ``since``,
    on any node, not counting the tries refused for being too many."""
    return (
        sa.select(sa.func.count())
        .select_from(t.audit)
        .where(
            t.audit.c.at >= since,
            t.audit.c.action == action,
            t.audit.c.outcome != "limited",
            t.audit.c.source["remote"].as_string() == remote,
        )
    )
