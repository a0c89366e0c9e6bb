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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.alerts.parsers import ChatRule
from engine.errors import BatonError


class _Alerts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat: list[ChatRule] = Field(default_factory=list)


def load(path: Path | None) -> list[ChatRule]:
    """The chat alert rules of the config file (none without a file or a section)."""
    if path is None or not path.exists():
        return []
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BatonError(f"{path}: not valid YAML: {exc}") from None
    section = (data or {}).get("alerts") if isinstance(data, dict) else None
    if not section:
        return []
    try:
        return _Alerts.model_validate(section).chat
    except ValidationError as exc:
        problems = "; ".join(
            f"alerts.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise BatonError(f"{path}: {problems}") from None
