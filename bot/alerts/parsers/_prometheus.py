"""Prometheus Alertmanager and Grafana unified alerting: the same webhook family."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from bot.alerts.parsers._common import (
    Parsed,
    _Bad,
    _collect,
    _kind,
    _rejected,
    _strings,
    _time_at,
    _url,
    stable_fingerprint,
)
from engine.alerts.model import Alert, Link, Status

ALERTMANAGER = "alertmanager"
GRAFANA = "grafana"

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
