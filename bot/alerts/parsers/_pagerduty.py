"""PagerDuty V3 webhooks: one incident event in, at most one alert out, and the check of
their signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from bot.alerts.parsers._common import (
    Parsed,
    _Bad,
    _get,
    _kind,
    _rejected,
    _Skip,
    _text,
    _time_at,
    _url,
)
from engine.alerts.model import Alert, Link, Status

PAGERDUTY = "pagerduty"

_PAGERDUTY_FIRES = frozenset({"incident.triggered", "incident.reopened"})
_PAGERDUTY_STILL_FIRING = frozenset(
    {"incident.acknowledged", "incident.escalated", "incident.priority_updated"}
)
_PAGERDUTY_URGENCY = {"high": "critical", "low": "warning"}


def pagerduty(body: Any) -> Parsed:
    """A PagerDuty V3 webhook: one event, at most one alert (its incident). Events about
    anything but an incident (``pagey.ping``, ``service.updated``) give only a note."""
    try:
        return Parsed(alerts=[_pagerduty_alert(_pagerduty_event(body))])
    except _Skip as skip:
        return Parsed(note=str(skip))
    except _Bad as bad:
        return _rejected(PAGERDUTY, str(bad), body)


def verify_pagerduty(raw_body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """Whether ``X-PagerDuty-Signature`` (``v1=<hex>,v1=<hex>``: several while a secret
    rotates) holds the HMAC-SHA256 of the raw body under any of ``secrets``. Compared in
    constant time; no header or no secret is never valid."""
    if not header:
        return False
    offered = [
        part.strip()[3:].lower().encode()
        for part in header.split(",")
        if part.strip().startswith("v1=")
    ]
    expected = [
        hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest().encode()
        for secret in secrets
        if secret
    ]
    return any(hmac.compare_digest(mine, theirs) for mine in expected for theirs in offered)


def _pagerduty_event(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _Bad(f"the body is {_kind(body)}, not a JSON object")
    event = body.get("event")
    if not isinstance(event, dict):
        hint = " (V2 webhooks, with 'messages', are not supported)" if "messages" in body else ""
        raise _Bad(f"the body has no 'event' object: not a PagerDuty V3 webhook{hint}")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise _Bad("the event has no 'event_type'")
    return event


def _pagerduty_alert(event: dict[str, Any]) -> Alert:
    event_type: str = event["event_type"]
    if not event_type.startswith("incident."):
        raise _Skip(f"PagerDuty {event_type} is not about an incident: nothing to route")
    data = event.get("data")
    if not isinstance(data, dict):
        raise _Bad(f"{event_type}: the event has no 'data' object")
    if data.get("type", "incident") != "incident":
        raise _Skip(f"PagerDuty {event_type} carries {data.get('type')!r}, not an incident")
    incident = _text(data.get("id"))
    if not incident:
        raise _Bad(f"{event_type}: no 'data.id' (the incident id)")
    status = _pagerduty_status(event_type, data.get("status"), incident)
    return Alert(
        source=PAGERDUTY,
        fingerprint=incident,
        status=status,
        labels=_pagerduty_labels(event_type, data),
        annotations=_pagerduty_annotations(event, data),
        severity=_PAGERDUTY_URGENCY.get(str(data.get("urgency")))
        or _text(_get(data, "priority.summary")),
        starts_at=_time_at(data.get("created_at"), "'data.created_at'"),
        ends_at=_time_at(event.get("occurred_at"), "'occurred_at'")
        if status == "resolved"
        else None,
        links=_pagerduty_links(data),
        raw=event,
    )


def _pagerduty_status(event_type: str, incident_status: Any, incident: str) -> Status:
    if event_type == "incident.resolved":
        return "resolved"
    if event_type in _PAGERDUTY_FIRES:
        return "firing"
    if incident_status == "resolved":
        return "resolved"
    if incident_status in ("triggered", "acknowledged") or event_type in _PAGERDUTY_STILL_FIRING:
        return "firing"
    raise _Skip(
        f"PagerDuty {event_type} on incident {incident} (status {incident_status!r})"
        " says neither firing nor resolved: nothing to route"
    )


def _pagerduty_labels(event_type: str, data: dict[str, Any]) -> dict[str, str]:
    picked = {
        "alertname": data.get("title"),
        "service": _get(data, "service.summary"),
        "urgency": data.get("urgency"),
        "priority": _get(data, "priority.summary"),
        "incident_key": data.get("incident_key"),
        "event_type": event_type,
    }
    return {name: text for name, value in picked.items() if (text := _text(value))}


def _pagerduty_annotations(event: dict[str, Any], data: dict[str, Any]) -> dict[str, str]:
    assignees = data.get("assignees")
    picked = {
        "summary": data.get("title"),
        "agent": _get(event, "agent.summary"),
        "assignees": ", ".join(name for item in assignees if (name := _text(_get(item, "summary"))))
        if isinstance(assignees, list)
        else None,
        "conference_url": _get(data, "conference_bridge.conference_url"),
    }
    return {name: text for name, value in picked.items() if (text := _text(value))}


def _pagerduty_links(data: dict[str, Any]) -> tuple[Link, ...]:
    links = []
    if url := _url(data.get("html_url")):
        number = _text(data.get("number"))
        links.append(Link(url, f"PagerDuty incident #{number}" if number else "PagerDuty incident"))
    if url := _url(_get(data, "service.html_url")):
        service = _text(_get(data, "service.summary"))
        links.append(Link(url, f"Service {service}" if service else "Service"))
    return tuple(links)
