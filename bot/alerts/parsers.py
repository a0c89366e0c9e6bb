"""One webhook body (already JSON-decoded) or one chat message in, ``Parsed`` out.

Every parser is a pure function returning the same shape, ``Parsed``: the alerts it could
read, one ``Rejected`` per entry it could not (the reason names the field, so whoever set
up the sender can fix it), and a ``note`` for what is worth logging but is no error (a
truncated group, a PagerDuty ping). One bad entry never costs the good ones of its body.

Decisions:

- Times: RFC 3339 with any number of fractional digits (Alertmanager sends nanoseconds;
  they are cut to microseconds), ``Z`` or an offset; a time without an offset is UTC;
  Go's zero time (``0001-01-01T00:00:00Z``, "unset") is ``None``; generic numbers are
  epoch seconds (milliseconds above 10^11). A time that is there but unreadable rejects
  its entry: a wrong mapping should show, not quietly lose the time.
- Fingerprints: the source's own when it sends one, else ``stable_fingerprint``.
- Severity: the source's own notion where it has one (PagerDuty urgency, then priority),
  else the ``severity`` label.
- Links to silence an alert are only offered while it fires.
- PagerDuty: the incident id is the fingerprint, so the resolve finds the run the trigger
  started. ``incident.triggered``/``reopened`` fire, ``incident.resolved`` resolves; any
  other incident event (acknowledged, escalated, priority_updated...) follows the
  incident's ``data.status``, so a priority change on a resolved incident starts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.alerts import Alert, Link, Rejected, Status
from engine.errors import BatonError

ALERTMANAGER = "alertmanager"
GRAFANA = "grafana"
PAGERDUTY = "pagerduty"
CHAT = "chat"

FIRING_VALUES: tuple[str, ...] = ("firing", "alerting", "triggered", "open", "problem")
RESOLVED_VALUES: tuple[str, ...] = ("resolved", "ok", "closed", "recovered")

_EPOCH_MILLIS_ABOVE = 10**11
_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<clock>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})?"
)


@dataclass(frozen=True)
class Parsed:
    """What one body or message became. ``truncated`` counts alerts the sender says it
    left out (``truncatedAlerts``); ``note`` says in words what to log that is no error."""

    alerts: list[Alert] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    note: str | None = None
    truncated: int = 0


class _Bad(Exception):
    """An entry (or the whole body) cannot be read; the message is the reason."""


class _Skip(Exception):
    """The body is fine but holds nothing to route; the message becomes the note."""


# -- shared helpers -----------------------------------------------------------------------


def stable_fingerprint(source: str, labels: Mapping[str, str]) -> str:
    """Identity for alerts whose sender gives none: the same source and labels always give
    the same 16 hex digits, whatever order the labels came in."""
    canonical = json.dumps([source, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_time(value: str) -> datetime | None:
    """An RFC 3339 time, always timezone-aware; ``None`` for "" and Go's zero time.

    Read by hand before ``fromisoformat``: Go senders write nanoseconds, and how many
    digits (or a lowercase ``t``/``z``) ``fromisoformat`` takes has changed between Python
    releases; cutting the fraction to microseconds here gives one answer everywhere."""
    text = value.strip()
    if not text:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    offset = match["offset"] or "Z"
    if offset.upper() == "Z":
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['clock']}.{fraction}{offset}")
    except ValueError as err:
        raise ValueError(f"{value!r} is not an RFC 3339 time: {err}") from None
    return None if moment.year == 1 else moment


def _kind(value: Any) -> str:
    """JSON's name for a decoded value's type, for reasons people read."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(value: Any) -> str | None:
    """A JSON value as label text: JSON spelling for booleans and structures; no null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strings(value: Any, where: str) -> dict[str, str]:
    """An object of labels or annotations with every value as text (nulls dropped)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{where} is {_kind(value)}, not an object")
    return {str(key): text for key, item in value.items() if (text := _text(item)) is not None}


def _get(value: Any, path: str) -> Any:
    """The value at a dotted path (a number step indexes an array); ``None`` if absent."""
    for step in path.split("."):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _url(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _time_at(value: Any, where: str) -> datetime | None:
    """A time field: RFC 3339 text or epoch seconds/milliseconds; absent is ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as err:
            raise _Bad(f"{where}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{where} is {_kind(value)}, not a time")
    seconds = value / 1000 if value > _EPOCH_MILLIS_ABOVE else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise _Bad(f"{where}: {value} is out of range for a time") from None


def _mapped_status(
    value: Any, where: str, firing: Sequence[str], resolved: Sequence[str]
) -> Status:
    """A free-form status word as firing or resolved, case-insensitively."""
    text = (_text(value) or "").strip()
    if not text:
        raise _Bad(f"no status {where}")
    if text.casefold() in {word.casefold() for word in firing}:
        return "firing"
    if text.casefold() in {word.casefold() for word in resolved}:
        return "resolved"
    raise _Bad(
        f"status {text!r} {where} is neither firing ({', '.join(firing)})"
        f" nor resolved ({', '.join(resolved)})"
    )


def _rejected(source: str, reason: str, raw: Any) -> Parsed:
    return Parsed(rejected=[Rejected(source=source, reason=reason, raw=raw)])


def _collect(
    source: str, entries: Sequence[tuple[str, Any]], read: Callable[[Any], Alert]
) -> Parsed:
    """Read every entry on its own, so one bad entry is rejected and the rest survive."""
    alerts: list[Alert] = []
    rejected: list[Rejected] = []
    for where, entry in entries:
        try:
            alerts.append(read(entry))
        except _Bad as bad:
            rejected.append(Rejected(source=source, reason=f"{where}: {bad}", raw=entry))
    return Parsed(alerts=alerts, rejected=rejected)


# -- Alertmanager and Grafana (the same webhook family) -----------------------------------

LinkMaker = Callable[[dict[str, Any], dict[str, str], Status], tuple[Link, ...]]

_PROMETHEUS_STATUSES: dict[str, Status] = {"firing": "firing", "resolved": "resolved"}
_GRAFANA_LINKS = (
    ("generatorURL", "Alert rule"),
    ("dashboardURL", "Dashboard"),
    ("panelURL", "Panel"),
    ("silenceURL", "Silence"),
)


def alertmanager(body: Any) -> Parsed:
    """A Prometheus Alertmanager webhook (version "4"): one alert per entry of ``alerts``,
    each with its own status, since one group can mix firing and resolved."""
    external = _url(body.get("externalURL")) if isinstance(body, dict) else None
    return _prometheus_family(ALERTMANAGER, body, "4", _alertmanager_links(external))


def grafana(body: Any) -> Parsed:
    """A Grafana unified alerting webhook (version "1"): Alertmanager's shape plus links
    to the rule, dashboard, panel and silence form."""
    if isinstance(body, dict) and "alerts" not in body and "ruleName" in body:
        return _rejected(
            GRAFANA,
            "this is a legacy Grafana alerting body ('ruleName', no 'alerts'):"
            " send from a unified alerting contact point",
            body,
        )
    return _prometheus_family(GRAFANA, body, "1", _grafana_links)


def _prometheus_family(source: str, body: Any, version: str, links: LinkMaker) -> Parsed:
    try:
        entries, truncated = _envelope(body, version)
    except _Bad as bad:
        return _rejected(source, str(bad), body)
    parsed = _collect(
        source,
        [(f"alerts[{index}]", entry) for index, entry in enumerate(entries)],
        lambda entry: _prometheus_alert(source, entry, links),
    )
    if not truncated:
        return parsed
    note = (
        f"{source} left {truncated} alert(s) of this group out (truncatedAlerts) and sent"
        f" {len(entries)}: raise the receiver's max alerts limit to receive them all"
    )
    return replace(parsed, note=note, truncated=truncated)


def _envelope(body: Any, version: str) -> tuple[list[Any], int]:
    """The body's ``alerts`` and ``truncatedAlerts``, once its version is the one known."""
    if not isinstance(body, dict):
        raise _Bad(f"the body is {_kind(body)}, not a JSON object")
    got = body.get("version")
    if got is None:
        raise _Bad(f"the body has no 'version' (expected \"{version}\")")
    if str(got) != version:
        raise _Bad(f'version {got!r} is not supported (expected "{version}")')
    entries = body.get("alerts")
    if entries is None:
        raise _Bad("the body has no 'alerts' list")
    if not isinstance(entries, list):
        raise _Bad(f"'alerts' is {_kind(entries)}, not an array")
    truncated = body.get("truncatedAlerts")
    if isinstance(truncated, bool) or not isinstance(truncated, int):
        truncated = 0
    return entries, max(truncated, 0)


def _prometheus_alert(source: str, entry: Any, links: LinkMaker) -> Alert:
    if not isinstance(entry, dict):
        raise _Bad(f"is {_kind(entry)}, not an object")
    status = _prometheus_status(entry.get("status"))
    if entry.get("labels") is None:
        raise _Bad("no 'labels'")
    labels = _strings(entry["labels"], "'labels'")
    if not labels:
        raise _Bad("'labels' is empty")
    return Alert(
        source=source,
        fingerprint=_url(entry.get("fingerprint")) or stable_fingerprint(source, labels),
        status=status,
        labels=labels,
        annotations=_strings(entry.get("annotations"), "'annotations'"),
        severity=labels.get("severity"),
        starts_at=_time_at(entry.get("startsAt"), "'startsAt'"),
        ends_at=_time_at(entry.get("endsAt"), "'endsAt'"),
        links=links(entry, labels, status),
        raw=entry,
    )


def _prometheus_status(value: Any) -> Status:
    if value is None:
        raise _Bad("no 'status'")
    if isinstance(value, str) and value in _PROMETHEUS_STATUSES:
        return _PROMETHEUS_STATUSES[value]
    raise _Bad(f"'status' is {value!r}, expected 'firing' or 'resolved'")


def _alertmanager_links(external_url: str | None) -> LinkMaker:
    """Links for an Alertmanager alert: where it came from, and while it fires, the alert
    and a prefilled silence form in Alertmanager's UI."""

    def links(entry: dict[str, Any], labels: dict[str, str], status: Status) -> tuple[Link, ...]:
        found = [Link(url, "Source")] if (url := _url(entry.get("generatorURL"))) else []
        if external_url and status == "firing":
            base = external_url.rstrip("/")
            query = quote(_matchers(labels), safe="")
            found.append(Link(f"{base}/#/alerts?filter={query}", "Alertmanager"))
            found.append(Link(f"{base}/#/silences/new?filter={query}", "Silence"))
        return tuple(found)

    return links


def _matchers(labels: Mapping[str, str]) -> str:
    """Alertmanager's filter syntax for exactly these labels: ``{a="1",b="2"}``."""
    escaped = {
        name: value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        for name, value in labels.items()
    }
    return "{" + ",".join(f'{name}="{value}"' for name, value in sorted(escaped.items())) + "}"


def _grafana_links(
    entry: dict[str, Any], labels: dict[str, str], status: Status
) -> tuple[Link, ...]:
    return tuple(
        Link(url, title)
        for key, title in _GRAFANA_LINKS
        if (url := _url(entry.get(key))) and (key != "silenceURL" or status == "firing")
    )


# -- PagerDuty ---------------------------------------------------------------------------

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


# -- generic JSON ------------------------------------------------------------------------


class GenericMapping(BaseModel):
    """Where a generic webhook keeps each field of its alerts, as dotted paths into one
    alert object (``check.host``; a number step indexes an array: ``tags.0``). Filled
    from the setting ``BATON_ALERT_GENERIC_MAP`` (JSON); every field has a default, so
    ``{}`` reads bodies that already use these names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(default="generic", description="Source name the alerts carry.")
    alerts: str | None = Field(
        default=None,
        description="Path in the body to the alert array (or to one alert). Unset: the body"
        " if it is an array, else its 'alerts' array if it has one, else the body itself.",
    )
    fingerprint: str = Field(
        default="fingerprint",
        description="Path to the sender's id for the alert; nothing there: a hash of the"
        " source and labels.",
    )
    status: str = Field(default="status", description="Path to the status word (required).")
    firing_values: tuple[str, ...] = Field(
        default=FIRING_VALUES, description="Status words meaning firing (any case)."
    )
    resolved_values: tuple[str, ...] = Field(
        default=RESOLVED_VALUES, description="Status words meaning resolved (any case)."
    )
    labels: str = Field(default="labels", description="Path to an object of labels.")
    label_paths: dict[str, str] = Field(
        default_factory=dict, description="More labels: label name -> path of its value."
    )
    annotations: str = Field(default="annotations", description="Path to annotations.")
    annotation_paths: dict[str, str] = Field(
        default_factory=dict, description="More annotations: name -> path of its value."
    )
    severity: str = Field(
        default="severity", description="Path to the severity; nothing there: the label."
    )
    starts_at: str = Field(default="starts_at", description="Path to the start time.")
    ends_at: str = Field(default="ends_at", description="Path to the end time.")
    links: str = Field(
        default="links",
        description="Path to a URL or an array of URLs (or of {url, title} objects);"
        " what is not a URL is skipped.",
    )

    @model_validator(mode="after")
    def _statuses_disjoint(self) -> GenericMapping:
        both = {word.casefold() for word in self.firing_values} & {
            word.casefold() for word in self.resolved_values
        }
        if both:
            raise ValueError(f"{sorted(both)} are both firing_values and resolved_values")
        return self


def mapping_from_setting(text: str | None) -> GenericMapping:
    """``BATON_ALERT_GENERIC_MAP`` read once at start-up; unset or blank: the defaults. A
    value that does not read stops Baton with every problem in it, by field."""
    if text is None or not text.strip():
        return GenericMapping()
    try:
        return GenericMapping.model_validate_json(text)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(step) for step in error['loc']) or 'the value'}: {error['msg']}"
            for error in err.errors()
        )
        raise BatonError(f"BATON_ALERT_GENERIC_MAP: {problems}") from None


def generic(body: Any, mapping: GenericMapping) -> Parsed:
    """Any JSON, read through ``mapping``. An entry without a status or without a single
    label is rejected with the path that was looked at."""
    try:
        entries = _generic_entries(body, mapping)
    except _Bad as bad:
        return _rejected(mapping.source, str(bad), body)
    return _collect(mapping.source, entries, lambda entry: _generic_alert(entry, mapping))


def _generic_entries(body: Any, mapping: GenericMapping) -> list[tuple[str, Any]]:
    if mapping.alerts is not None:
        found = _get(body, mapping.alerts)
        if found is None:
            raise _Bad(f"nothing at {mapping.alerts!r} (the mapping's 'alerts' path)")
        if isinstance(found, list):
            return [(f"{mapping.alerts}[{index}]", entry) for index, entry in enumerate(found)]
        return [(mapping.alerts, found)]
    if isinstance(body, list):
        return [(f"body[{index}]", entry) for index, entry in enumerate(body)]
    if not isinstance(body, dict):
        raise _Bad(f"the body is {_kind(body)}, not a JSON object or array")
    if isinstance(body.get("alerts"), list):
        return [(f"alerts[{index}]", entry) for index, entry in enumerate(body["alerts"])]
    return [("body", body)]


def _generic_alert(entry: Any, mapping: GenericMapping) -> Alert:
    if not isinstance(entry, dict):
        raise _Bad(f"is {_kind(entry)}, not an object")
    status = _mapped_status(
        _get(entry, mapping.status),
        f"at {mapping.status!r}",
        mapping.firing_values,
        mapping.resolved_values,
    )
    labels = _picked(entry, mapping.labels, mapping.label_paths)
    if not labels:
        looked = ", ".join(repr(path) for path in (mapping.labels, *mapping.label_paths.values()))
        raise _Bad(f"no labels (looked at {looked})")
    return Alert(
        source=mapping.source,
        fingerprint=_text(_get(entry, mapping.fingerprint))
        or stable_fingerprint(mapping.source, labels),
        status=status,
        labels=labels,
        annotations=_picked(entry, mapping.annotations, mapping.annotation_paths),
        severity=_text(_get(entry, mapping.severity)) or labels.get("severity"),
        starts_at=_time_at(_get(entry, mapping.starts_at), repr(mapping.starts_at)),
        ends_at=_time_at(_get(entry, mapping.ends_at), repr(mapping.ends_at)),
        links=_generic_links(_get(entry, mapping.links)),
        raw=entry,
    )


def _picked(entry: dict[str, Any], path: str, paths: Mapping[str, str]) -> dict[str, str]:
    """The object at ``path`` plus one value per named path, all as text."""
    values = _strings(_get(entry, path), repr(path))
    for name, item_path in paths.items():
        if (text := _text(_get(entry, item_path))) is not None:
            values[name] = text
    return values


def _generic_links(value: Any) -> tuple[Link, ...]:
    items = value if isinstance(value, list) else [value]
    links = []
    for item in items:
        if url := _url(item):
            links.append(Link(url))
        elif isinstance(item, dict) and (url := _url(item.get("url") or item.get("href"))):
            links.append(Link(url, _text(item.get("title") or item.get("name")) or ""))
    return tuple(links)


# -- chat messages -----------------------------------------------------------------------

_CHAT_SPECIAL_GROUPS = frozenset({"status", "summary", "description"})


class ChatRule(BaseModel):
    """How to read an alert out of messages other bots post in a watched channel.

    ``pattern`` is searched (not matched) in the text; its named groups become labels,
    except ``status`` (the status word, mapped through ``firing_values`` and
    ``resolved_values`` unless ``status`` is fixed; no such group: firing), ``summary``
    and ``description`` (annotations). ``labels`` are added after and win. ``fingerprint``
    is a template over the groups and labels (``"{alertname}:{instance}"``); unset: a
    hash of ``chat`` and the labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str = Field(description="Channel id (C0123) or name (#alerts) watched.")
    pattern: str = Field(description="Python regex with named groups.")
    status: Status | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    fingerprint: str | None = None
    firing_values: tuple[str, ...] = FIRING_VALUES
    resolved_values: tuple[str, ...] = RESOLVED_VALUES

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"pattern {value!r} is not a valid regex: {err}") from None
        return value

    @model_validator(mode="after")
    def _template_names_known(self) -> ChatRule:
        """A typo in the template shows when the rule loads, not when an alert comes."""
        if self.fingerprint is None:
            return self
        known = set(self.regex.groupindex) | set(self.labels)
        for _, name, _, _ in string.Formatter().parse(self.fingerprint):
            if name is not None and re.split(r"[.\[]", name, maxsplit=1)[0] not in known:
                raise ValueError(
                    f"fingerprint {self.fingerprint!r} names {{{name}}}, which is neither a"
                    " named group of the pattern nor a label"
                )
        return self

    @property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)  # the re module caches compiled patterns

    def watches(self, channel: str, channel_name: str | None = None) -> bool:
        """Whether this rule's channel is the given id or name (``#`` optional)."""
        mine = self.channel.removeprefix("#").casefold()
        return any(
            mine == given.removeprefix("#").casefold() for given in (channel, channel_name) if given
        )


def chat(
    text: str, channel: str, rules: Sequence[ChatRule], *, channel_name: str | None = None
) -> Parsed:
    """The alert in one chat message: the first rule watching the channel (by id or
    name) whose pattern is found in the text wins; none: an empty ``Parsed``."""
    for index, rule in enumerate(rules):
        if not rule.watches(channel, channel_name):
            continue
        match = rule.regex.search(text)
        if match is None:
            continue
        raw = {"text": text, "channel": channel, "channel_name": channel_name, "rule": index}
        try:
            return Parsed(alerts=[_chat_alert(rule, match, raw)])
        except _Bad as bad:
            return _rejected(CHAT, f"rule {index} ({rule.channel}): {bad}", raw)
    return Parsed()


def _chat_alert(rule: ChatRule, match: re.Match[str], raw: dict[str, Any]) -> Alert:
    groups = {name: value for name, value in match.groupdict().items() if value is not None}
    labels = {
        name: value for name, value in groups.items() if name not in _CHAT_SPECIAL_GROUPS
    } | rule.labels
    if not labels:
        raise _Bad("the match gave no labels (add named groups or constant labels)")
    annotations = {"message": raw["text"]} | {
        name: groups[name] for name in ("summary", "description") if name in groups
    }
    return Alert(
        source=CHAT,
        fingerprint=_chat_fingerprint(rule, groups, labels),
        status=_chat_status(rule, groups),
        labels=labels,
        annotations=annotations,
        severity=labels.get("severity"),
        raw=raw,
    )


def _chat_status(rule: ChatRule, groups: dict[str, str]) -> Status:
    if rule.status is not None:
        return rule.status
    if "status" not in rule.regex.groupindex:
        return "firing"
    return _mapped_status(
        groups.get("status"),
        "in the pattern's 'status' group",
        rule.firing_values,
        rule.resolved_values,
    )


def _chat_fingerprint(rule: ChatRule, groups: dict[str, str], labels: dict[str, str]) -> str:
    if rule.fingerprint is None:
        return stable_fingerprint(CHAT, labels)
    values = dict.fromkeys(rule.regex.groupindex, "") | groups | rule.labels
    try:
        return rule.fingerprint.format_map(values)
    except (KeyError, IndexError, AttributeError, ValueError) as err:
        raise _Bad(f"fingerprint {rule.fingerprint!r} cannot be filled: {err!r}") from None
