"""Settings: a wrong value is named by its environment variable, with what is allowed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import Settings, explain
from engine.durations import parse_duration


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BATON_PORT": "99999"}, "BATON_PORT='99999': Input should be less than or equal"),
        ({"BATON_LOG_LEVEL": "loud"}, "BATON_LOG_LEVEL='loud': unknown log level"),
        ({"BATON_TIMEZONE": "Mars/Base"}, "BATON_TIMEZONE='Mars/Base': unknown time zone"),
        ({"BATON_SCHEDULE_POLL": "0"}, "BATON_SCHEDULE_POLL='0': Input should be greater"),
    ],
    ids=["port", "log-level", "timezone", "poll"],
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
