"""Any JSON body, read through a ``GenericMapping`` of dotted paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.alerts.parsers._common import (
    FIRING_VALUES,
    RESOLVED_VALUES,
    Parsed,
    _Bad,
    _collect,
    _get,
    _kind,
    _mapped_status,
    _rejected,
    _strings,
    _text,
    _time_at,
    _url,
    stable_fingerprint,
)
from engine.alerts.model import Alert, Link
from engine.errors import BatonError


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


def generic_entries(body: Any, mapping: GenericMapping) -> int:
    """How many entries ``generic`` would read from ``body`` (one for a body it refuses)."""
    try:
        return len(_generic_entries(body, mapping))
    except _Bad:
        return 1


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
