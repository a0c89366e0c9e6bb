"""Concurrency keys across nodes: a run takes a place under its key in the very commit
that starts it.

Each node counts a key's holders before it starts a run, but two nodes counting at once
would both see the last place free. So the start's own transaction checks again, under
a lock every node takes for that key: on PostgreSQL a transaction advisory lock on the
key's hash, on SQLite the write lock every write transaction takes first (``BEGIN
IMMEDIATE``). A run that finds its key full there is not started; its node queues it
(or refuses it) as if it had counted the key full in the first place."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from storage import locks
from storage import tables as t

HOLDING = ("running", "waiting")


class KeyFull(Exception):
    """The key had no place left when the start was committed."""

    def __init__(self, key: str, taken: int) -> None:
        super().__init__(f"concurrency key {key!r} is full ({taken} held)")
        self.taken = taken


def holders(key: str, run_id: str, *, queued: bool) -> sa.Select[Any]:
    """How many runs other than ``run_id`` hold key ``key`` (with ``queued``: or wait in
    its queue, which a new run lines up behind)."""
    statuses = [*HOLDING, "queued"] if queued else list(HOLDING)
    return (
        sa.select(sa.func.count())
        .select_from(t.runs)
        .where(
            t.runs.c.concurrency_key == key,
            t.runs.c.status.in_(statuses),
            t.runs.c.id != run_id,
        )
    )


def place(key: str, run_id: str, limit: int, *, queued: bool, postgres: bool) -> Any:
    """The op that fails its commit with ``KeyFull`` unless ``key`` has a place for
    ``run_id``; put it before the ops that start the run."""

    def op(conn: sa.Connection) -> int:
        if postgres:
            locks.hold(conn, f"concurrency:{key}")
        taken = int(conn.execute(holders(key, run_id, queued=queued)).scalar_one())
        if taken >= limit:
            raise KeyFull(key, taken)
        return taken

    return op
