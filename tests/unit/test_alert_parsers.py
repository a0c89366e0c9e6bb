from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.alerts import parsers
from engine.alerts.model import Link, Rejected
from engine.errors import BatonError

FAKES = Path(__file__).parent.parent / "fakes" / "alerts"


def load(name: str) -> Any:
    return json.loads((FAKES / f"{name}.json").read_text())


def at(*parts: int, offset_hours: int = 0) -> datetime:
    """A timezone-aware time from (year, month, day, hour, minute, second, microsecond)."""
    year, month, day, hour, minute, second, micro = (*parts, 0, 0, 0, 0)[:7]
    return datetime(
        year,
        month,
        day,
        hour,
        minute,
        second,
        micro,
        tzinfo=timezone(timedelta(hours=offset_hours)),
    )


# -- shared helpers -----------------------------------------------------------------------


def test_stable_fingerprint_ignores_label_order_but_not_source_or_values() -> None:
    one = parsers.stable_fingerprint("generic", {"a": "1", "b": "2"})
    assert one == parsers.stable_fingerprint("generic", {"b": "2", "a": "1"})
    assert len(one) == 16 and all(c in "0123456789abcdef" for c in one)
    assert one != parsers.stable_fingerprint("chat", {"a": "1", "b": "2"})
    assert one != parsers.stable_fingerprint("generic", {"a": "1", "b": "3"})
    assert one != parsers.stable_fingerprint("generic", {"a": "1"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "2026-11-26T10:15:30.123456789Z", at(2026, 11, 26, 10, 15, 30, 123456), id="nanos"
        ),
        pytest.param("2026-11-26T10:15:30.5Z", at(2026, 11, 26, 10, 15, 30, 500000), id="tenth"),
        pytest.param("2026-11-26T10:15:30Z", at(2026, 11, 26, 10, 15, 30), id="no-fraction"),
        pytest.param(
            "2026-11-26T12:15:30.1+02:00",
            at(2026, 11, 26, 12, 15, 30, 100000, offset_hours=2),
            id="offset",
        ),
        pytest.param(
            "2026-11-26t10:15:30-0500", at(2026, 11, 26, 10, 15, 30, offset_hours=-5), id="compact"
        ),
        pytest.param("2026-11-26T10:15:30", at(2026, 11, 26, 10, 15, 30), id="naive-is-utc"),
        pytest.param("0001-01-01T00:00:00Z", None, id="go-zero-time"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    got = parsers.parse_time(text)
    assert got == expected
    if got is not None:
        assert got.utcoffset() is not None


def test_parse_time_keeps_the_instant_across_offsets() -> None:
    assert parsers.parse_time("2026-11-26T12:15:31.5+02:00") == datetime(
        2026, 11, 26, 10, 15, 31, 500000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("yesterday", id="words"),
        pytest.param("2026-13-01T00:00:00Z", id="month-13"),
        pytest.param("2026-11-26", id="date-only"),
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not an RFC 3339 time"):
        parsers.parse_time(text)


# -- Alertmanager --------------------------------------------------------------------------


def test_alertmanager_grouped_firing() -> None:
    body = load("alertmanager_firing")
    parsed = parsers.alertmanager(body)

    assert parsed.rejected == []
    assert parsed.note is None
    assert parsed.truncated == 0
    assert [a.fingerprint for a in parsed.alerts] == ["1a30ba71cca2921f", "c6eadffa33fcdf37"]
    first, second = parsed.alerts
    assert first.source == "alertmanager"
    assert first.status == "firing"
    assert first.labels == {
        "alertname": "HighErrorRate",
        "instance": "api-1:8080",
        "job": "api",
        "severity": "critical",
    }
    assert first.annotations["description"] == "api-1:8080 answers 7.2% of requests with 5xx"
    assert first.severity == "critical"
    assert first.starts_at == datetime(2026, 11, 26, 10, 15, 30, 123456, tzinfo=UTC)
    assert first.ends_at is None
    assert first.raw == body["alerts"][0]
    assert second.starts_at == datetime(2026, 11, 26, 10, 15, 31, 500000, tzinfo=UTC)
    assert second.labels["instance"] == "api-2:8080"


def test_alertmanager_links_source_alert_and_silence_while_firing() -> None:
    first = parsers.alertmanager(load("alertmanager_firing")).alerts[0]
    matchers = (
        "%7Balertname%3D%22HighErrorRate%22%2Cinstance%3D%22api-1%3A8080%22%2C"
        "job%3D%22api%22%2Cseverity%3D%22critical%22%7D"
    )
    assert first.links == (
        Link(
            "http://prometheus.example.org:9090/graph?g0.expr=job%3A5xx_ratio%3E0.05&g0.tab=1",
            "Source",
        ),
        Link(f"http://alertmanager.example.org:9093/#/alerts?filter={matchers}", "Alertmanager"),
        Link(f"http://alertmanager.example.org:9093/#/silences/new?filter={matchers}", "Silence"),
    )


def test_alertmanager_resolved() -> None:
    parsed = parsers.alertmanager(load("alertmanager_resolved"))

    (alert,) = parsed.alerts
    assert alert.status == "resolved"
    assert alert.fingerprint == "1a30ba71cca2921f"
    assert alert.starts_at == datetime(2026, 11, 26, 10, 15, 30, 123456, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 11, 26, 10, 42, 0, 987654, tzinfo=UTC)
    assert [link.title for link in alert.links] == ["Source"]


def test_alertmanager_mixed_group_with_truncated_alerts() -> None:
    parsed = parsers.alertmanager(load("alertmanager_mixed_truncated"))

    assert [(a.labels["instance"], a.status) for a in parsed.alerts] == [
        ("db-1", "firing"),
        ("db-2", "resolved"),
    ]
    assert parsed.alerts[0].starts_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert parsed.alerts[0].severity == "warning"
    assert parsed.rejected == []
    assert parsed.truncated == 3
    assert parsed.note is not None
    assert "left 3 alert(s)" in parsed.note
    assert "sent 2" in parsed.note


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(lambda b: [b], "the body is an array, not a JSON object", id="array"),
        pytest.param(lambda b: "hi", "the body is a string, not a JSON object", id="string"),
        pytest.param(
            lambda b: {k: v for k, v in b.items() if k != "version"},
            "the body has no 'version' (expected \"4\")",
            id="no-version",
        ),
        pytest.param(
            lambda b: b | {"version": "3"},
            "version '3' is not supported (expected \"4\")",
            id="old-version",
        ),
        pytest.param(
            lambda b: {k: v for k, v in b.items() if k != "alerts"},
            "the body has no 'alerts' list",
            id="no-alerts",
        ),
        pytest.param(
            lambda b: b | {"alerts": {"status": "firing"}},
            "'alerts' is an object, not an array",
            id="alerts-object",
        ),
    ],
)
def test_alertmanager_rejects_the_whole_body(change: Any, reason: str) -> None:
    body = change(load("alertmanager_firing"))
    parsed = parsers.alertmanager(body)

    assert parsed.alerts == []
    assert parsed.rejected == [Rejected(source="alertmanager", reason=reason, raw=body)]


def test_alertmanager_rejects_bad_entries_and_keeps_the_good_ones() -> None:
    body = load("alertmanager_firing")
    good = body["alerts"][0]
    body["alerts"] = [
        {k: v for k, v in good.items() if k != "labels"},
        good,
        {k: v for k, v in good.items() if k != "status"},
        good | {"status": "pending"},
        "not an alert",
        good | {"labels": "alertname=X"},
        good | {"labels": {}},
        good | {"startsAt": "noon"},
        body["alerts"][1],
    ]
    parsed = parsers.alertmanager(body)

    assert [a.fingerprint for a in parsed.alerts] == ["1a30ba71cca2921f", "c6eadffa33fcdf37"]
    assert [r.reason for r in parsed.rejected] == [
        "alerts[0]: no 'labels'",
        "alerts[2]: no 'status'",
        "alerts[3]: 'status' is 'pending', expected 'firing' or 'resolved'",
        "alerts[4]: is a string, not an object",
        "alerts[5]: 'labels' is a string, not an object",
        "alerts[6]: 'labels' is empty",
        "alerts[7]: 'startsAt': 'noon' is not an RFC 3339 time",
    ]
    assert parsed.rejected[3].raw == "not an alert"
    assert {r.source for r in parsed.rejected} == {"alertmanager"}


def test_alertmanager_without_fingerprint_hashes_the_labels() -> None:
    body = load("alertmanager_firing")
    del body["alerts"][0]["fingerprint"]
    del body["externalURL"]
    alert = parsers.alertmanager(body).alerts[0]

    assert alert.fingerprint == parsers.stable_fingerprint("alertmanager", alert.labels)
    assert [link.title for link in alert.links] == ["Source"]


def test_alertmanager_coerces_label_values_to_text() -> None:
    body = load("alertmanager_firing")
    body["alerts"][0]["labels"] |= {"replicas": 3, "canary": True, "gone": None}
    labels = parsers.alertmanager(body).alerts[0].labels

    assert labels["replicas"] == "3"
    assert labels["canary"] == "true"
    assert "gone" not in labels


# -- Grafana -------------------------------------------------------------------------------


def test_grafana_firing() -> None:
    body = load("grafana_firing")
    parsed = parsers.grafana(body)

    assert parsed.rejected == []
    first, second = parsed.alerts
    assert first.source == "grafana"
    assert first.fingerprint == "c6eadffa33fcdf37"
    assert first.status == "firing"
    assert first.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert first.annotations["summary"] == "This alert was triggered for zone us-1"
    assert first.severity is None
    assert first.starts_at == datetime(2026, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert first.ends_at is None
    assert [(link.title, link.url) for link in first.links] == [
        ("Alert rule", body["alerts"][0]["generatorURL"]),
        ("Dashboard", "https://grafana.example.org/d/d1rdpdv7k?orgId=1"),
        ("Panel", "https://grafana.example.org/d/d1rdpdv7k?orgId=1&viewPanel=4"),
        ("Silence", body["alerts"][0]["silenceURL"]),
    ]
    assert first.raw["valueString"].startswith("[ var='B'")
    assert second.severity == "warning"
    assert [link.title for link in second.links] == ["Alert rule", "Silence"]


def test_grafana_resolved() -> None:
    (alert,) = parsers.grafana(load("grafana_resolved")).alerts

    assert alert.status == "resolved"
    assert alert.fingerprint == "c6eadffa33fcdf37"
    assert alert.ends_at == datetime(2026, 10, 12, 8, 6, 3, 157076, tzinfo=UTC)
    assert [link.title for link in alert.links] == ["Alert rule", "Dashboard", "Panel"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            {"version": "4", "alerts": []},
            "version '4' is not supported (expected \"1\")",
            id="alertmanager-version",
        ),
        pytest.param(
            {"ruleName": "CPU", "state": "alerting", "evalMatches": []},
            "this is a legacy Grafana alerting body ('ruleName', no 'alerts'):"
            " send from a unified alerting contact point",
            id="legacy",
        ),
        pytest.param(None, "the body is null, not a JSON object", id="null"),
    ],
)
def test_grafana_rejects(body: Any, reason: str) -> None:
    parsed = parsers.grafana(body)

    assert parsed.alerts == []
    assert [r.reason for r in parsed.rejected] == [reason]


def test_grafana_truncated() -> None:
    body = load("grafana_firing") | {"truncatedAlerts": 5}
    parsed = parsers.grafana(body)

    assert len(parsed.alerts) == 2
    assert parsed.truncated == 5
    assert parsed.note is not None
    assert parsed.note.startswith("grafana left 5 alert(s)")


# -- PagerDuty -----------------------------------------------------------------------------


def test_pagerduty_triggered() -> None:
    body = load("pagerduty_incident_triggered")
    parsed = parsers.pagerduty(body)

    assert parsed.rejected == []
    assert parsed.note is None
    (alert,) = parsed.alerts
    assert alert.source == "pagerduty"
    assert alert.fingerprint == "Q2K1R9W4ZJ8X3B"
    assert alert.status == "firing"
    assert alert.labels == {
        "alertname": "Checkout latency above 2s",
        "service": "Checkout API",
        "urgency": "high",
        "priority": "P1",
        "incident_key": "a1b2c3d4e5f6478990abcdef01234567",
        "event_type": "incident.triggered",
    }
    assert alert.annotations == {
        "summary": "Checkout latency above 2s",
        "agent": "Checkout API",
        "assignees": "Dana Oncall",
        "conference_url": "https://meet.example.org/checkout-war-room",
    }
    assert alert.severity == "critical"
    assert alert.starts_at == datetime(2026, 11, 26, 10, 20, 10, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.links == (
        Link("https://acme.pagerduty.com/incidents/Q2K1R9W4ZJ8X3B", "PagerDuty incident #4242"),
        Link("https://acme.pagerduty.com/services/PF9KMXH", "Service Checkout API"),
    )
    assert alert.raw == body["event"]


def test_pagerduty_resolved_links_to_the_same_incident() -> None:
    triggered = parsers.pagerduty(load("pagerduty_incident_triggered")).alerts[0]
    (resolved,) = parsers.pagerduty(load("pagerduty_incident_resolved")).alerts

    assert resolved.status == "resolved"
    assert resolved.fingerprint == triggered.fingerprint
    assert resolved.ends_at == datetime(2026, 11, 26, 10, 58, 42, 750000, tzinfo=UTC)
    assert resolved.annotations["agent"] == "Dana Oncall"
    assert "assignees" not in resolved.annotations


def test_pagerduty_ping_is_a_note_not_a_rejection() -> None:
    parsed = parsers.pagerduty(load("pagerduty_ping"))

    assert parsed.alerts == []
    assert parsed.rejected == []
    assert parsed.note == "PagerDuty pagey.ping is not about an incident: nothing to route"


def pd_event(event_type: str, **data: Any) -> dict[str, Any]:
    body = load("pagerduty_incident_triggered")
    body["event"]["event_type"] = event_type
    body["event"]["data"] |= data
    return body


@pytest.mark.parametrize(
    ("event_type", "incident_status", "expected"),
    [
        pytest.param("incident.reopened", "triggered", "firing", id="reopened"),
        pytest.param("incident.acknowledged", "acknowledged", "firing", id="acknowledged"),
        pytest.param("incident.escalated", "triggered", "firing", id="escalated"),
        pytest.param("incident.priority_updated", "triggered", "firing", id="priority-open"),
        pytest.param("incident.priority_updated", "resolved", "resolved", id="priority-closed"),
        pytest.param("incident.escalated", None, "firing", id="escalated-no-status"),
        pytest.param("incident.reassigned", "acknowledged", "firing", id="other-open"),
        pytest.param("incident.resolved", "resolved", "resolved", id="resolved"),
    ],
)
def test_pagerduty_event_types(event_type: str, incident_status: str | None, expected: str) -> None:
    (alert,) = parsers.pagerduty(pd_event(event_type, status=incident_status)).alerts

    assert alert.status == expected
    assert alert.labels["event_type"] == event_type
    assert (alert.ends_at is not None) == (expected == "resolved")


@pytest.mark.parametrize(
    ("body", "note"),
    [
        pytest.param(
            {"event": {"event_type": "service.updated", "data": {"type": "service"}}},
            "PagerDuty service.updated is not about an incident: nothing to route",
            id="service",
        ),
        pytest.param(
            {"event": {"event_type": "incident.annotated", "data": {"type": "incident_note"}}},
            "PagerDuty incident.annotated carries 'incident_note', not an incident",
            id="note",
        ),
        pytest.param(
            pd_event("incident.status_update_published", status=None),
            "PagerDuty incident.status_update_published on incident Q2K1R9W4ZJ8X3B"
            " (status None) says neither firing nor resolved: nothing to route",
            id="undecided",
        ),
    ],
)
def test_pagerduty_events_without_an_alert(body: Any, note: str) -> None:
    parsed = parsers.pagerduty(body)

    assert parsed.alerts == []
    assert parsed.rejected == []
    assert parsed.note == note


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param([], "the body is an array, not a JSON object", id="array"),
        pytest.param(
            {"id": "x"}, "the body has no 'event' object: not a PagerDuty V3 webhook", id="no-event"
        ),
        pytest.param(
            {"messages": [{"event": "incident.trigger"}]},
            "the body has no 'event' object: not a PagerDuty V3 webhook"
            " (V2 webhooks, with 'messages', are not supported)",
            id="v2",
        ),
        pytest.param({"event": {"id": "e"}}, "the event has no 'event_type'", id="no-type"),
        pytest.param(
            {"event": {"event_type": "incident.triggered", "data": None}},
            "incident.triggered: the event has no 'data' object",
            id="no-data",
        ),
        pytest.param(
            pd_event("incident.triggered", id=None),
            "incident.triggered: no 'data.id' (the incident id)",
            id="no-id",
        ),
        pytest.param(
            pd_event("incident.triggered", created_at="soon"),
            "'data.created_at': 'soon' is not an RFC 3339 time",
            id="bad-time",
        ),
    ],
)
def test_pagerduty_rejects(body: Any, reason: str) -> None:
    parsed = parsers.pagerduty(body)

    assert parsed.alerts == []
    assert parsed.rejected == [Rejected(source="pagerduty", reason=reason, raw=body)]


@pytest.mark.parametrize(
    ("data", "severity"),
    [
        pytest.param({"urgency": "low"}, "warning", id="low"),
        pytest.param({"urgency": None}, "P1", id="priority"),
        pytest.param({"urgency": None, "priority": None}, None, id="none"),
    ],
)
def test_pagerduty_severity(data: dict[str, Any], severity: str | None) -> None:
    (alert,) = parsers.pagerduty(pd_event("incident.triggered", **data)).alerts

    assert alert.severity == severity


def sign(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


RAW = (FAKES / "pagerduty_incident_triggered.json").read_bytes()


@pytest.mark.parametrize(
    ("header", "secrets", "valid"),
    [
        pytest.param(sign(RAW, "s3cret"), ["s3cret"], True, id="valid"),
        pytest.param(
            sign(RAW, "s3cret").upper().replace("V1=", "v1="), ["s3cret"], True, id="hex-case"
        ),
        pytest.param(sign(RAW, "other"), ["s3cret"], False, id="wrong-secret"),
        pytest.param(sign(RAW + b" ", "s3cret"), ["s3cret"], False, id="tampered-body"),
        pytest.param(f"{sign(RAW, 'old')}, {sign(RAW, 'new')}", ["new"], True, id="rotated-header"),
        pytest.param(sign(RAW, "old"), ["new", "old"], True, id="rotated-secrets"),
        pytest.param(sign(RAW, "s3cret").replace("v1=", "v0="), ["s3cret"], False, id="scheme"),
        pytest.param(None, ["s3cret"], False, id="no-header"),
        pytest.param("", ["s3cret"], False, id="empty-header"),
        pytest.param(sign(RAW, ""), [""], False, id="empty-secret"),
        pytest.param(sign(RAW, "s3cret"), [], False, id="no-secrets"),
        pytest.param("v1=é", ["s3cret"], False, id="non-ascii"),
    ],
)
def test_verify_pagerduty(header: str | None, secrets: list[str], valid: bool) -> None:
    assert parsers.verify_pagerduty(RAW, header, secrets) is valid


# -- generic -------------------------------------------------------------------------------

DEFAULTS = parsers.GenericMapping()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param([{"status": "FIRING", "labels": {"job": "x"}}], id="array"),
        pytest.param({"alerts": [{"status": "Alerting", "labels": {"job": "x"}}]}, id="alerts"),
        pytest.param({"status": "problem", "labels": {"job": "x"}}, id="single"),
    ],
)
def test_generic_defaults_find_the_alerts(body: Any) -> None:
    parsed = parsers.generic(body, DEFAULTS)

    assert parsed.rejected == []
    (alert,) = parsed.alerts
    assert alert.source == "generic"
    assert alert.status == "firing"
    assert alert.labels == {"job": "x"}
    assert alert.fingerprint == parsers.stable_fingerprint("generic", {"job": "x"})


def test_generic_default_fields() -> None:
    body = {
        "fingerprint": "abc",
        "status": "ok",
        "labels": {"job": "x", "severity": "page", "port": 8080},
        "annotations": {"summary": "all good", "ratio": 0.5},
        "starts_at": "2026-11-26T10:00:00Z",
        "ends_at": 1795600800,
        "links": "https://example.org/x",
    }
    (alert,) = parsers.generic(body, DEFAULTS).alerts

    assert alert.fingerprint == "abc"
    assert alert.status == "resolved"
    assert alert.labels == {"job": "x", "severity": "page", "port": "8080"}
    assert alert.annotations == {"summary": "all good", "ratio": "0.5"}
    assert alert.severity == "page"
    assert alert.starts_at == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert alert.ends_at == datetime.fromtimestamp(1795600800, UTC)
    assert alert.links == (Link("https://example.org/x"),)
    assert alert.raw == body


def test_generic_custom_mapping() -> None:
    mapping = parsers.GenericMapping(
        source="uptime",
        alerts="data.checks",
        fingerprint="check_id",
        status="state",
        firing_values=("down",),
        resolved_values=("up",),
        labels="nothing.here",
        label_paths={"host": "target.host", "port": "target.port", "env": "tags.0"},
        annotations="nothing.here",
        annotation_paths={"summary": "message"},
        severity="priority",
        starts_at="since",
        ends_at="recovered_at",
        links="report",
    )
    parsed = parsers.generic(load("generic_example"), mapping)

    assert parsed.rejected == []
    down, up = parsed.alerts
    assert (down.source, down.fingerprint, down.status) == ("uptime", "chk-88", "firing")
    assert down.labels == {"host": "shop.example.org", "port": "443", "env": "prod"}
    assert down.annotations == {"summary": "TLS handshake timed out"}
    assert down.severity == "critical"
    assert down.starts_at == datetime(2026, 11, 26, 9, 1, 2, 123456, tzinfo=UTC)
    assert down.ends_at is None
    assert down.links == (Link("https://uptime.example.org/checks/chk-88"),)
    assert (up.fingerprint, up.status, up.severity) == ("chk-91", "resolved", None)
    assert up.starts_at == datetime.fromtimestamp(1795600800, UTC)
    assert up.ends_at == datetime.fromtimestamp(1795601040.123, UTC)
    assert up.links == (
        Link("https://uptime.example.org/checks/chk-91"),
        Link("https://status.example.org", "Status page"),
    )


def test_generic_from_the_setting() -> None:
    mapping = parsers.mapping_from_setting(
        '{"alerts": "data.checks", "status": "state", "firing_values": ["DOWN"],'
        ' "resolved_values": ["UP"], "label_paths": {"host": "target.host"}}'
    )
    parsed = parsers.generic(load("generic_example"), mapping)

    assert [(a.labels["host"], a.status) for a in parsed.alerts] == [
        ("shop.example.org", "firing"),
        ("api.example.org", "resolved"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{nope", "BATON_ALERT_GENERIC_MAP: the value: Invalid JSON", id="json"),
        pytest.param('{"stauts": "x"}', "BATON_ALERT_GENERIC_MAP: stauts: Extra inputs", id="typo"),
        pytest.param(
            '{"firing_values": ["ok"]}',
            "BATON_ALERT_GENERIC_MAP: the value: Value error, ['ok'] are both firing_values"
            " and resolved_values",
            id="overlap",
        ),
    ],
)
def test_mapping_from_setting_rejects(text: str, message: str) -> None:
    with pytest.raises(BatonError) as excinfo:
        parsers.mapping_from_setting(text)
    assert str(excinfo.value).startswith(message)


@pytest.mark.parametrize("text", [None, "", "  "])
def test_mapping_from_setting_unset_is_the_defaults(text: str | None) -> None:
    assert parsers.mapping_from_setting(text) == parsers.GenericMapping()


def test_generic_rejects_entries_precisely_and_keeps_the_good_ones() -> None:
    mapping = parsers.GenericMapping(label_paths={"host": "host"})
    body = [
        {"labels": {"job": "x"}},
        {"status": "pending", "labels": {"job": "x"}},
        {"status": "firing"},
        {"status": "firing", "labels": "job=x"},
        42,
        {"status": "firing", "host": "db-1", "starts_at": "at noon"},
        {"status": "firing", "host": "db-1", "ends_at": True},
        {"status": "resolved", "host": "db-2"},
    ]
    parsed = parsers.generic(body, mapping)

    assert [a.labels for a in parsed.alerts] == [{"host": "db-2"}]
    assert [r.reason for r in parsed.rejected] == [
        "body[0]: no status at 'status'",
        "body[1]: status 'pending' at 'status' is neither firing"
        " (firing, alerting, triggered, open, problem) nor resolved (resolved, ok, closed,"
        " recovered)",
        "body[2]: no labels (looked at 'labels', 'host')",
        "body[3]: 'labels' is a string, not an object",
        "body[4]: is a number, not an object",
        "body[5]: 'starts_at': 'at noon' is not an RFC 3339 time",
        "body[6]: 'ends_at' is a boolean, not a time",
    ]
    assert parsed.rejected[4].raw == 42


@pytest.mark.parametrize(
    ("body", "mapping", "reason"),
    [
        pytest.param(
            {"data": {}},
            parsers.GenericMapping(alerts="data.items"),
            "nothing at 'data.items' (the mapping's 'alerts' path)",
            id="no-alerts",
        ),
        pytest.param(
            "down", DEFAULTS, "the body is a string, not a JSON object or array", id="str"
        ),
    ],
)
def test_generic_rejects_the_body(body: Any, mapping: parsers.GenericMapping, reason: str) -> None:
    parsed = parsers.generic(body, mapping)

    assert parsed.alerts == []
    assert parsed.rejected == [Rejected(source="generic", reason=reason, raw=body)]


def test_generic_nested_label_values_become_json_text() -> None:
    body = {"status": "open", "labels": {"tags": ["a", "b"], "meta": {"z": 1, "a": None}}}
    (alert,) = parsers.generic(body, DEFAULTS).alerts

    assert alert.labels == {"tags": '["a","b"]', "meta": '{"a":null,"z":1}'}


def test_generic_skips_what_is_not_a_link() -> None:
    body = {"status": "open", "labels": {"job": "x"}, "links": ["", {"rel": "self"}, 3, "u"]}
    (alert,) = parsers.generic(body, DEFAULTS).alerts

    assert alert.links == (Link("u"),)


# -- chat ----------------------------------------------------------------------------------

NAGIOS = parsers.ChatRule(
    channel="#alerts",
    pattern=r"\*\* (?P<status>PROBLEM|RECOVERY) Service Alert: (?P<instance>[\w.-]+)/"
    r"(?P<alertname>\w+) is (?P<summary>.+?) \*\*",
    labels={"team": "ops"},
    fingerprint="{alertname}:{instance}",
    resolved_values=("recovery",),
)
DEPLOYS = parsers.ChatRule(
    channel="C0DEPLOY",
    pattern=r"deploy of (?P<app>\w+) failed",
    status="firing",
    labels={"alertname": "DeployFailed", "severity": "warning"},
)


def test_chat_rule_by_channel_name() -> None:
    text = "** PROBLEM Service Alert: web-1.example.org/HTTP is CRITICAL **"
    parsed = parsers.chat(text, "C0ALERTS", [NAGIOS], channel_name="alerts")

    (alert,) = parsed.alerts
    assert alert.source == "chat"
    assert alert.status == "firing"
    assert alert.labels == {"instance": "web-1.example.org", "alertname": "HTTP", "team": "ops"}
    assert alert.annotations == {"message": text, "summary": "CRITICAL"}
    assert alert.fingerprint == "HTTP:web-1.example.org"
    assert alert.raw == {"text": text, "channel": "C0ALERTS", "channel_name": "alerts", "rule": 0}


def test_chat_status_group_resolves_with_the_same_fingerprint() -> None:
    firing = "** PROBLEM Service Alert: web-1/HTTP is CRITICAL **"
    resolved = "ops-bot says: ** RECOVERY Service Alert: web-1/HTTP is OK ** (after 5m)"
    one = parsers.chat(firing, "C1", [NAGIOS], channel_name="#alerts").alerts[0]
    two = parsers.chat(resolved, "C1", [NAGIOS], channel_name="#alerts").alerts[0]

    assert (one.status, two.status) == ("firing", "resolved")
    assert one.fingerprint == two.fingerprint


def test_chat_fixed_status_and_default_fingerprint() -> None:
    (alert,) = parsers.chat("heads up: deploy of billing failed", "C0DEPLOY", [DEPLOYS]).alerts

    assert alert.status == "firing"
    assert alert.labels == {"app": "billing", "alertname": "DeployFailed", "severity": "warning"}
    assert alert.severity == "warning"
    assert alert.fingerprint == parsers.stable_fingerprint("chat", alert.labels)


def test_chat_constant_labels_win_over_groups() -> None:
    rule = parsers.ChatRule(channel="C1", pattern=r"(?P<team>\w+) is down", labels={"team": "ops"})
    (alert,) = parsers.chat("db is down", "C1", [rule]).alerts

    assert alert.labels == {"team": "ops"}
    assert alert.status == "firing"


@pytest.mark.parametrize(
    ("text", "channel", "channel_name"),
    [
        pytest.param("all quiet", "C0DEPLOY", None, id="no-match"),
        pytest.param("deploy of billing failed", "C0OTHER", "random", id="other-channel"),
        pytest.param("deploy of billing failed", "C0OTHER", None, id="no-name"),
    ],
)
def test_chat_nothing_is_not_a_rejection(text: str, channel: str, channel_name: str | None) -> None:
    assert parsers.chat(text, channel, [NAGIOS, DEPLOYS], channel_name=channel_name) == (
        parsers.Parsed()
    )


def test_chat_first_matching_rule_wins() -> None:
    broad = parsers.ChatRule(channel="c0deploy", pattern=r"(?P<word>failed)")
    (alert,) = parsers.chat("deploy of billing failed", "C0DEPLOY", [broad, DEPLOYS]).alerts

    assert alert.labels == {"word": "failed"}


@pytest.mark.parametrize(
    ("rule", "text", "reason"),
    [
        pytest.param(
            NAGIOS.model_copy(update={"resolved_values": ("ok",)}),
            "** RECOVERY Service Alert: web-1/HTTP is OK **",
            "rule 0 (#alerts): status 'RECOVERY' in the pattern's 'status' group is neither"
            " firing (firing, alerting, triggered, open, problem) nor resolved (ok)",
            id="unknown-status",
        ),
        pytest.param(
            parsers.ChatRule(channel="#alerts", pattern=r"(?P<status>down)?\s*ALERT (?P<host>\w+)"),
            "ALERT db-1",
            "rule 0 (#alerts): no status in the pattern's 'status' group",
            id="status-group-unmatched",
        ),
        pytest.param(
            parsers.ChatRule(channel="#alerts", pattern=r"ALERT"),
            "ALERT",
            "rule 0 (#alerts): the match gave no labels (add named groups or constant labels)",
            id="no-labels",
        ),
    ],
)
def test_chat_rejects(rule: parsers.ChatRule, text: str, reason: str) -> None:
    parsed = parsers.chat(text, "C1", [rule], channel_name="alerts")

    assert parsed.alerts == []
    assert [r.reason for r in parsed.rejected] == [reason]
    assert parsed.rejected[0].raw["text"] == text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"pattern": "(?P<x"}, "is not a valid regex", id="regex"),
        pytest.param(
            {"pattern": "(?P<host>\\w+)", "fingerprint": "{hots}"},
            "names {hots}, which is neither a named group of the pattern nor a label",
            id="template-name",
        ),
        pytest.param({"pattern": "x", "status": "open"}, "status", id="status"),
    ],
)
def test_chat_rule_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parsers.ChatRule(channel="#alerts", **fields)


def test_parsed_is_frozen_and_shared_shape() -> None:
    parsed = parsers.alertmanager(load("alertmanager_resolved"))
    with pytest.raises(AttributeError):
        parsed.note = "x"  # type: ignore[misc]
    assert copy.deepcopy(parsed) == parsed
