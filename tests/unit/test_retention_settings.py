"""BATON_RETENTION and BATON_AUDIT_RETENTION: ages with a unit, named when wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from bot.settings import Settings, explain, parse_age


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BATON_RETENTION": "90"}, "BATON_RETENTION='90': age '90' needs a unit: e.g. 90d"),
        ({"BATON_RETENTION": "3 months"}, "BATON_RETENTION='3 months': bad age '3 months'"),
        ({"BATON_RETENTION": "0h"}, "BATON_RETENTION='0h': age '0h' must be more than nothing"),
        ({"BATON_RETENTION": "99999d"}, "BATON_RETENTION='99999d': duration '99999d' is too long"),
        ({"BATON_AUDIT_RETENTION": "12h"}, "BATON_AUDIT_RETENTION='12h': keep the audit at least"),
    ],
    ids=["no-unit", "words", "zero", "too-long", "audit-under-a-day"],
)
def test_a_bad_age_says_which_variable_and_why(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert any(line.startswith(needle) for line in explain(caught.value)), explain(caught.value)


def test_ages_read_as_durations_and_retention_is_off_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.retention_age, defaults.audit_age) == (None, timedelta(days=400))
    monkeypatch.setenv("BATON_RETENTION", "12w")
    monkeypatch.setenv("BATON_AUDIT_RETENTION", "730d")
    chosen = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (chosen.retention_age, chosen.audit_age) == (timedelta(weeks=12), timedelta(days=730))
    monkeypatch.setenv("BATON_RETENTION", "")
    assert Settings(_env_file=None).retention_age is None  # type: ignore[call-arg]


# parse_age's rules, one by one (`make mutate` holds them against changed copies of it).
# It is imported from bot.settings, where retention reads it, wherever it lives.


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90d", timedelta(days=90)),
        ("12w", timedelta(weeks=12)),
        (" 36h ", timedelta(hours=36)),
        ("1.5d", timedelta(hours=36)),
        ("1s", timedelta(seconds=1)),
        ("3660d", timedelta(days=3660)),
    ],
)
def test_an_age_is_a_duration_with_a_unit_more_than_nothing(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90", "age '90' needs a unit: e.g. 90d for days"),
        (" 90 ", "age ' 90 ' needs a unit: e.g. 90d for days"),
        ("1.5", "age '1.5' needs a unit: e.g. 1.5d for days"),
        ("1.5.5", "bad age '1.5.5': expected e.g. 90d, 12w or 36h"),
        ("3 months", "bad age '3 months': expected e.g. 90d, 12w or 36h"),
        ("", "bad age '': expected e.g. 90d, 12w or 36h"),
        ("0h", "age '0h' must be more than nothing: e.g. 90d"),
        ("3661d", "duration '3661d' is too long: at most 10 years (3660d)"),
    ],
    ids=[
        "bare",
        "bare-with-blanks",
        "bare-fraction",
        "two-points",
        "words",
        "empty",
        "zero",
        "long",
    ],
)
def test_a_bad_age_is_named_with_an_example(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_age(text)
    assert str(caught.value) == message
