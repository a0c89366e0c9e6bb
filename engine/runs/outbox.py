"""The chat outbox: which message about a run was posted where.

A front end that posts about a run (its card, a failure notice, an uploaded output)
first *claims* the key (run, step, kind) in the ``chat_posts`` table, then posts, then
records the message's ``ts``. The claim is what makes posting at most once: a second
claim of the same key, from a retried event, a restart or another process, finds the
row and gets it back instead of a fresh claim, so the caller edits that message (when it
has a ``ts``) or leaves it alone. The table is also how a card survives a restart: the
run's card is found by its key and edited in place.

Slack's event ids go here too (``seen_event``): an event Slack delivers twice is
handled once, across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage import tables as t
from storage.store import Store

EVENT_MEMORY = timedelta(days=1)


@dataclass(frozen=True)
class Post:
    run_id: str
    step_id: str
    kind: str
    channel: str
    thread_ts: str | None
    ts: str | None
    state: str
    fresh: bool = False  # True: this call made the claim (the caller posts)


def _post(row: sa.Row[tuple[object, ...]], fresh: bool = False) -> Post:
    return Post(
        run_id=str(row.run_id),
        step_id=str(row.step_id),
        kind=str(row.kind),
        channel=str(row.channel),
        thread_ts=row.thread_ts,
        ts=row.ts,
        state=str(row.state),
        fresh=fresh,
    )


def _key(run_id: str, step_id: str, kind: str) -> sa.ColumnElement[bool]:
    c = t.chat_posts.c
    return sa.and_(c.run_id == run_id, c.step_id == step_id, c.kind == kind)


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def find(self, run_id: str, kind: str, step_id: str = "") -> Post | None:
        row = await self.store.one(sa.select(t.chat_posts).where(_key(run_id, step_id, kind)))
        return _post(row) if row is not None else None

    async def claim(
        self,
        run_id: str,
        kind: str,
        channel: str,
        *,
        step_id: str = "",
        thread_ts: str | None = None,
        at: datetime,
    ) -> Post:
        """Claim the key, or return whoever claimed it first (``fresh`` False)."""

        def op(conn: sa.Connection) -> Post:
            row = conn.execute(sa.select(t.chat_posts).where(_key(run_id, step_id, kind))).first()
            if row is not None:
                return _post(row)
            conn.execute(
                t.chat_posts.insert().values(
                    run_id=run_id,
                    step_id=step_id,
                    kind=kind,
                    channel=channel,
                    thread_ts=thread_ts,
                    state="claimed",
                    created_at=at,
                )
            )
            return Post(run_id, step_id, kind, channel, thread_ts, None, "claimed", fresh=True)

        try:
            (post,) = await self.store.write(op)
        except sa.exc.IntegrityError:  # another process claimed it between our two statements
            found = await self.find(run_id, kind, step_id)
            if found is None:
                raise
            return found
        return post

    async def posted(
        self, post: Post, *, ts: str | None, at: datetime, channel: str | None = None
    ) -> None:
        """Record where the claimed message went (``ts`` None: posting failed for good)."""
        values: dict[str, object] = {"ts": ts, "updated_at": at}
        values["state"] = "posted" if ts is not None else "failed"
        if channel is not None:
            values["channel"] = channel
        await self.store.write(
            t.chat_posts.update().where(_key(post.run_id, post.step_id, post.kind)).values(values)
        )

    async def seen_event(self, event_id: str, at: datetime) -> bool:
        """True when ``event_id`` was handled before; records it otherwise."""

        def op(conn: sa.Connection) -> bool:
            c = t.slack_events.c
            if conn.execute(sa.select(c.event_id).where(c.event_id == event_id)).first():
                return True
            conn.execute(t.slack_events.insert().values(event_id=event_id, received_at=at))
            conn.execute(t.slack_events.delete().where(c.received_at < at - EVENT_MEMORY))
            return False

        try:
            (seen,) = await self.store.write(op)
        except sa.exc.IntegrityError:
            return True
        return bool(seen)
