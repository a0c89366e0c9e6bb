"""``POST /alerts/{alertmanager,grafana,pagerduty,generic}``: monitoring into Baton.

A webhook is authenticated before its body is read (``Authorization: Bearer
$BATON_ALERT_TOKEN``, or for PagerDuty its ``X-PagerDuty-Signature`` when
``BATON_PAGERDUTY_SECRET`` is set, checked once the body is in; without either: 401,
nothing read or stored), read by ``bot.edge`` (413 over ``BATON_ALERT_MAX_BODY``, counted
after inflating; 415 for a compressed body except on ``/alerts/generic``; 408 when it
stalls), parsed (400 with the reason for malformed JSON; 413 for more alerts than
``BATON_ALERTS_MAX_PER_REQUEST``), stored in one write — entries that parse but lack
fields, or hold values no database stores, are stored as rejected with the reason, and
the others go on — and answered 202 at once; routing to playbooks happens after the
answer (``engine.alerts.router``), so senders never time out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import api_kit, edge
from bot.alerts import parsers

if TYPE_CHECKING:
    from bot.app import Baton

log = logging.getLogger(__name__)

SOURCES = ("alertmanager", "grafana", "pagerduty", "generic")
OFF_LOOP = 64 * 1024  # bodies over this many bytes are decoded and parsed in a thread


def _secrets(baton: Baton) -> list[str]:
    secret = baton.settings.pagerduty_secret
    if secret is None:
        return []
    return [s.strip() for s in secret.get_secret_value().split(",") if s.strip()]


def _authenticated(request: web.Request, baton: Baton, source: str) -> bool | str:
    """From the headers alone: True when the bearer token proves the sender, False when
    PagerDuty's signature must (it covers the body, read next), else what is missing.
    A sender without a token costs no body."""
    expected = baton.settings.alert_token
    token = api_kit.bearer(request)
    if expected is not None and token is not None:
        return True if api_kit.token_matches(token, expected) else "wrong bearer token"
    if source == "pagerduty" and _secrets(baton):
        if request.headers.get("X-PagerDuty-Signature"):
            return False
        return "missing X-PagerDuty-Signature (checked with BATON_PAGERDUTY_SECRET)"
    if expected is None and not _secrets(baton):
        return "alert webhooks are disabled: set BATON_ALERT_TOKEN (and send it as a bearer token)"
    return "missing bearer token: send Authorization: Bearer $BATON_ALERT_TOKEN"


def _parse(source: str, data: Any, baton: Baton) -> parsers.Parsed:
    match source:
        case "alertmanager":
            return parsers.alertmanager(data)
        case "grafana":
            return parsers.grafana(data)
        case "pagerduty":
            return parsers.pagerduty(data)
    return parsers.generic(data, baton.alert_mapping)


def _decoded(source: str, body: bytes, baton: Baton) -> parsers.Parsed | web.Response:
    """The body's alerts, ready to store, or the answer instead: 400 for JSON that does
    not decode, 413 for more alerts than BATON_ALERTS_MAX_PER_REQUEST (counted before
    any is read). Pure work: it may run in a thread."""
    data = api_kit.json_or_error(body)
    if isinstance(data, web.Response):
        return data
    cap = baton.settings.alerts_max_per_request
    count = parsers.entries(source, data, baton.alert_mapping)
    if count > cap:
        return api_kit.error(
            413,
            f"{count} alerts in one body, over the cap of {cap} "
            "(BATON_ALERTS_MAX_PER_REQUEST): send them in smaller batches "
            "(Alertmanager: max_alerts in the webhook config)",
        )
    return parsers.storable_only(_parse(source, data, baton))


def make_handler(baton: Baton) -> Any:
    alerts = baton.alerts
    assert alerts is not None, "alert routing is off in this process"

    async def receive(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if source not in SOURCES:
            return api_kit.error(
                404, f"no alert source {source!r}: use one of {', '.join(SOURCES)}"
            )
        who = _authenticated(request, baton, source)
        if isinstance(who, str):
            return edge.refusal(401, who)
        settings = baton.settings
        body = await edge.read(
            request,
            limit=settings.alert_max_body,
            seconds=settings.read_timeout,
            limit_name="BATON_ALERT_MAX_BODY",
            accepted=edge.COMPRESSED if source == "generic" else (),
        )
        if isinstance(body, edge.Refused):
            return body.answer
        if who is False and not parsers.verify_pagerduty(
            body, request.headers.get("X-PagerDuty-Signature"), _secrets(baton)
        ):
            return api_kit.error(401, "X-PagerDuty-Signature does not match BATON_PAGERDUTY_SECRET")
        # a big body (1,000 alerts) costs tenths of a second to decode and read: in a
        # thread, the event loop goes on answering meanwhile (/healthz, Slack's acks)
        if len(body) > OFF_LOOP:
            parsed = await asyncio.to_thread(_decoded, source, body, baton)
        else:
            parsed = _decoded(source, body, baton)
        if isinstance(parsed, web.Response):
            return parsed
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
