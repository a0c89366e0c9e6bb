"""``POST /alerts/{alertmanager,grafana,pagerduty,generic}``: monitoring into Baton.

A webhook is authenticated (``Authorization: Bearer $BATON_ALERT_TOKEN``, or for
PagerDuty its ``X-PagerDuty-Signature`` when ``BATON_PAGERDUTY_SECRET`` is set; without
either: 401, nothing stored), size-checked (413 over ``BATON_ALERT_MAX_BODY``),
parsed (400 with the reason for malformed JSON), stored in one write — entries that
parse but lack fields are stored as rejected, with the reason — and answered 202 at
once; routing to playbooks happens after the answer (``engine.alerting``), so senders
never time out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import api
from bot.alerts import parsers

if TYPE_CHECKING:
    from bot.app import Baton

log = logging.getLogger(__name__)

SOURCES = ("alertmanager", "grafana", "pagerduty", "generic")


def _secrets(baton: Baton) -> list[str]:
    secret = baton.settings.pagerduty_secret
    if secret is None:
        return []
    return [s.strip() for s in secret.get_secret_value().split(",") if s.strip()]


def _authenticated(request: web.Request, baton: Baton, source: str, body: bytes) -> str | None:
    """None when the sender proved who it is; else what is missing."""
    expected = baton.settings.alert_token
    token = api.bearer(request)
    if expected is not None and token is not None:
        return None if api.token_matches(token, expected) else "wrong bearer token"
    secrets = _secrets(baton)
    if source == "pagerduty" and secrets:
        signature = request.headers.get("X-PagerDuty-Signature")
        if parsers.verify_pagerduty(body, signature, secrets):
            return None
        return "X-PagerDuty-Signature does not match BATON_PAGERDUTY_SECRET"
    if expected is None and not secrets:
        return "alert webhooks are disabled: set BATON_ALERT_TOKEN (and send it as a bearer token)"
    return "missing bearer token: send Authorization: Bearer $BATON_ALERT_TOKEN"


async def _read(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over ``limit`` bytes (read no further than that)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # read() returns what has arrived so far: loop to the end
        chunk = await request.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return None if size > limit else b"".join(chunks)


def _parse(source: str, data: Any, baton: Baton) -> parsers.Parsed:
    match source:
        case "alertmanager":
            return parsers.alertmanager(data)
        case "grafana":
            return parsers.grafana(data)
        case "pagerduty":
            return parsers.pagerduty(data)
    return parsers.generic(data, baton.alert_mapping)


def make_handler(baton: Baton) -> Any:
    alerts = baton.alerts
    assert alerts is not None, "alert routing is off in this process"

    async def receive(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in SOURCES:
            return api.error(404, f"no alert source {source!r}: use one of {', '.join(SOURCES)}")
        limit = baton.settings.alert_max_body
        body = await _read(request, limit)
        if body is None:
            return api.error(413, f"body over {limit} bytes (BATON_ALERT_MAX_BODY)")
        problem = _authenticated(request, baton, source, body)
        if problem is not None:
            return api.error(401, problem)
        data = api.json_or_error(body)
        if isinstance(data, web.Response):
            return data
        parsed = _parse(source, data, baton)
        receipt = await alerts.receive(parsed.alerts, parsed.rejected)
        answer: dict[str, Any] = {
            "accepted": receipt.accepted,
            "rejected": receipt.rejected,
            "ids": receipt.ids,
        }
        if parsed.rejected:
            answer["reasons"] = [r.reason for r in parsed.rejected]
        if parsed.note:
            answer["note"] = parsed.note
        return web.json_response(answer, status=202)

    return receive
