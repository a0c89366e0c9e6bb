"""The duration rules every playbook key reads through (engine.playbooks.durations),
pinned one by one: which forms are a duration, which are a bad one and which are too
long, where the ten-year limit sits, and how ``format_duration`` writes each unit at its boundaries.

``make mutate`` holds these tests against changed copies of the module; each test names
the rule a surviving change would break (docs/mutation.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from engine.playbooks.durations import (
    LONGEST,
    Duration,
    Timeout,
    format_duration,
    format_measure,
    parse_duration,
)

FAST = settings(max_examples=60, deadline=None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("1h30m", 5400, id="units-run-together"),
        pytest.param("1h 30m", 5400, id="units-apart"),
        pytest.param("1 h 30 m", 5400, id="spaces-within-parts"),
        pytest.param("  1h30m  ", 5400, id="blanks-around"),
        pytest.param("1w2d3h4m5s", 788645, id="every-unit-once"),
        pytest.param("1m 500ms", 60.5, id="ms-after-m"),
        pytest.param("2 hours 1 second", 7201, id="words"),
        pytest.param("1H30M", 5400, id="any-case"),
        pytest.param("30m 30m", 3600, id="a-repeated-unit-adds-up"),
        pytest.param("0.25h", 900, id="fraction"),
        pytest.param("0s", 0, id="zero-with-unit"),
    ],
)
def test_a_compound_duration_adds_its_parts(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30", 30, id="whole"),
        pytest.param(" 30 ", 30, id="blanks"),
        pytest.param("2.5", 2.5, id="fraction"),
        pytest.param("0", 0, id="zero"),
    ],
)
def test_a_bare_number_in_text_is_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [
        *[(u, 0.001) for u in ("ms", "msec", "msecs", "millisecond", "milliseconds")],
        *[(u, 1) for u in ("s", "sec", "secs", "second", "seconds")],
        *[(u, 60) for u in ("m", "min", "mins", "minute", "minutes")],
        *[(u, 3600) for u in ("h", "hr", "hrs", "hour", "hours")],
        *[(u, 86400) for u in ("d", "day", "days")],
        *[(u, 604800) for u in ("w", "week", "weeks")],
    ],
)
def test_every_unit_name_is_worth_its_seconds(unit: str, seconds: float) -> None:
    assert parse_duration(f"2{unit}") == timedelta(seconds=2 * seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("5x", id="unknown-unit"),
        pytest.param("5 fortnights", id="unknown-word"),
        pytest.param("1h30", id="number-without-unit-at-the-end"),
        pytest.param("30 5", id="two-bare-numbers"),
        pytest.param("h", id="unit-without-number"),
        pytest.param("1h x", id="trailing-word"),
        pytest.param("x 1h", id="leading-word"),
        pytest.param("1.5.5s", id="two-points"),
        pytest.param(".5s", id="no-digit-before-the-point"),
        pytest.param("-5", id="negative-number-as-text"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param(None, id="none"),
        pytest.param(True, id="bool"),
        pytest.param(float("nan"), id="nan"),
        pytest.param([5], id="list"),
    ],
)
def test_what_is_not_a_duration_is_a_bad_duration_naming_the_forms(text: Any) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert str(caught.value) == (
        f"bad duration {text!r}: expected a number of seconds or e.g. "
        "500ms, 30s, 5m, 1h30m, 10 minutes, 2d"
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="int"),
        pytest.param(-0.5, id="float"),
        pytest.param(timedelta(seconds=-1), id="timedelta"),
        pytest.param(timedelta(microseconds=-1), id="timedelta-just-below-zero"),
    ],
)
def test_a_negative_duration_says_it_must_not_be_negative(value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"bad duration {value!r}: must not be negative"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="int"),
        pytest.param(0.0, id="float"),
        pytest.param(timedelta(0), id="timedelta"),
        pytest.param(timedelta(microseconds=1), id="timedelta-just-above-zero"),
        pytest.param(timedelta(hours=2, seconds=1), id="timedelta-as-it-is"),
    ],
)
def test_zero_and_a_timedelta_are_durations_as_they_are(value: Any) -> None:
    expected = value if isinstance(value, timedelta) else timedelta(seconds=value)
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("3660d", id="text"),
        pytest.param(3660 * 86400, id="seconds"),
        pytest.param(LONGEST, id="timedelta"),
        pytest.param("522w 6d", id="compound"),
    ],
)
def test_ten_years_itself_is_allowed(value: Any) -> None:
    assert parse_duration(value) == timedelta(days=3660)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("3660d 1s", id="a-second-past"),
        pytest.param(3660 * 86400 + 0.5, id="half-a-second-past"),
        pytest.param(LONGEST + timedelta(microseconds=1), id="timedelta"),
        pytest.param("99999999999w", id="beyond-what-a-timedelta-holds"),
        pytest.param(float("inf"), id="infinite"),
        pytest.param(1e300, id="huge-float"),
    ],
)
def test_past_ten_years_is_too_long(value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == f"duration {value!r} is too long: at most 10 years (3660d)"


def test_a_timeout_of_zero_is_refused_and_any_more_is_kept() -> None:
    timeouts = TypeAdapter(Timeout)
    with pytest.raises(ValidationError, match="a timeout of 0 would end at once: give more"):
        timeouts.validate_python("0s")
    assert timeouts.validate_python("1ms") == timedelta(milliseconds=1)


def test_a_duration_is_kept_as_its_seconds() -> None:
    durations = TypeAdapter(Duration)
    assert durations.validate_python("1m 30s") == timedelta(seconds=90)
    assert durations.dump_python(timedelta(seconds=90)) == 90.0
    assert durations.dump_json(timedelta(milliseconds=1500)) == b"1.5"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        pytest.param(0, "0.0s", id="zero"),
        pytest.param(0.44, "0.4s", id="tenths-below-ten"),
        pytest.param(9.9, "9.9s", id="last-tenths"),
        pytest.param(10, "10s", id="ten-is-whole-seconds"),
        pytest.param(10.4, "10s", id="rounded-down"),
        pytest.param(10.6, "11s", id="rounded-up"),
        pytest.param(59, "59s", id="last-seconds"),
        pytest.param(59.6, "1m00s", id="rounds-into-a-minute"),
        pytest.param(60, "1m00s", id="one-minute"),
        pytest.param(61, "1m01s", id="seconds-two-digits"),
        pytest.param(120, "2m00s", id="two-minutes"),
        pytest.param(185, "3m05s", id="docstring-example"),
        pytest.param(3599, "59m59s", id="last-minutes"),
        pytest.param(3600, "1h00m", id="one-hour"),
        pytest.param(3659, "1h00m", id="seconds-dropped-past-an-hour"),
        pytest.param(7260, "2h01m", id="minutes-two-digits"),
        pytest.param(7200, "2h00m", id="two-hours"),
        pytest.param(90000, "25h00m", id="hours-past-a-day"),
    ],
)
def test_format_duration_at_its_unit_boundaries(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


@FAST
@given(st.floats(min_value=0, max_value=10 * 86400, allow_nan=False))
def test_what_format_duration_writes_reads_back_within_its_precision(seconds: float) -> None:
    shown = format_duration(seconds)
    back = parse_duration(shown).total_seconds()
    precision = 0.05 if seconds < 10 else 0.5 if seconds < 3599.5 else 60
    assert abs(back - seconds) <= precision + 1e-9, shown
    if seconds >= 10:  # below, 9.96 shows as 10.0s, which reads back as 10s
        assert format_duration(back) == shown


# At most 5 parts of at most 100 weeks: always within ten years
PARTS = st.lists(
    st.tuples(st.integers(min_value=0, max_value=100), st.sampled_from(["w", "d", "h", "m", "s"])),
    min_size=1,
    max_size=5,
)
PER_UNIT = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


@FAST
@given(PARTS, st.sampled_from(["", " ", "  "]))
def test_any_run_of_parts_is_the_sum_of_its_parts(parts: list[tuple[int, str]], gap: str) -> None:
    text = gap.join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * PER_UNIT[unit] for n, unit in parts)
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0ms"),
        (0.0374, "37ms"),
        (0.9994, "999ms"),
        (0.9996, "1.0s"),
        (1.0, "1.0s"),
        (75, "1m15s"),
    ],
)
def test_a_measure_under_a_second_is_in_milliseconds(seconds: float, shown: str) -> None:
    assert format_measure(seconds) == shown
