"""Dashboard sessions, kept in the database (``dashboard_sessions``) so that every
replica knows a login and a logout ends it everywhere.

The session id is the secret a browser holds in its cookie; the table keeps only its
SHA-256, so whoever reads the table (a backup, a replica's log) cannot log in with it.
Each session carries its own CSRF token, sent back in every form of the dashboard.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from storage import tables as t
from storage.store import Store


@dataclass(frozen=True)
class Session:
    id: str
    """The secret of the cookie (only its hash is stored)."""
    person: str
    csrf: str
    expires_at: datetime


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(store: Store, person: str, now: datetime, ttl: float) -> Session:
    """A new session of ``person`` until ``now + ttl`` seconds. Sessions that ended are
    deleted on the way (by the index on their end), so the table holds live ones."""
    session = Session(
        id=secrets.token_urlsafe(32),
        person=person,
        csrf=secrets.token_urlsafe(32),
        expires_at=now + timedelta(seconds=ttl),
    )
    row = {
        "id_sha256": _hash(session.id),
        "person": person,
        "csrf": session.csrf,
        "created_at": now,
        "expires_at": session.expires_at,
    }
    sessions = t.dashboard_sessions
    await store.write(
        sessions.delete().where(sessions.c.expires_at <= now), sessions.insert().values(row)
    )
    return session


async def find(store: Store, session_id: str, now: datetime) -> Session | None:
    """The live session whose cookie holds ``session_id`` (None: unknown or ended)."""
    if not session_id or len(session_id) > 100:
        return None
    sessions = t.dashboard_sessions
    row = await store.one(
        sa.select(sessions.c.person, sessions.c.csrf, sessions.c.expires_at).where(
            sessions.c.id_sha256 == _hash(session_id), sessions.c.expires_at > now
        )
    )
    if row is None:
        return None
    return Session(session_id, row.person, row.csrf, row.expires_at)


async def close(store: Store, session_id: str) -> None:
    """End a session (logout): its row goes, on every replica at once."""
    sessions = t.dashboard_sessions
    await store.write(sessions.delete().where(sessions.c.id_sha256 == _hash(session_id)))
