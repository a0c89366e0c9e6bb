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
- Values no database stores (a NUL, a lone surrogate, JSON's ``NaN``/``Infinity``) reject
  the entry holding them, with the field's path; a rejected entry is kept repaired
  (``storable_only``, the last step before anything is stored).
- PagerDuty: the incident id is the fingerprint, so the resolve finds the run the trigger
  started. ``incident.triggered``/``reopened`` fire, ``incident.resolved`` resolves; any
  other incident event (acknowledged, escalated, priority_updated...) follows the
  incident's ``data.status``, so a priority change on a resolved incident starts nothing.
"""

from __future__ import annotations

from typing import Any

from bot.alerts.parsers._chat import CHAT, ChatRule, chat
from bot.alerts.parsers._common import (
    FIRING_VALUES,
    RESOLVED_VALUES,
    Parsed,
    parse_time,
    stable_fingerprint,
    storable_only,
)
from bot.alerts.parsers._generic import (
    GenericMapping,
    generic,
    generic_entries,
    mapping_from_setting,
)
from bot.alerts.parsers._pagerduty import PAGERDUTY, pagerduty, verify_pagerduty
from bot.alerts.parsers._prometheus import ALERTMANAGER, GRAFANA, LinkMaker, alertmanager, grafana

__all__ = [
    "ALERTMANAGER",
    "CHAT",
    "FIRING_VALUES",
    "GRAFANA",
    "PAGERDUTY",
    "RESOLVED_VALUES",
    "ChatRule",
    "GenericMapping",
    "LinkMaker",
    "Parsed",
    "alertmanager",
    "chat",
    "entries",
    "generic",
    "grafana",
    "mapping_from_setting",
    "pagerduty",
    "parse_time",
    "stable_fingerprint",
    "storable_only",
    "verify_pagerduty",
]


def entries(source: str, body: Any, mapping: GenericMapping) -> int:
    """How many alerts ``body`` carries, counted before any is read (the per-request cap
    is checked on it): the entries of its alerts array, else one."""
    if source in (ALERTMANAGER, GRAFANA):
        found = body.get("alerts") if isinstance(body, dict) else None
        return len(found) if isinstance(found, list) else 1
    if source == "generic":
        return generic_entries(body, mapping)
    return 1
