"""Baton's log: one handler on the root logger, quiet libraries, and one line per event.

- ``setup`` installs the handler (``BATON_LOG_FORMAT``: ``text``, or ``json`` for log
  shippers: one object a line with ``time``, ``level``, ``logger``, ``message`` and, when
  the line is about a run, ``run_id`` and ``playbook``). Baton's own loggers (``baton``,
  ``bot``, ``engine``, ``storage``) log at ``BATON_LOG_LEVEL``; every library
  (APScheduler, aiohttp, Slack's bolt and SDK, SQLAlchemy, Alembic, asyncio, ...) at
  WARNING, unless ``BATON_LOG_LEVEL=DEBUG`` shows everything.
- ``EventLog`` turns the engine's events into those lines: a run started, resumed or
  ended (with its status and duration), an approval requested, decided or closed.
- ``diverted`` sends the lines to a file while a console in a terminal is open, so
  that they never land in the middle of the line being typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.bus import EventBus
from engine.playbooks.durations import format_duration

OWN = ("baton", "bot", "engine", "storage")
QUIET = ("baton.slack.bolt",)  # a library's lines under Baton's name: bolt's logger
HANDLER = "baton"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("baton.events")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c != 0x09}
_CONTROL.update({0x0A: "\\n", 0x0D: "\\r"})


class TextFormatter(logging.Formatter):
    """One record, one line: line breaks and control characters in a message (a name
    someone typed, a step's output) are written as escapes, so no input can forge a log
    line or send the terminal escape codes. Tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_CONTROL)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, and the
    ``run_id`` / ``playbook`` of the line when it has them (``extra=``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("run_id", "playbook"):
            value = getattr(record, key, None)
            if value:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class BadRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a request line or a header over 8 kB,
    broken syntax) as an error with a traceback: anyone who can reach the port can send
    one, so each becomes one warning line without the traceback (the client already has
    its 400)."""

    def filter(self, record: logging.LogRecord) -> bool:
        errors = sys.modules.get("aiohttp.http_exceptions")  # never raised unless loaded
        exc = record.exc_info[1] if record.exc_info else None
        if errors is None or not isinstance(exc, errors.HttpProcessingError):
            return True
        peer = record.getMessage().partition(" from ")[2] or "a client"
        why = " ".join(str(exc.message).split())
        why = why if len(why) <= 120 else why[:117] + "..."
        record.msg = "refused a bad HTTP request from %s (%s): %s"
        record.args = (peer, exc.code, why)
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_bad_requests() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequests) for f in server.filters):
        server.addFilter(BadRequests())


def setup(level: str, form: str = "text", *, quiet: bool = False) -> None:
    """Install Baton's handler on the root logger (replacing one set up before).
    ``quiet``: Baton's own lines too only from WARNING (the commands other than serve)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.name = HANDLER
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter(TEXT))
    root.addHandler(handler)
    quiet_bad_requests()
    number = logging.getLevelName(level.upper())
    own = max(number, logging.WARNING) if quiet else number
    root.setLevel(number if number <= logging.DEBUG else max(number, logging.WARNING))
    for name in OWN:
        logging.getLogger(name).setLevel(own)
    for name in QUIET:
        logging.getLogger(name).setLevel(
            logging.NOTSET if number <= logging.DEBUG else max(own, logging.WARNING)
        )


@contextlib.contextmanager
def diverted(path: Path) -> Iterator[Path]:
    """Baton's log lines go to ``path`` (appended) instead of the terminal, until the
    block ends; formatter and filters (the masking of credentials) go with them."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if h.name == HANDLER]
    if not handlers:
        yield path
        return
    old = handlers[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    new = logging.FileHandler(path, encoding="utf-8", delay=True)
    new.name = HANDLER
    new.setFormatter(old.formatter)
    for f in old.filters:
        new.addFilter(f)
    root.removeHandler(old)
    root.addHandler(new)
    try:
        yield path
    finally:
        root.removeHandler(new)
        new.close()
        root.addHandler(old)


def _about(event: ev.Event) -> dict[str, Any]:
    return {"run_id": event.run_id, "playbook": event.playbook}


def line(event: ev.Event) -> str | None:
    """The log line of an event worth one, else None (step events stay in the run's
    own log and the front ends)."""
    match event:
        case ev.RunStarted(resumed=True):
            return f"run {event.run_id} of {event.playbook} resumed"
        case ev.RunStarted():
            child = f" (child of run {event.parent_run_id})" if event.parent_run_id else ""
            again = f", attempt {event.attempt}" if event.attempt > 1 else ""
            return (
                f"run {event.run_id} of {event.playbook} started: trigger {event.trigger}, "
                f"by {event.requested_by}{again}{child}"
            )
        case ev.RunFinished():
            error = f": {event.error}" if event.error else ""  # it names the failed step
            return (
                f"run {event.run_id} of {event.playbook} {event.status} after "
                f"{format_duration(event.duration)}{error}"
            )
        case ev.ApprovalRequested():
            return (
                f"run {event.run_id} of {event.playbook}: approval {event.approval_id} "
                f"requested at step {event.step_id} ({event.min_approvals} needed)"
            )
        case ev.ApprovalDecided():
            return (
                f"run {event.run_id} of {event.playbook}: {event.user} decided "
                f"{event.decision} on approval {event.approval_id}"
            )
        case ev.ApprovalClosed():
            why = f" ({event.reason})" if event.reason else ""
            return (
                f"run {event.run_id} of {event.playbook}: approval {event.approval_id} "
                f"{event.outcome}{why}"
            )
        case _:
            return None


LOGGED = (
    ev.RunStarted,
    ev.RunFinished,
    ev.ApprovalRequested,
    ev.ApprovalDecided,
    ev.ApprovalClosed,
)


def _level(event: ev.Event) -> int:
    if isinstance(event, ev.RunFinished) and event.status in ("failed", "timed_out"):
        return logging.WARNING
    return logging.INFO


class EventLog:
    """One subscriber on the bus writing ``line(event)`` for the events that have one.
    ``close`` writes what is still queued, so the events of a drain are logged too."""

    def __init__(self, bus: EventBus) -> None:
        self._sub = bus.subscribe(lambda e: isinstance(e, LOGGED))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._work(), name="event-log")

    async def _work(self) -> None:
        async for event in self._sub:
            self.write(event)

    @staticmethod
    def write(event: ev.Event) -> None:
        text = line(event)
        if text is not None:
            log.log(_level(event), "%s", text, extra=_about(event))

    async def close(self) -> None:
        self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for event in self._sub.drain():
            self.write(event)
