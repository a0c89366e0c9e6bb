"""Playbook definitions, stored once per version: the one place that writes and reads them.

A run keeps the definition it began with (a resumed or retried run goes on with it even
if the playbook's file changed since). Kept with every run, it was 800 of the 1,000 bytes
of a run's row; here each distinct definition is one row of ``definitions``, keyed by the
digest of its canonical JSON, and a run holds the digest (``runs.definition_digest``).
Runs of the same playbook version share the row.

Whoever stores a definition writes ``put``'s op in the same unit as the run that refers
to it: an upsert that also moves ``used_at`` to the run's start. That move is what makes
pruning safe (``storage.prune``): a prune deletes a definition only when no run refers to
it *and* its ``used_at`` is older than the prune's cutoff, re-checked on the row as the
delete reaches it; a run being admitted at that moment has moved ``used_at`` (or waits,
and inserts the row again once the delete commits), so it never points at a deleted row.

Definitions never change under their digest, so what this process has read once is kept
(``CACHE`` of them, as canonical JSON: every caller gets its own copy).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from storage import tables as t
from storage.errors import StorageError
from storage.rows import Rows
from storage.store import Store

DIGEST = 32  # hex digits of SHA-256 kept: 128 bits
CACHE = 256  # definitions kept in memory per process

_cache: dict[str, str] = {}  # digest -> canonical JSON, oldest first
_lock = threading.Lock()  # reads run in worker threads


def canonical(definition: dict[str, Any]) -> str:
    """The JSON a digest is taken of: keys sorted, no spaces, text as it is."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(definition: dict[str, Any]) -> str:
    """The key of ``definition``: the first 128 bits of the SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical(definition).encode()).hexdigest()[:DIGEST]


def put(definition: dict[str, Any], at: datetime) -> tuple[str, Rows]:
    """The digest of ``definition`` and the op storing it, used at ``at`` (to be written
    with the run that refers to it)."""
    text = canonical(definition)
    key = hashlib.sha256(text.encode()).hexdigest()[:DIGEST]
    _keep(key, text)
    return key, Rows("definition_put", [{"digest": key, "body": definition, "used_at": at}])


def fetch(conn: sa.Connection, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The definitions of ``digests`` (read from the database only when not cached)."""
    found: dict[str, str] = {}
    missing = []
    for key in set(digests):
        text = _cache.get(key)
        if text is None:
            missing.append(key)
        else:
            found[key] = text
    if missing:
        d = t.definitions.c
        for row in conn.execute(sa.select(d.digest, d.body).where(d.digest.in_(missing))):
            found[row.digest] = canonical(row.body)
            _keep(row.digest, found[row.digest])
    lost = sorted(set(missing) - found.keys())
    if lost:
        raise StorageError(f"the playbook definitions {', '.join(lost)} are missing")
    return {key: json.loads(text) for key, text in found.items()}


def one(conn: sa.Connection, key: str) -> dict[str, Any]:
    return fetch(conn, [key])[key]


async def read(store: Store, key: str) -> dict[str, Any]:
    """The definition ``key`` (a run's ``definition_digest``)."""
    cached = _cache.get(key)
    if cached is not None:
        return dict(json.loads(cached))  # a copy of its own
    return await store.read(lambda conn: one(conn, key))


def _keep(key: str, text: str) -> None:
    with _lock:
        if key in _cache:
            return
        while len(_cache) >= CACHE:
            del _cache[next(iter(_cache))]  # the oldest kept
        _cache[key] = text
