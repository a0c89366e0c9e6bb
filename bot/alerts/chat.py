"""Alert messages in chat: the ``alerts.chat`` rules of ``BATON_CONFIG``.

```yaml
alerts:
  chat:
    - channel: "#alerts"               # a channel id or #name Baton is in
      pattern: '\\[(?P<status>FIRING|RESOLVED)\\] (?P<alertname>\\w+) on (?P<instance>\\S+)'
      labels: {team: storage}          # added to the named groups
      fingerprint: "{alertname}:{instance}"
```

Messages other bots (or people) post in a watched channel are matched against the rules;
the first rule whose pattern is found makes an alert (``bot.alerts.parsers.chat``), which
is routed like a webhook's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.alerts.parsers import ChatRule
from engine.errors import BatonError, PlaybookInvalid
from engine.playbooks import model as playbook
from engine.playbooks import yamldoc


class _Alerts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat: list[ChatRule] = Field(default_factory=list)


def load(path: Path | None) -> list[ChatRule]:
    """The chat alert rules of the config file (none without a file or a section)."""
    if path is None or not path.is_file():
        return []  # accessconfig.load, which reads the file first, says what is wrong
    try:
        data, lines = playbook.parse_yaml(yamldoc.read_text(path), str(path))
    except PlaybookInvalid:
        return []  # the same: accessconfig.load reported it
    section = (data or {}).get("alerts") if isinstance(data, dict) else None
    if not section:
        return []
    try:
        return _Alerts.model_validate(section).chat
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ("alerts", *err["loc"])
            where = ".".join(str(p) for p in loc)
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{path}:{playbook.line_of(lines, loc) or '?'}: {where}: {message}")
        raise BatonError("\n".join(problems)) from None
