"""Leases: which node drives which run, for how long, and who may take over.

Every process that opens the database is a *node* of one Baton (``baton serve``
replicas, ``baton run``, ``baton console``). A run in progress is driven by exactly one
node at a time, recorded in its row as ``owner`` (the node's id), ``epoch`` (bumped at
every change of owner) and ``lease_expires_at``. The owner renews its leases every
``renew`` seconds; every write of its driver is fenced by the epoch (``storage.store.guard``)
so a node that lost a run can no longer change it.

A node adopts a run only when its lease has expired, or when its owner is known to be
dead: a node on the same host whose process is gone (a restart after ``kill -9`` resumes
at once instead of waiting out the lease). Only ``baton serve`` nodes adopt; ``baton
run`` and ``baton console`` drive the runs they start and nothing else. A node that stops
cleanly releases its leases, so another node adopts its runs at once.

Node ids are ``host:pid:random``; the node table holds each node's heartbeat, so a
console can tell whether a server is alive to carry its runs on. Lease times come from
each node's clock: nodes on several machines need their clocks synchronised (NTP), as
with any lease.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.runs.state import RUNS_DRIVEN
from storage import tables as t

ACTIVE = RUNS_DRIVEN  # run statuses a driver works on (queued runs are admitted)


def node_id(host: str | None = None, pid: int | None = None) -> str:
    """A new node's id: ``host:pid:random`` (the random part tells two lives of one pid
    apart)."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def dead_on_this_host(owner: str, host: str) -> bool:
    """True when ``owner`` is a node of this host whose process has exited."""
    parts = owner.split(":")
    if len(parts) < 2 or parts[0] != host:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    return pid != os.getpid() and not _pid_alive(pid)


class Leases:
    """This node's view of leases: SQL only, no knowledge of how runs are driven."""

    def __init__(self, *, owner: str, kind: str, lease: float, renew: float) -> None:
        self.owner = owner
        self.kind = kind
        self.lease = timedelta(seconds=lease)
        self.renew = renew
        self.host = owner.split(":")[0]

    def expiry(self, now: datetime) -> datetime:
        return now + self.lease

    # --- the node row -------------------------------------------------------------------

    def register(self, now: datetime) -> sa.Executable:
        pid = self.owner.split(":")[1] if ":" in self.owner else "0"
        return t.nodes.insert().values(
            id=self.owner,
            kind=self.kind,
            host=self.host,
            pid=int(pid) if pid.isdigit() else 0,
            started_at=now,
            heartbeat_at=now,
        )

    def unregister(self) -> sa.Executable:
        return t.nodes.delete().where(t.nodes.c.id == self.owner)

    # --- renewing -----------------------------------------------------------------------

    def heartbeat(self, now: datetime, driving: Iterable[str]) -> Any:
        """The op that renews this node's leases and heartbeat; it returns the runs
        among ``driving`` that are no longer this node's, each with why (taken over by
        another node, ended elsewhere, deleted)."""
        expires = self.expiry(now)
        mine = set(driving)

        def op(conn: sa.Connection) -> dict[str, str]:
            conn.execute(
                t.runs.update()
                .where(
                    t.runs.c.owner == self.owner,
                    t.runs.c.status.in_(("queued", *ACTIVE)),
                )
                .values(lease_expires_at=expires)
            )
            beat = conn.execute(
                t.nodes.update().where(t.nodes.c.id == self.owner).values(heartbeat_at=now)
            )
            if not beat.rowcount:  # pruned as dead while this node was frozen: back again
                conn.execute(self.register(now))
            if not mine:
                return {}
            held = {
                r.id
                for r in conn.execute(
                    sa.select(t.runs.c.id).where(
                        t.runs.c.owner == self.owner, t.runs.c.status.in_(ACTIVE)
                    )
                )
            }
            lost = mine - held
            if not lost:
                return {}
            rows = conn.execute(
                sa.select(t.runs.c.id, t.runs.c.owner, t.runs.c.status).where(
                    t.runs.c.id.in_(sorted(lost))
                )
            )
            found = {r.id: _elsewhere(r.owner, r.status) for r in rows}
            return {run_id: found.get(run_id, "it was deleted") for run_id in lost}

        return op

    def release_all(self) -> sa.Executable:
        """This node goes away: every run in progress it holds is up for adoption."""
        return (
            t.runs.update()
            .where(t.runs.c.owner == self.owner, t.runs.c.status.in_(("queued", *ACTIVE)))
            .values(owner=None, lease_expires_at=None)
        )

    # --- adopting -----------------------------------------------------------------------

    def adoptable(self, now: datetime, dead: Sequence[str]) -> Any:
        """Where a row is up for adoption by this node: active or queued, not this
        node's, and its lease expired (or never set) or its owner dead."""
        lease_over = sa.or_(
            t.runs.c.lease_expires_at.is_(None),
            t.runs.c.lease_expires_at < now,
        )
        if dead:
            lease_over = sa.or_(lease_over, t.runs.c.owner.in_(list(dead)))
        not_mine = sa.or_(t.runs.c.owner.is_(None), t.runs.c.owner != self.owner)
        return sa.and_(not_mine, lease_over)

    def owners(self) -> sa.Select[Any]:
        """Owners of runs in progress other than this node (to find the dead ones)."""
        return (
            sa.select(t.runs.c.owner)
            .where(
                t.runs.c.status.in_(("queued", *ACTIVE)),
                t.runs.c.owner.is_not(None),
                t.runs.c.owner != self.owner,
            )
            .distinct()
        )

    def dead(self, owners: Iterable[str | None]) -> list[str]:
        return [o for o in owners if o and dead_on_this_host(o, self.host)]

    def claim(self, now: datetime, dead: Sequence[str], limit: int = 5000) -> Any:
        """The op that adopts every adoptable run in progress (a new epoch, this node as
        owner, a fresh lease) and returns their ids. One statement, so two nodes racing
        for a run cannot both get it (the database re-checks the lease under its row
        lock). Rows locked elsewhere are skipped, not waited for."""
        cond = sa.and_(t.runs.c.status.in_(ACTIVE), self.adoptable(now, dead))
        # a row another session has locked is left for a later round: its holder may be
        # a node frozen mid-commit, and waiting on it would stall this node's writer
        claimable = self.claimable(now, dead, limit).with_for_update(skip_locked=True)

        def op(conn: sa.Connection) -> list[str]:
            ids = [r.id for r in conn.execute(claimable)]
            if not ids:
                return []
            got = conn.execute(
                t.runs.update()
                .where(t.runs.c.id.in_(ids), cond)
                .values(
                    owner=self.owner,
                    epoch=t.runs.c.epoch + 1,
                    lease_expires_at=self.expiry(now),
                )
                .returning(t.runs.c.id)
            )
            return [r.id for r in got]

        return op

    def claimable(self, now: datetime, dead: Sequence[str], limit: int = 5000) -> sa.Select[Any]:
        """The ids of the runs in progress this node may adopt, oldest first: a search
        of the status index, which never reads a finished run."""
        cond = sa.and_(t.runs.c.status.in_(ACTIVE), self.adoptable(now, dead))
        return sa.select(t.runs.c.id).where(cond).order_by(t.runs.c.created_at).limit(limit)

    def server_alive(self, now: datetime) -> sa.Select[Any]:
        """The ids of live ``serve`` nodes other than this one."""
        return sa.select(t.nodes.c.id).where(
            t.nodes.c.kind == "serve",
            t.nodes.c.id != self.owner,
            t.nodes.c.heartbeat_at > now - self.lease,
        )


def _elsewhere(owner: str | None, status: str) -> str:
    """Why a run this node drove is not its any more, as its row says."""
    if status not in ACTIVE:
        return f"it ended elsewhere ({status})"
    return f"its lease is held by node {owner} now" if owner else "its lease was released"
