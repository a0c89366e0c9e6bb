"""Settings, from the environment (and a ``.env`` file when present).

Baton's own settings start with ``BATON_``; Slack's keep the names Slack's docs use.
"""

from __future__ import annotations

import typing
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from bot.settings_dashboard import DashboardSettings
from engine.playbooks.durations import parse_age


class Settings(DashboardSettings):
    model_config = SettingsConfigDict(
        env_prefix="BATON_", env_file=".env", extra="ignore", populate_by_name=True
    )
    _blank: tuple[str, ...] = PrivateAttr(default=())

    database_url: str = Field(
        default="sqlite:///./baton.db",
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql://user@host/db.",
    )
    auto_upgrade: bool = Field(
        default=True,
        description="`baton serve` upgrades an older database schema at start; false: it "
        "refuses to start and names `baton db upgrade`.",
    )
    retention: str | None = Field(
        default=None,
        description="Age after which `baton serve` deletes finished runs with everything "
        "that hangs off them, settled alerts and chat bookkeeping, once a day across "
        "replicas (e.g. 90d, as `baton db prune --older-than`); unset: keep everything.",
    )
    audit_retention: str = Field(
        default="400d",
        description="Age after which audit rows are deleted by a prune (daily with "
        "BATON_RETENTION, or `baton db prune`): who ran and approved what outlives the runs.",
    )
    playbooks: Path = Field(default=Path("./playbooks"), description="Playbook folder.")
    template_budget: int = Field(
        # engine.playbooks.sandbox.DEFAULT_BUDGET (not imported: --help stays light)
        default=50_000,
        ge=100,
        description="Units of work one template render may spend (a step's with:, when:, "
        "a concurrency key, alert params: a unit per loop iteration, call, lookup, filter "
        "item); beyond it the render fails with the reason. Renders share the event loop; "
        "a real template spends tens to hundreds.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of the HTTP server.")
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token for HTTP API writes; unset: writes refused."
    )
    alert_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the alert webhooks (POST /alerts/...) require; unset: "
        "only PagerDuty's signature (BATON_PAGERDUTY_SECRET) is accepted.",
    )
    pagerduty_secret: SecretStr | None = Field(
        default=None,
        description="PagerDuty V3 webhook signing secret(s), comma-separated during a "
        "rotation: X-PagerDuty-Signature is checked with it.",
    )
    alert_max_body: int = Field(
        default=1024 * 1024, ge=1024, description="Largest alert webhook body in bytes (413)."
    )
    alerts_max_per_request: int = Field(
        default=1000,
        ge=1,
        description="Most alerts one webhook body may carry; more: 413 naming the cap, "
        "nothing stored (Alertmanager's max_alerts keeps a receiver under it).",
    )
    read_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a request's body may take to arrive (webhooks, Slack, API "
        "writes); slower: 408 and the connection closed.",
    )
    alert_generic_map: str | None = Field(
        default=None,
        description="JSON field mapping for POST /alerts/generic (where status, labels, "
        "fingerprint... are in the sender's JSON); unset: the defaults.",
    )
    alert_dedup_window: float = Field(
        default=900.0,
        ge=0,
        description="Seconds after an alert's run ended during which a repeat still "
        "attaches to it (a trigger's `dedup` wins).",
    )
    alert_rate: str = Field(
        default="30/1m",
        description="Global cap on runs started by alerts (COUNT/PERIOD); beyond it "
        "alerts are stored as held and summed up in one message.",
    )
    alert_cancel_on_resolved: bool = Field(
        default=False,
        description="Cancel an alert's run still queued or waiting when the alert "
        "resolves (a trigger's `cancel_on_resolved` wins).",
    )
    config: Path | None = Field(default=None, description="Access rules and groups (YAML).")
    api_read_token: str = Field(
        default="open",
        description="`required`: GET /api/* (runs, alerts) and the / page need the bearer "
        "token BATON_API_TOKEN (401 without it); `open`: anyone who reaches the address "
        "reads them. /healthz and /metrics stay open.",
    )
    step_env: str = Field(
        default="",
        description="Variables of Baton's environment that shell steps get besides PATH, "
        "HOME, LANG, LANGUAGE, TZ and LC_*: names and globs, comma-separated "
        "(KUBECONFIG,AWS_*). Baton's credentials never pass; a glob never matches "
        "BATON_*, SLACK_* or SECRET_*.",
    )
    ssh_known_hosts: Path = Field(
        default=Path("~/.ssh/known_hosts"),
        description="known_hosts file ssh steps check host keys against, strictly (see Fleets).",
    )
    ssh_key: Path | None = Field(
        default=None, description="Private key file ssh steps log in with (see Fleets)."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Fernet key encrypting secret params at rest."
    )
    key_file: Path = Field(
        default=Path("./.baton/secret.key"),
        description="Where the Fernet key is kept (created 0600) when BATON_SECRET_KEY is unset.",
    )
    secrets_dir: Path | None = Field(
        default=None, description="Folder of secret files (one per secret) for `secrets.NAME`."
    )
    lease: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="Seconds a node's lease on a run lasts: a run whose driver died is "
        "adopted by a `baton serve` node this long after the last renewal.",
    )
    lease_renew: float | None = Field(
        default=None, gt=0, le=1200, description="Seconds between two renewals of a node's "
        "leases; unset: a third of BATON_LEASE.",
    )  # fmt: skip
    drain_timeout: float = Field(
        default=30.0, ge=0, description="Seconds a graceful stop lets running steps finish."
    )
    worker_heartbeat: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between two heartbeats of a `baton "
        "worker`; one silent for five is dead: its step is re-delivered or interrupted.",
    )  # fmt: skip
    log_level: str = Field(
        default="INFO",
        description="Level of Baton's own log lines: DEBUG, INFO, WARNING, ERROR. Libraries "
        "log only warnings and errors, unless DEBUG.",
    )
    log_format: str = Field(
        default="text",
        description="`text`: one readable line per event; `json`: one JSON object a line "
        "(time, level, logger, message, run_id and playbook when known) for log shippers.",
    )
    console_log: Path = Field(
        default=Path("./baton.log"),
        description="Where log lines go while a console is open in a terminal (they would "
        "break the line being typed); the console says so when it opens.",
    )
    timezone: str = Field(
        default="UTC",
        description="Time zone of `schedule P at 18:00` and of cron schedules "
        "made at run time without one.",
    )
    misfire_grace: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a cron fire missed while Baton was down may be late and still "
        "run (once) at start; older ones are recorded as missed.",
    )
    schedule_poll: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between looks at the schedules table for "
        "schedules other processes (`baton schedule`) added or removed.",
    )

    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "BATON_SLACK_BOT_TOKEN")
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "BATON_SLACK_APP_TOKEN")
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "BATON_SLACK_SIGNING_SECRET"),
    )
    slack_api_url: str | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_API_URL", "BATON_SLACK_API_URL")
    )
    slack_runs_channel: str | None = Field(
        default=None,
        description="Slack channel for the cards of runs not asked for in Slack "
        "(schedules, the API, the console); unset: those runs post no card.",
    )
    slack_oncall_channel: str | None = Field(
        default=None,
        description="Slack channel that gets every failure notice too (a playbook's "
        "`notify.channel` overrides it).",
    )
    slack_approvals_channel: str | None = Field(
        default=None,
        description="Slack channel that gets a copy of every approval prompt "
        "(edited in place like the one in the run's thread).",
    )
    slack_card_interval: float = Field(
        default=1.0,
        ge=0,
        description="Seconds between two edits of one run card (Slack allows about one a second).",
    )

    @field_validator("retention", "audit_retention")
    @classmethod
    def _age(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or (not value.strip() and info.field_name == "retention"):
            return None
        age = parse_age(value)
        if info.field_name == "audit_retention" and age < timedelta(days=1):
            raise ValueError("keep the audit at least a day (1d): the daily prune is noted there")
        return value.strip()

    @property
    def retention_age(self) -> timedelta | None:
        return parse_age(self.retention) if self.retention is not None else None

    @property
    def audit_age(self) -> timedelta:
        return parse_age(self.audit_retention)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"unknown log level {value!r}: DEBUG, INFO, WARNING or ERROR")
        return level

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        form = value.strip().lower()
        if form not in ("text", "json"):
            raise ValueError("give 'text' (the default) or 'json' (one JSON object a line)")
        return form

    @field_validator("api_read_token")
    @classmethod
    def _read_mode(cls, value: str) -> str:
        mode = value.strip().lower()
        if mode not in ("open", "required"):
            raise ValueError(
                "give 'required' (API reads need the bearer token BATON_API_TOKEN) "
                "or 'open' (the default)"
            )
        return mode

    @field_validator("*")
    @classmethod
    def _long_enough(cls, value: typing.Any, info: ValidationInfo) -> typing.Any:
        """Baton's credentials are masked like secrets, so they follow the secrets' rule
        (``engine.secrets.MIN_SECRET_LEN``); an empty one is left to its own setting."""
        from engine import secrets

        if isinstance(value, SecretStr):
            texts = [value.get_secret_value()]
        elif info.field_name == "database_url" and isinstance(value, str):
            texts = [_password(value) or ""]
        else:
            return value
        texts += [part.strip() for text in texts if "," in text for part in text.split(",")]
        for text in texts:
            short = secrets.too_short(text)
            if short is not None:
                what = "its password" if info.field_name == "database_url" else "it"
                raise ValueError(f"{what} {short}; this one is a credential Baton masks")
        return value

    @field_validator("step_env")
    @classmethod
    def _step_env(cls, value: str) -> str:
        from engine.actions import stepenv

        stepenv.parse_allowlist(value)  # ValueError names the entry
        return value

    def step_env_allowlist(self) -> tuple[str, ...]:
        from engine.actions import stepenv

        return stepenv.parse_allowlist(self.step_env)

    @model_validator(mode="wrap")
    @classmethod
    def _blank_is_unset(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """A secret setting given as "" (``BATON_API_TOKEN=``, a template whose variable
        was missing) counts as unset, never as a token nobody can send or an empty key
        anyone can sign with; ``blank_secrets`` names them for a warning at start."""
        blank: list[str] = []
        if isinstance(data, dict):
            data = dict(data)
            for name, field in cls.model_fields.items():
                if SecretStr not in typing.get_args(field.annotation):
                    continue
                alias = field.validation_alias
                keys = [name, *(alias.choices if isinstance(alias, AliasChoices) else ())]
                for key in keys:
                    value = data.get(key)
                    if isinstance(value, str | SecretStr) and not _text(value).strip():
                        del data[key]
                        blank.append(env_name(name))
        settings = handler(data)
        settings._blank = tuple(dict.fromkeys(blank))
        return settings

    @property
    def blank_secrets(self) -> tuple[str, ...]:
        """Secret settings that were given empty, so count as unset (their env names)."""
        return self._blank

    @classmethod
    def credential_names(cls) -> frozenset[str]:
        """Environment variables holding Baton's own credentials: every secret setting
        (each of its names) and the database URL (it may carry a password)."""
        names = {"BATON_DATABASE_URL"}
        for name, field in cls.model_fields.items():
            if SecretStr in typing.get_args(field.annotation):
                alias = field.validation_alias
                if isinstance(alias, AliasChoices):
                    names.update(str(choice) for choice in alias.choices)
                else:
                    names.add(env_name(name))
        return frozenset(names)

    def credentials(self) -> list[str]:
        """The values of Baton's own credentials (secret settings, the database
        password, each of several PagerDuty secrets), to be masked wherever Baton writes."""
        values: list[str] = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if SecretStr in typing.get_args(field.annotation) and value is not None:
                text = value.get_secret_value()
                values += [text, *(part.strip() for part in text.split(",") if "," in text)]
        password = _password(self.database_url)
        if password:
            values.append(password)
        return [v for v in values if v]

    @property
    def renew_every(self) -> float:
        """Seconds between two lease renewals (a third of the lease by default)."""
        return self.lease_renew if self.lease_renew is not None else self.lease / 3

    @property
    def idle_limit(self) -> float:
        """Seconds a node's PostgreSQL session may sit idle inside a transaction before
        the server ends it: half a lease, at least 2 s. A node frozen mid-commit loses
        its locks with its session, and a node held up by those locks waits less than a
        lease, so it keeps its own."""
        return max(self.lease / 2, 2.0)

    @field_validator("lease_renew")
    @classmethod
    def _renew_within_lease(cls, value: float | None, info: ValidationInfo) -> float | None:
        lease = info.data.get("lease")
        if value is not None and lease is not None and value > lease / 2:
            raise ValueError(
                f"renewals every {value:g} s cannot keep a lease of {lease:g} s "
                "(BATON_LEASE) safely alive: renew at least twice per lease (the default "
                "is a third of it)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from engine.schedules import cron

        cron.zone(value)  # ValueError names the zone
        return value


def _password(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # a URL that does not parse fails later, with its own message
        return None
    return str(password) if password else None


def _text(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def explain(exc: Exception) -> list[str]:
    """A settings error as lines a person can act on: ``BATON_PORT='99999': ...``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [str(exc)]
    lines = []
    for err in errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        shown = "***" if _is_credential(name) else repr(err.get("input"))
        lines.append(f"{env_name(name)}={shown}: {message}")
    return lines


def _is_credential(setting: str) -> bool:
    """A secret setting or the database URL (by field name or by the alias an error
    names, such as SLACK_SIGNING_SECRET): their values are never shown back."""
    return env_name(setting) in Settings.credential_names()


def env_name(setting: str) -> str:
    """The environment variable of a setting (Slack's keep Slack's names)."""
    field = Settings.model_fields.get(setting)
    if field is None and setting.isupper():  # an error on an aliased setting names the alias
        return setting
    alias = field.validation_alias if field is not None else None
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"BATON_{setting.upper()}"


def describe_settings() -> list[tuple[str, str, str]]:
    """(env name, default, description) for every setting: the README table and --help."""
    out = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        out.append((env_name(name), default, field.description or ""))
    return out
