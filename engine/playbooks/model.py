"""The playbook format: pydantic models, and loading YAML files with line numbers.

One playbook per file. Structural checks (types, unknown keys, bad durations) happen here
through pydantic; semantic checks (the DAG, templates, actions) live in
``engine.playbooks.validate``.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from engine.alerts import matchers
from engine.errors import PlaybookInvalid, Problem
from engine.playbooks import durations, yamldoc
from engine.playbooks.foreach import ForEach
from engine.schedules import cron as crontab

Duration = durations.Duration

STEP_ID = r"^[A-Za-z_][A-Za-z0-9_-]*$"
PLAYBOOK_NAME = r"^[a-z0-9][a-z0-9_.-]*$"
WORKER_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""A worker label (``runs_on``, ``baton worker --labels``): it names a job queue."""
LABEL_RULE = (
    "a worker label is letters, digits, '-', '_' and '.' (at most 63, starting with a "
    "letter or digit), as in `runs_on: dc1` and `baton worker --labels dc1`"
)


def _listed(v: Any) -> Any:
    """One item written alone means a list of one (``needs: build``, ``mention: U1``)."""
    return [v] if isinstance(v, str) else v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParamType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"
    SECRET = "secret"
    LIST = "list"


ITEM_TYPES = (ParamType.STRING, ParamType.INT, ParamType.FLOAT, ParamType.BOOL)
"""What a list param's ``items`` may be."""


class Param(_Model):
    """One param. A ``list`` param holds ``items`` (string by default, or int, float,
    bool); ``choices`` and ``pattern`` then apply to every item, and ``min``/``max`` bound
    how many items it holds."""

    type: ParamType = ParamType.STRING
    required: bool = False
    default: Any = None
    choices: list[Any] | None = None
    pattern: str | None = None
    min: float | None = None
    max: float | None = None
    items: ParamType | None = None
    help: str = ""

    @model_validator(mode="after")
    def _fits_its_type(self) -> Param:
        if self.type is ParamType.CHOICE and not self.choices:
            raise ValueError("a choice param needs a non-empty `choices` list")
        if self.items is not None and self.type is not ParamType.LIST:
            raise ValueError("`items` is for list params (type: list)")
        if self.items is not None and self.items not in ITEM_TYPES:
            kinds = ", ".join(t.value for t in ITEM_TYPES)
            raise ValueError(
                f"a list's `items` is one of {kinds} (for a fixed set of values, give `choices`)"
            )
        if self.type is ParamType.LIST:
            for key in ("min", "max"):
                bound = getattr(self, key)
                if bound is not None and (bound < 0 or not float(bound).is_integer()):
                    raise ValueError(
                        f"a list's `{key}` counts its items: give a whole number such as 1"
                    )
        return self

    @property
    def item_type(self) -> ParamType:
        """The type of a list param's items (string unless ``items`` says otherwise)."""
        return self.items or ParamType.STRING

    @property
    def kind(self) -> str:
        """The type as people read it: ``int``, ``list``, ``list of int``."""
        if self.type is ParamType.LIST and self.items not in (None, ParamType.STRING):
            return f"list of {self.item_type.value}"
        return self.type.value


class Backoff(StrEnum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


class Retry(_Model):
    """``attempts`` counts every attempt, the first included: ``attempts: 3`` retries twice."""

    attempts: int = Field(default=1, ge=1, le=100)
    backoff: Backoff = Backoff.FIXED
    delay: Duration = timedelta(seconds=1)
    max_delay: Duration = timedelta(minutes=5)
    jitter: bool = False

    def delay_before(self, attempt: int) -> timedelta:
        """Delay before attempt number ``attempt`` (2 for the first retry), without jitter."""
        base = self.delay.total_seconds()
        if self.backoff is Backoff.EXPONENTIAL:
            base *= 2 ** max(0, attempt - 2)
        return timedelta(seconds=min(base, self.max_delay.total_seconds()))


class Step(_Model):
    id: str = Field(pattern=STEP_ID)
    action: str
    name: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    needs: list[str] = Field(default_factory=list)
    when: str | None = None
    retry: Retry = Retry()
    timeout: durations.Timeout | None = None
    idempotent: bool = False
    continue_on_error: bool = False
    for_each: ForEach | None = None
    runs_on: str | None = None
    """A worker label: the step runs in a ``baton worker --labels`` process that has it
    (``engine.runs.remote``), not in the process driving the run."""

    _one_or_many = field_validator("needs", mode="before")(_listed)

    @field_validator("runs_on")
    @classmethod
    def _a_label(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(WORKER_LABEL, v):
            raise ValueError(LABEL_RULE)
        return v

    @field_validator("when", mode="before")
    @classmethod
    def _condition_as_text(cls, v: Any) -> Any:
        return str(v).lower() if isinstance(v, bool) else v

    @property
    def title(self) -> str:
        return self.name or self.id


class OnLimit(StrEnum):
    QUEUE = "queue"
    REJECT = "reject"


class Concurrency(_Model):
    """At most ``limit`` active runs share one rendered ``key`` (default: the playbook name)."""

    key: str | None = None
    limit: int = Field(default=1, ge=1)
    on_limit: OnLimit = OnLimit.QUEUE


class ScheduleTrigger(_Model):
    """Run on a cron, in a time zone (DST handled by APScheduler's CronTrigger)."""

    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron", "timezone")  # each on its own: a bad zone hides no bad cron
    @classmethod
    def _valid(cls, v: str, info: ValidationInfo) -> str:
        crontab.trigger(v, "UTC") if info.field_name == "cron" else crontab.zone(v)
        return v


class ResolvedAction(_Model):
    """What to run when the alert that started a run is resolved."""

    playbook: str
    params: dict[str, Any] = Field(default_factory=dict)


def _match_value(v: Any) -> Any:
    """A ``match`` value is one regular expression over the label's value; a number
    stands for its text. A list, a mapping, a YAML boolean or nothing is refused: its
    text (``['firing', 'resolved']``) would be a regex matching something else."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = str(v)
    if isinstance(v, list) and all(isinstance(x, str | int | float) for x in v):
        either = "|".join(str(x) for x in v)
        raise ValueError(
            f"a match value is one regular expression, not a list: write {either!r} "
            "to match any of them"
        )
    if isinstance(v, bool) or v is None:
        said = "nothing" if v is None else f"the YAML boolean {str(v).lower()}"
        raise ValueError(
            f"a match value is one regular expression, not {said}: quote the text you mean"
        )
    if not isinstance(v, str):
        raise ValueError(f"a match value is one regular expression, not a {type(v).__name__}")
    try:
        re.compile(v.removeprefix("!"))
    except re.error as exc:
        raise ValueError(f"{v!r} is not a regular expression ({exc})") from None
    return v


def _matcher(v: Any) -> Any:
    """One of ``matchers``: a string in Alertmanager's syntax, checked here, at its line."""
    if not isinstance(v, str):
        raise ValueError(
            f"a matcher is one string in Alertmanager's syntax, such as 'env=\"prod\"', "
            f"not a {type(v).__name__}"
        )
    matchers.parse(v)
    return v


class AlertTrigger(_Model):
    """Start this playbook when an alert matches: ``source`` (alertmanager, grafana,
    pagerduty, generic, chat; any when absent), label matchers (``match`` and/or
    ``matchers``, see ``engine.alerts.matchers``), ``params`` templates that see ``alert``;
    where its card goes (``channel``) and whom it mentions (``mention``); ``rate``
    (at most N runs per period, e.g. ``5/10m``; beyond it alerts are held); ``dedup``
    (how long after its run ended a repeat still attaches to it instead of starting
    another); on resolution, ``cancel_on_resolved`` (cancel the run if it still waits)
    and ``on_resolved`` (a playbook to run)."""

    source: str | None = None
    match: dict[str, Annotated[str, BeforeValidator(_match_value)]] = Field(default_factory=dict)
    matchers: list[Annotated[str, BeforeValidator(_matcher)]] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    channel: str | None = None
    mention: list[str] = Field(default_factory=list)
    rate: str | None = None
    dedup: Duration | None = None
    cancel_on_resolved: bool | None = None
    on_resolved: ResolvedAction | None = None

    @field_validator("match", mode="before")
    @classmethod
    def _text_labels(cls, v: Any) -> Any:
        return {str(k): x for k, x in v.items()} if isinstance(v, dict) else v

    _one_or_many = field_validator("mention", mode="before")(_listed)

    @field_validator("on_resolved", mode="before")
    @classmethod
    def _name_only(cls, v: Any) -> Any:
        return {"playbook": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _readable(self) -> AlertTrigger:
        self.all_matchers()
        if self.source is not None and self.source not in ALERT_SOURCES:
            raise ValueError(
                f"unknown alert source {self.source!r}: one of {', '.join(ALERT_SOURCES)}"
            )
        if self.rate is not None:
            parse_rate(self.rate)
        return self

    def all_matchers(self) -> list[Any]:
        return matchers.from_match(self.match) + [matchers.parse(m) for m in self.matchers]


ALERT_SOURCES = ("alertmanager", "grafana", "pagerduty", "generic", "chat")


def parse_rate(text: str) -> tuple[int, float]:
    """``5/10m`` -> (5, 600.0): at most 5 runs in any 10 minutes."""
    from engine.playbooks.durations import parse_duration

    count, _, period = text.partition("/")
    try:
        n = int(count)
        seconds = parse_duration(period or "1m").total_seconds()
    except (ValueError, TypeError):
        raise ValueError(f"rate {text!r}: write it as COUNT/PERIOD, e.g. 5/10m") from None
    if n < 1 or seconds <= 0:
        raise ValueError(f"rate {text!r}: the count and the period must be positive")
    return n, seconds


class Trigger(_Model):
    """One entry of ``triggers``: a ``schedule``, or an ``alert`` rule."""

    schedule: ScheduleTrigger | None = None
    alert: AlertTrigger | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.schedule is None) == (self.alert is None):
            raise ValueError("a trigger is either `schedule: {cron: ...}` or `alert: {...}`")
        return self


class Notify(_Model):
    """Who hears about this playbook's failures: a chat ``channel`` (instead of the
    on-call channel setting) and people or groups to ``mention`` (Slack user ids like
    U0123, user groups like ``@sre-oncall`` or S0123)."""

    channel: str | None = None
    mention: list[str] = Field(default_factory=list)

    _one_or_many = field_validator("mention", mode="before")(_listed)


class Phase(StrEnum):
    MAIN = "main"
    ON_FAILURE = "on_failure"
    FINALLY = "finally"


class Playbook(_Model):
    name: str = Field(pattern=PLAYBOOK_NAME)
    description: str = ""
    params: dict[str, Param] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    on_failure: list[Step] = Field(default_factory=list)
    finally_: list[Step] = Field(default_factory=list, alias="finally")
    timeout: durations.Timeout | None = None
    concurrency: Concurrency | None = None
    triggers: list[Trigger] = Field(default_factory=list)
    notify: Notify = Notify()

    def phase(self, phase: Phase) -> list[Step]:
        return {Phase.MAIN: self.steps, Phase.ON_FAILURE: self.on_failure}.get(phase, self.finally_)

    def all_steps(self) -> list[tuple[Phase, Step]]:
        return [(ph, s) for ph in Phase for s in self.phase(ph)]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able form kept with each run, so a resumed run uses the definition it began with."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)

    @property
    def digest(self) -> str:
        raw = json.dumps(self.snapshot(), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:12]


# --- loading ---------------------------------------------------------------------------

Lines = yamldoc.Lines


def line_of(lines: Lines, loc: tuple[Any, ...]) -> int | None:
    """Line of the deepest known prefix of ``loc`` (a pydantic error location or a path)."""
    loc = tuple("with" if part == "with_" else part for part in loc)
    loc = tuple("finally" if part == "finally_" else part for part in loc)
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def parse_yaml(text: str, file: str) -> tuple[Any, Lines]:
    """Parse YAML text into data plus a map from key paths to line numbers (see
    ``engine.playbooks.yamldoc``: aliases bounded, duplicate keys refused)."""
    return yamldoc.parse(text, file)


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        part = (
            {"with_": "with", "finally_": "finally"}.get(part, part)
            if isinstance(part, str)
            else part
        )
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def build(data: Any, lines: Lines, file: str) -> Playbook:
    """Validate parsed YAML into a Playbook, turning pydantic errors into file:line problems."""
    if not isinstance(data, dict):
        raise PlaybookInvalid(
            [Problem(file, 1, "a playbook file must be a mapping with name, steps, ...")]
        )
    try:
        return Playbook.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            where = _loc_text(loc)
            problems.append(Problem(file, line_of(lines, loc), f"{where}: {msg}" if where else msg))
        raise PlaybookInvalid(problems) from exc


def load_text(text: str, file: str = "<playbook>") -> tuple[Playbook, Lines]:
    data, lines = parse_yaml(text, file)
    return build(data, lines, file), lines


def load_file(path: Path) -> tuple[Playbook, Lines]:
    """Load a playbook file: a regular file of at most ``yamldoc.MAX_FILE_BYTES``."""
    return load_text(yamldoc.read_text(path), str(path))


def from_snapshot(snapshot: dict[str, Any]) -> Playbook:
    """The playbook a run was started with. Its triggers play no part in a run (and an
    older Baton stored them in a looser form), so they are left out."""
    return Playbook.model_validate({**snapshot, "triggers": []})


def playbook_files(root: Path) -> list[Path]:
    """The files of a folder, or ``root`` itself when it is not a folder (a FIFO or a
    device named on the command line is refused by the reader, not skipped)."""
    if not root.is_dir():
        return [root]
    return sorted([*root.glob("*.yaml"), *root.glob("*.yml")])


ParamKind = Literal["string", "int", "float", "bool", "choice", "secret", "list"]
