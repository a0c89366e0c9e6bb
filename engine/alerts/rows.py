"""Alerts as the ``alerts`` table stores them and as templates and run cards see them."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.alerts.model import Alert, Link, Rejected
from engine.playbooks.model import AlertTrigger
from engine.runs.state import RUNS_IN_PROGRESS, new_id
from storage import tables as t


def alert_context(alert: Alert) -> dict[str, Any]:
    """What templates see as ``alert``."""
    return {
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "name": alert.name,
        "summary": alert.summary,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "severity": alert.severity,
        "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        "links": links(alert),
    }


def links(alert: Alert) -> list[dict[str, str]]:
    return [{"url": link.url, "title": link.title} for link in alert.links]


_ON_THE_CARD = ("source", "fingerprint", "name", "summary", "severity", "links")


def source_of(alert: Alert, trig: AlertTrigger) -> dict[str, Any]:
    """The run's ``source``: where its card goes, whom it names, the alert it shows."""
    shown = alert_context(alert)
    return {
        "front_end": "alert",
        "channel": trig.channel,
        "mention": list(trig.mention),
        "alert": {key: shown[key] for key in _ON_THE_CARD},
    }


_last_stamp = 0


def fitted(alert: Alert) -> Alert:
    """The alert with fields that fit their columns: a fingerprint over 200 characters
    becomes a hash of it (the same every time, so repeats still match), the source and
    severity are clipped."""
    fingerprint = alert.fingerprint
    if len(fingerprint) > 200:
        fingerprint = "sha256:" + hashlib.sha256(fingerprint.encode()).hexdigest()
    severity = alert.severity[:64] if alert.severity else alert.severity
    if (fingerprint, severity, alert.source[:32]) == (
        alert.fingerprint,
        alert.severity,
        alert.source,
    ):
        return alert
    return dataclasses.replace(
        alert, fingerprint=fingerprint, severity=severity, source=alert.source[:32]
    )


def alert_id() -> str:
    """An id that sorts in the order alerts were received (microseconds since the
    epoch, never repeating in a process) with random bits, so ids from several
    processes do not collide."""
    global _last_stamp
    _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
    return f"{_last_stamp:014x}{new_id()[:6]}"


def row_of(alert: Alert, now: datetime, node: str) -> dict[str, Any]:
    """The row of an alert received by ``node``, which routes it (or, once it is gone,
    the node that takes its pending alerts over)."""
    return {
        "id": alert_id(),
        "source": alert.source,
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "name": alert.name[:500],
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "severity": alert.severity,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "links": links(alert),
        "raw": alert.raw,
        "received_at": now,
        "outcome": "pending",
        "reason": None,
        "run_id": None,
        "processed_at": None,
        "node": node,
    }


def rejected_row(rejected: Rejected, now: datetime) -> dict[str, Any]:
    raw = rejected.raw if isinstance(rejected.raw, dict) else {"value": rejected.raw}
    digest = hashlib.sha256(repr(rejected.raw).encode()).hexdigest()[:16]
    return {
        "id": alert_id(),
        "source": rejected.source[:32],
        "fingerprint": f"rejected:{digest}",
        "status": "rejected",
        "name": "",
        "labels": {},
        "annotations": {},
        "severity": None,
        "starts_at": None,
        "ends_at": None,
        "links": [],
        "raw": raw,
        "received_at": now,
        "outcome": "rejected",
        "reason": rejected.reason,
        "run_id": None,
        "processed_at": now,
        "node": None,
    }


def from_row(row: t.AnyRow) -> Alert:
    return Alert(
        source=row.source,
        fingerprint=row.fingerprint,
        status=row.status,
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
        severity=row.severity,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        links=tuple(Link(**link) for link in row.links or []),
        raw=dict(row.raw or {}),
    )


# Built once: routing runs these for every alert, and building a statement costs more
# than running it (``storage/rows.py`` has the figures).
_ar, _r = t.alert_runs.c, t.runs.c
ACTIVE_LINK = (
    sa.select(_ar.id, _ar.run_id, _ar.repeats)
    .join(t.runs, _r.id == _ar.run_id)
    .where(
        _ar.fingerprint == sa.bindparam("fingerprint"),
        _ar.source == sa.bindparam("source"),
        _ar.playbook == sa.bindparam("playbook"),
        _ar.trigger == sa.bindparam("trigger"),
        _ar.resolved_at.is_(None),
        sa.or_(_r.status.in_(RUNS_IN_PROGRESS), _r.finished_at >= sa.bindparam("since")),
    )
    .order_by(_ar.id.desc())
    .limit(1)
)
SETTLE = (
    t.alerts.update()
    .where(t.alerts.c.id == sa.bindparam("row_id"))
    .values(
        outcome=sa.bindparam("outcome"),
        reason=sa.bindparam("reason"),
        run_id=sa.bindparam("run_id"),
        processed_at=sa.bindparam("processed_at"),
    )
)
REPEAT = (
    t.alert_runs.update()
    .where(_ar.id == sa.bindparam("link_id"))
    .values(repeats=sa.bindparam("repeats"), last_at=sa.bindparam("last_at"))
)
