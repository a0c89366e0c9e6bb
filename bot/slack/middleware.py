"""What every Slack request goes through around its listener: bolt middleware (after
bolt has checked the signature) and the error handler.

- **Once.** Slack retries an Events API event it thinks was lost, with the ``event_id``
  it had: the retry changes nothing. A signed request sent again as it was (the same
  ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``: a slash command, a button
  click or a form someone captured, or a proxy that sent it twice) passes bolt's check
  for five minutes; Slack itself never sends one signature twice. Both are refused by a
  key recorded in the database with the time it came, which the second copy, on this
  process or another replica, finds there: it gets a 200 and nothing is done. An
  event's key is its id, checked here, before any listener. A signed request's key is
  a digest of its timestamp and signature, recorded by the work its listener hands to
  ``SlackFront.later``, after the ack: the ack of a command, click or form never waits
  for the database. Keys are kept a day, far longer than the signature window.
- **Never dropped.** A listener that fails before its work is handed on (a payload that
  is not what it should be) still answers: the asker is told that something went wrong
  and the log has the details, and Slack gets a 200, never a 500.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slack.contract import Front, Where

log = logging.getLogger(__name__)

SORRY = "Something went wrong with that request; the log has the details."


def _header(req: AsyncBoltRequest, name: str) -> str:
    values = req.headers.get(name) or [""]
    return str(values[0])


def request_key(req: AsyncBoltRequest) -> str | None:
    """What makes a request the same request: its event id, or its signature."""
    event_id = req.body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    signature = _header(req, "x-slack-signature")
    if req.mode == "socket_mode" or not signature:
        return None  # no signature to replay: Socket Mode's envelopes come over its socket
    stamp = _header(req, "x-slack-request-timestamp")
    return "sig:" + hashlib.sha256(f"{stamp}:{signature}".encode()).hexdigest()[:56]


def asker(body: dict[str, Any]) -> Where | None:
    """Who sent a request of any kind, and where to answer them (None: no person)."""
    event: dict[str, Any] = body["event"] if isinstance(body.get("event"), dict) else {}
    person = body.get("user")
    user = body.get("user_id") or (person.get("id") if isinstance(person, dict) else None)
    user = user or event.get("user")
    if not isinstance(user, str) or not user or event.get("bot_id"):
        return None
    channel = (
        body.get("channel_id")
        or (body.get("channel") or {}).get("id")
        or (body.get("container") or {}).get("channel_id")
        or event.get("channel")
    )
    view = body.get("view") or {}
    if not channel and view.get("private_metadata"):  # a form knows where it was opened
        try:
            channel = (json.loads(view["private_metadata"]).get("where") or {}).get("channel")
        except (ValueError, AttributeError):
            channel = None
    thread = event.get("thread_ts")
    if event.get("type") == "app_mention":  # a mention is answered in its thread
        thread = thread or event.get("ts")
    return Where(channel if isinstance(channel, str) else None, None, user, thread_ts=thread)


class Once:
    """A request's key, recorded at most once however many tasks its listener starts."""

    def __init__(self, key: str, front: Front) -> None:
        self.key = key
        self._front = front
        self._first: asyncio.Future[bool] | None = None

    async def first(self) -> bool:
        """True for the first copy of the request (on any process); False for a repeat."""
        if self._first is None:
            front = self._front
            seen = front.outbox.seen_event(self.key, front.engine.clock.now())
            self._first = asyncio.ensure_future(seen)
        seen_before = await asyncio.shield(self._first)
        if seen_before and self.key.startswith("sig:"):
            log.warning("a signed Slack request came again (a replay): nothing done")
        elif seen_before:
            log.info("Slack event %s seen before: ignored", self.key)
        return not seen_before


_current: contextvars.ContextVar[Once | None] = contextvars.ContextVar(
    "baton_slack_request", default=None
)


def current() -> Once | None:
    """The request being handled in this task (its listener's work inherits it)."""
    return _current.get()


def register(app: AsyncApp, front: Front) -> None:
    @app.middleware
    async def once(req: AsyncBoltRequest, next: Any) -> BoltResponse | None:
        key = request_key(req)
        if key is not None and not key.startswith("sig:"):  # an event: stops here if seen
            if not await Once(key, front).first():
                return BoltResponse(status=200, body="")
            key = None
        _current.set(Once(key, front) if key is not None else None)  # the listener runs next
        await next()
        return None

    @app.error
    async def failed(error: Exception, body: dict[str, Any]) -> BoltResponse:
        log.error("Slack request failed: %r", error, exc_info=error)
        if body.get("command"):  # a slash command's answer goes to its author alone
            return BoltResponse(status=200, body=SORRY)
        where = asker(body)
        if where is not None:
            front.later(front.sorry(front.teller(where)))
        return BoltResponse(status=200, body="")
