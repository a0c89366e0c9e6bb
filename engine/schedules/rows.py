"""Schedules as rows: their view, when a text names a time (``parse_when``), the ids of
declared schedules, and the op that takes a fire (``fire_claim``). The service that arms
and fires them is ``engine.schedules.service``."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine import audit
from engine.errors import BatonError
from engine.playbooks.durations import parse_duration
from engine.schedules import cron
from storage import tables as t
from storage.store import Op


class ScheduleError(BatonError):
    """A schedule that cannot be made or found; the message says why."""


class ScheduleNotFound(ScheduleError):
    """No schedule has this id; ``known``: the ids there are, to name them."""

    def __init__(self, schedule_id: str, known: list[str] | None = None) -> None:
        listed = f" Known: {', '.join(sorted(known))}." if known else ""
        more = ": `schedules` lists them." if known is None else f".{listed}"
        super().__init__(f"No schedule with id {schedule_id!r}{more}")


class FireTaken(Exception):
    """Someone else already ran this fire (the guarded update matched nothing)."""


@dataclass(frozen=True)
class ScheduleView:
    id: str
    playbook: str
    kind: str
    when: str
    timezone: str
    params: dict[str, Any]
    origin: str
    created_by: str
    created_at: datetime
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    last_run_id: str | None
    missed: int
    last_error: str | None

    @property
    def paused(self) -> bool:
        """A cron schedule with no next fire is paused (``engine.schedules.ops``)."""
        return self.kind == "cron" and self.next_fire_at is None


def parse_when(text: str, now: datetime, timezone: str = "UTC") -> datetime:
    """``in 30m`` / ``30m`` (from now) or ``at 18:00`` / ``18:00`` (the next such time in
    ``timezone``) or an ISO time; ScheduleError with the accepted forms otherwise. The
    time is in ``timezone`` (the schedule's, shown in it), whichever form named it."""
    value = text.strip()
    lowered = value.lower()
    try:
        tz = cron.zone(timezone)
    except ValueError as exc:
        raise ScheduleError(f"{exc}: use a name such as Europe/Paris or UTC") from None
    if lowered.startswith("in "):
        value = value[3:].strip()
        try:
            return (now + parse_duration(value)).astimezone(tz)
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
    if lowered.startswith("at "):
        value = value[3:].strip()
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    if match:
        hour, minute = int(match.group(1)), int(match.group(2))
        if hour > 23 or minute > 59:
            raise ScheduleError(f"{value!r} is not a time of day (HH:MM, 00:00 to 23:59)")
        local = now.astimezone(tz)
        at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if at <= local:
            at += timedelta(days=1)
        return at
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleError(
            f"cannot read {text!r} as a time: use `in 30m`, `at 18:00` or an ISO time "
            "like 2026-12-01T18:00"
        ) from None
    return at.astimezone(tz) if at.tzinfo else at.replace(tzinfo=tz)


def declared_id(playbook: str, spec: dict[str, Any]) -> str:
    raw = json.dumps([playbook, spec], sort_keys=True).encode()
    return "pb-" + hashlib.sha256(raw).hexdigest()[:10]


def timer_key(schedule_id: str) -> str:
    return f"schedule:{schedule_id}"


def fire_claim(
    schedule_id: str,
    due: datetime,
    fire_time: datetime,
    nxt: datetime | None,
    missed: int,
    once: bool,
) -> Op:
    """The op that takes a fire: it moves ``next_fire_at`` on only if it still is ``due``
    (what this process read); otherwise the whole unit, the run with it, rolls back."""

    def take(conn: sa.Connection) -> None:
        where = (t.schedules.c.id == schedule_id, t.schedules.c.next_fire_at == due)
        if once:
            done = conn.execute(t.schedules.delete().where(*where))
        else:
            done = conn.execute(
                t.schedules.update()
                .where(*where)
                .values(
                    next_fire_at=nxt,
                    last_fire_at=fire_time,
                    last_error=None,
                    missed=t.schedules.c.missed + missed,
                )
            )
        if not done.rowcount:
            raise FireTaken(schedule_id)

    return take


def once_when(at: datetime | None, timezone: str) -> str:
    """A one-time schedule's time as ISO in its own zone, with the offset
    (``2026-12-07T09:00:00+01:00`` for Europe/Paris), as its cron twin is read in it; the
    row keeps UTC (naive on SQLite). "" for none."""
    if at is None:
        return ""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    try:
        return at.astimezone(cron.zone(timezone)).isoformat(timespec="seconds")
    except ValueError:  # a zone this machine does not know: UTC, which the offset says
        return at.astimezone(UTC).isoformat(timespec="seconds")


def view_of(row: sa.Row[Any]) -> ScheduleView:
    when = row.cron if row.kind == "cron" else once_when(row.next_fire_at, row.timezone)
    return ScheduleView(
        id=row.id,
        playbook=row.playbook,
        kind=row.kind,
        when=when,
        timezone=row.timezone,
        params=dict(row.params or {}),
        origin=row.origin,
        created_by=row.created_by,
        created_at=row.created_at,
        next_fire_at=row.next_fire_at,
        last_fire_at=row.last_fire_at,
        last_run_id=row.last_run_id,
        missed=row.missed,
        last_error=row.last_error,
    )


@dataclass(frozen=True)
class NewSchedule:
    """A schedule being added (``Schedules.add``), and the ops that store and audit it."""

    id: str
    playbook: str
    kind: str
    expression: str | None
    timezone: str
    at: datetime | None
    origin: str
    by: str
    now: datetime

    def ops(self, shown: dict[str, Any], sealed: str | None, masked: dict[str, Any]) -> list[Op]:
        """``shown``: the params stored in clear; ``sealed``: the secret ones, encrypted;
        ``masked``: all of them as the audit keeps them."""
        row = t.schedules.insert().values(
            id=self.id,
            playbook=self.playbook,
            kind=self.kind,
            cron=self.expression,
            timezone=self.timezone,
            params=shown,
            secret_params=sealed,
            origin=self.origin,
            created_by=self.by,
            created_at=self.now,
            next_fire_at=self.at,
        )
        detail = {
            "schedule_id": self.id,
            "kind": self.kind,
            "cron": self.expression,
            "at": self.at.isoformat() if self.at else None,
            "params": masked,
        }
        return [row, audit.op(self.now, self.by, "schedule", self.playbook, detail)]
