"""Settings: a wrong value is named by its environment variable, with what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import Settings, env_name, explain
from engine.playbooks.durations import parse_duration


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BATON_PORT": "99999"}, "BATON_PORT='99999': Input should be less than or equal"),
        ({"BATON_LOG_LEVEL": "loud"}, "BATON_LOG_LEVEL='loud': unknown log level"),
        ({"BATON_TIMEZONE": "Mars/Base"}, "BATON_TIMEZONE='Mars/Base': unknown time zone"),
        ({"BATON_SCHEDULE_POLL": "0"}, "BATON_SCHEDULE_POLL='0': Input should be greater"),
        ({"BATON_LEASE": "0"}, "BATON_LEASE='0': Input should be greater"),
        (
            {"BATON_LEASE": "5", "BATON_LEASE_RENEW": "3"},
            "BATON_LEASE_RENEW='3': renewals every 3 s cannot keep a lease of 5 s",
        ),
    ],
    ids=["port", "log-level", "timezone", "poll", "lease", "renew-past-lease"],
)
def test_a_bad_setting_says_which_variable_and_why(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert any(line.startswith(needle) for line in explain(caught.value)), explain(caught.value)


@pytest.mark.parametrize("text", ["99999999999d", "9999999d", "1e300"])
def test_a_duration_beyond_ten_years_is_refused_plainly(text: str) -> None:
    with pytest.raises(ValueError, match="too long: at most 10 years"):
        parse_duration(float(text) if text[0].isdigit() and "e" in text else text)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"BATON_API_READ_TOKEN": "yes"},
            "BATON_API_READ_TOKEN='yes': give 'required' (API reads need the bearer token "
            "BATON_API_TOKEN) or 'open' (the default)",
        ),
        (
            {"BATON_STEP_ENV": "KUBECONFIG;AWS_*"},
            "BATON_STEP_ENV='KUBECONFIG;AWS_*': "
            "'KUBECONFIG;AWS_*' is not a variable name or a glob",
        ),
    ],
    ids=["read-token", "step-env"],
)
def test_security_settings_say_what_they_accept(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert any(line.startswith(needle) for line in explain(caught.value)), explain(caught.value)


def test_baton_credentials_are_named_and_their_values_known() -> None:
    assert Settings.credential_names() == {
        "BATON_API_TOKEN",
        "BATON_ALERT_TOKEN",
        "BATON_PAGERDUTY_SECRET",
        "BATON_SECRET_KEY",
        "BATON_DATABASE_URL",
        *("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"),
        *("BATON_SLACK_BOT_TOKEN", "BATON_SLACK_APP_TOKEN", "BATON_SLACK_SIGNING_SECRET"),
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://baton:db-pass@db/baton",
        api_token="api-token",
        pagerduty_secret="old-secret,new-secret",
        slack_signing_secret="signing",
    )
    assert sorted(settings.credentials()) == sorted(
        ["api-token", "old-secret,new-secret", "old-secret", "new-secret", "signing", "db-pass"]
    )
    assert Settings(_env_file=None, api_read_token=" Required ").api_read_token == "required"  # type: ignore[call-arg]


def test_leases_are_renewed_every_third_of_a_lease_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).renew_every == 5  # type: ignore[call-arg]
    monkeypatch.setenv("BATON_LEASE", "3")
    assert Settings(_env_file=None).renew_every == 1  # type: ignore[call-arg]
    monkeypatch.setenv("BATON_LEASE_RENEW", "1.5")
    assert Settings(_env_file=None).renew_every == 1.5  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BATON_API_TOKEN": "ab"}, "BATON_API_TOKEN=***: it is 2 characters long"),
        ({"SLACK_SIGNING_SECRET": "k1x"}, "SLACK_SIGNING_SECRET=***: it is 3 characters long"),
        ({"BATON_PAGERDUTY_SECRET": "long-one,k1"}, "BATON_PAGERDUTY_SECRET=***: it is 2"),
        (
            {"BATON_DATABASE_URL": "postgresql://baton:k1@db/baton"},
            "BATON_DATABASE_URL=***: its password is 2 characters long",
        ),
    ],
    ids=["api-token", "slack-alias", "one-of-several", "database-password"],
)
def test_a_credential_too_short_to_mask_is_refused_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    lines = explain(caught.value)
    assert any(line.startswith(needle) for line in lines), lines
    assert "a secret needs at least 4" in lines[0]
    shown = [f"={value!r}" for value in env.values()] + ["long-one", ":k1@"]
    assert not any(text in line for line in lines for text in shown), lines


@pytest.mark.parametrize(
    "name",
    sorted(Settings.credential_names() - {"BATON_DATABASE_URL"}),
)
def test_a_secret_setting_given_empty_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "  ")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    field = next(
        f
        for f, info in Settings.model_fields.items()
        if name in {f"BATON_{f.upper()}", *getattr(info.validation_alias, "choices", ())}
    )
    assert getattr(settings, field) is None
    assert settings.blank_secrets == (env_name(field),)


def test_a_secret_setting_given_empty_in_code_counts_as_unset_too() -> None:
    settings = Settings(_env_file=None, api_token="", alert_token="a-token")  # type: ignore[call-arg]
    assert settings.api_token is None and settings.alert_token is not None
    assert settings.blank_secrets == ("BATON_API_TOKEN",)
