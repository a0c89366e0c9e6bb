"""Pending alerts across replicas: which node routes each, and taking over those of a
node gone.

A pending alert's row names the ``baton serve`` node whose queue holds it (``node``). A
node that stops cleanly lets its pending alerts go (``node`` back to none); one that dies
leaves them named after it. Any live node takes over the alerts that no live node holds,
oldest first, in one statement per round, so two nodes looking at once never both take
one (rows another session holds locked are left for the next round).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import tables as t

_a = t.alerts.c


SERVERS = sa.select(t.nodes.c.id).where(t.nodes.c.kind == "serve")


def take_over(
    me: str, alive_since: datetime, dead: Sequence[str], limit: int, *, mine: bool = False
) -> Callable[[sa.Connection], list[Any]]:
    """The op that makes ``me`` the node of up to ``limit`` pending alerts whose node is
    none, ``dead`` (known gone: a process of this host that exited) or not a ``serve``
    node that beat after ``alive_since`` (``mine``: or ``me``), and returns their rows in
    the order received."""
    live = sa.select(t.nodes.c.id).where(
        t.nodes.c.kind == "serve", t.nodes.c.heartbeat_at > alive_since
    )
    gone = sa.or_(_a.node.not_in(live), _a.node.in_(list(dead))) if dead else _a.node.not_in(live)
    orphaned = sa.and_(
        _a.outcome == "pending",
        sa.or_(
            _a.node.is_(None), _a.node == me if mine else sa.false(), sa.and_(_a.node != me, gone)
        ),
    )
    look = (
        sa.select(_a.id)
        .where(orphaned)
        .order_by(_a.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )

    def op(conn: sa.Connection) -> list[Any]:
        ids = [r.id for r in conn.execute(look)]
        if not ids:
            return []
        # the condition again: the database re-checks it under the row lock
        conn.execute(t.alerts.update().where(_a.id.in_(ids), orphaned).values(node=me))
        return list(
            conn.execute(sa.select(t.alerts).where(_a.id.in_(ids), _a.node == me).order_by(_a.id))
        )

    return op


def let_go(me: str) -> sa.Update:
    """``me`` stops: its pending alerts are for another node to take over at once."""
    return t.alerts.update().where(_a.outcome == "pending", _a.node == me).values(node=None)
