"""The param rules test_params.py leaves loose, pinned one by one (engine.playbooks.params): which
numbers are a bool, that ``min`` and ``max`` are inclusive, how a value picks among choices
of mixed types, what ``missing()`` returns, each message word for word, and the limits of
a list param.

``make mutate`` holds these tests against changed copies of the module; each test names
the rule a surviving change would break (docs/mutation.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import ParamError
from engine.playbooks import params, paramsecrets
from engine.playbooks.model import Param, Playbook


def make(spec: dict[str, Any], triggers: list[dict[str, Any]] | None = None) -> Playbook:
    body: dict[str, Any] = {"name": "demo", "params": spec, "steps": [{"id": "a", "action": "log"}]}
    if triggers:
        body["triggers"] = triggers
    return Playbook.model_validate(body)


def errors(spec: dict[str, Any], raw: dict[str, Any]) -> list[str]:
    """Every message ``coerce`` gives for ``raw`` (it must refuse it)."""
    with pytest.raises(ParamError) as caught:
        params.coerce(make(spec), raw)
    return caught.value.errors


def one(kind: str, **spec: Any) -> Param:
    return Param.model_validate({"type": kind, **spec})


# --- bools -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, False), (1, True), (False, False), (True, True), ("0", False), ("1", True)],
)
def test_a_json_0_or_1_is_a_bool(value: Any, expected: bool) -> None:
    assert params.coerce_value("dry", one("bool"), value) is expected


@pytest.mark.parametrize("value", [2, -1, 0.0, 1.0, "2", "", [True]])
def test_any_other_number_or_value_is_not_a_bool(value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        params.coerce_value("dry", one("bool"), value)
    shown = repr(value) if isinstance(value, str) else json.dumps(value)  # JSON, not Python
    assert str(caught.value) == (
        f"dry: {shown} is not a bool (expected true or false, e.g. dry=true)"
    )


# --- min and max -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value"),
    [
        pytest.param({"type": "int", "min": 1, "max": 10}, 1, id="int-min"),
        pytest.param({"type": "int", "min": 1, "max": 10}, 10, id="int-max"),
        pytest.param({"type": "float", "min": 0.5, "max": 1}, 0.5, id="float-min"),
        pytest.param({"type": "float", "min": 0.5, "max": 1}, "1", id="float-max"),
        pytest.param({"type": "list", "min": 2, "max": 3}, "a,b", id="list-min"),
        pytest.param({"type": "list", "min": 2, "max": 3}, "a,b,c", id="list-max"),
    ],
)
def test_min_and_max_are_inclusive(spec: dict[str, Any], value: Any) -> None:
    assert params.coerce_value("p", Param.model_validate(spec), value) is not None


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ({"type": "int", "min": 1}, 0, "p: 0 is below the minimum 1"),
        ({"type": "int", "max": 10}, 11, "p: 11 is above the maximum 10"),
        ({"type": "float", "min": 0.5}, 0.25, "p: 0.25 is below the minimum 0.5"),
        ({"type": "list", "min": 1}, [], "p: 0 items given, fewer than the minimum 1 item"),
        ({"type": "list", "min": 2}, "a", "p: 1 item given, fewer than the minimum 2 items"),
        ({"type": "list", "max": 1}, "a,b", "p: 2 items given, more than the maximum 1 item"),
    ],
    ids=["int-min", "int-max", "float-min", "no-items", "one-item", "max-one-item"],
)
def test_just_outside_min_or_max_is_refused_in_its_unit(
    spec: dict[str, Any], value: Any, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        params.coerce_value("p", Param.model_validate(spec), value)
    assert str(caught.value) == message


# --- choices ---------------------------------------------------------------------------

MIXED = ["1", 1, 2.5, True]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1, 1, id="int"),
        pytest.param("1", "1", id="text"),
        pytest.param(2.5, 2.5, id="float"),
        pytest.param(True, True, id="bool"),
        pytest.param("2.5", 2.5, id="float-typed-as-text"),
        pytest.param("true", True, id="bool-typed-lower"),
        pytest.param("True", True, id="bool-typed-as-shown"),
    ],
)
def test_a_value_picks_the_choice_of_its_own_type(value: Any, expected: Any) -> None:
    picked = params.coerce_value("p", one("choice", choices=MIXED), value)
    assert picked == expected and type(picked) is type(expected)


@pytest.mark.parametrize(("typed", "expected"), [("true", True), ("false", False)])
def test_a_bool_choice_is_typed_as_true_or_false(typed: str, expected: bool) -> None:
    assert params.coerce_value("p", one("choice", choices=[True, False]), typed) is expected


@pytest.mark.parametrize(
    ("choices", "value", "message"),
    [
        pytest.param(["prod", "staging"], "qa", "p: 'qa' is not one of prod, staging", id="text"),
        pytest.param(
            ["prod", "staging"],
            "prdo",
            "p: 'prdo' is not one of prod, staging (did you mean prod?)",
            id="did-you-mean",
        ),
        pytest.param(["800", "900"], 80, "p: 80 is not one of 800, 900", id="no-hint-for-a-number"),
        pytest.param(["true", "false"], True, "p: true is not one of true, false", id="bool-text"),
        pytest.param([1, 2], True, "p: true is not one of 1, 2", id="bool-is-not-1"),
    ],
)
def test_a_value_outside_the_choices_is_named_with_them(
    choices: list[Any], value: Any, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        params.coerce_value("p", one("choice", choices=choices), value)
    assert str(caught.value) == message


# --- missing() and the missing-param message -------------------------------------------

NEEDS: dict[str, Any] = {
    "host": {"required": True},
    "env": {"type": "choice", "choices": ["prod", "staging"], "required": True},
    "region": {"required": True, "default": "eu"},
    "tag": {},
    "hosts": {"type": "list", "required": True},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({}, ["host", "env", "hosts"], id="nothing-given"),
        pytest.param({"host": "", "env": None, "hosts": []}, ["host", "env", "hosts"], id="blank"),
        pytest.param({"host": "h", "hosts": "a"}, ["env"], id="some"),
        pytest.param({"host": "h", "env": "prod", "hosts": ["a"], "tag": ""}, [], id="all"),
    ],
)
def test_missing_lists_required_params_without_value_or_default_in_order(
    raw: dict[str, Any], expected: list[str]
) -> None:
    assert params.missing(make(NEEDS), raw) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"required": True, "help": "where"},
            "missing required param p (string: where), e.g. p=...",
            id="string",
        ),
        pytest.param(
            {"type": "choice", "choices": ["prod", "staging"], "required": True},
            "missing required param p (choice; one of prod, staging), e.g. p=...",
            id="choice",
        ),
        pytest.param(
            {"type": "list", "choices": ["a", "b", "c"], "required": True},
            "missing required param p (list; one of a, b, c), e.g. p=a,b",
            id="list-of-choices",
        ),
        pytest.param(
            {"type": "list", "items": "int", "required": True},
            "missing required param p (list of int), e.g. p=1,2,3",
            id="list-of-int",
        ),
    ],
)
def test_a_missing_param_is_named_with_what_it_takes(spec: dict[str, Any], message: str) -> None:
    assert errors({"p": spec}, {}) == [message]


# --- messages, word for word -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        pytest.param(
            {"type": "int"},
            "x",
            "p: 'x' is not an int (expected a whole number, e.g. p=3)",
            id="given-is-not-the-default",
        ),
        pytest.param(
            {}, True, "p: true is not a string (expected text, e.g. p=value)", id="not-text"
        ),
        pytest.param(
            {"type": "list"},
            [True],
            "p: item 1: true is not a string (expected text, e.g. p=value)",
            id="item-not-text",
        ),
        pytest.param(
            {"type": "list", "items": "int"},
            "1,x",
            "p: item 2: 'x' is not an int (expected a whole number, e.g. p=3)",
            id="item-int",
        ),
        pytest.param(
            {"type": "list", "items": "float"},
            "x",
            "p: item 1: 'x' is not a number (expected a number, e.g. p=0.5)",
            id="item-float",
        ),
        pytest.param(
            {"type": "list", "items": "bool"},
            "x",
            "p: item 1: 'x' is not a bool (expected true or false, e.g. p=true)",
            id="item-bool",
        ),
        pytest.param(
            {"pattern": "["},
            "x",
            "p: the playbook's pattern '[' is not a valid regex: "
            "unterminated character set at position 0",
            id="bad-regex",
        ),
        pytest.param(
            {"type": "list"},
            '["a", "b"',
            "p: '[\"a\", \"b\"' is not a JSON list (Expecting ',' delimiter at character 10); "
            'write p=a,b,c, or p=\'["a,b", "c"]\' for items holding commas',
            id="bad-json",
        ),
        pytest.param(
            {"type": "list"},
            "[" * 100_000,
            "p: the JSON list is nested too deep (a list holds plain values)",
            id="deep-json",
        ),
        pytest.param(
            {"type": "list"},
            "[" + "9" * 5000 + "]",
            "p: the JSON list holds a value too long to read",
            id="huge-json-number",
        ),
        pytest.param(
            {},
            "a\x00b",
            "p: it holds a NUL character (\\u0000); send valid text",
            id="unstorable-text",
        ),
    ],
)
def test_each_message_reads_whole(spec: dict[str, Any], value: Any, message: str) -> None:
    assert errors({"p": spec}, {"p": value}) == [message]


def test_an_unstorable_value_does_not_stop_the_next_params_being_checked() -> None:
    assert errors({"a": {}, "b": {"type": "int"}}, {"a": "\x00", "b": "x"}) == [
        "a: it holds a NUL character (\\u0000); send valid text",
        "b: 'x' is not an int (expected a whole number, e.g. b=3)",
    ]


def test_parse_assignments_names_no_playbook_unless_given_one() -> None:
    with pytest.raises(ParamError) as caught:
        params.parse_assignments(["prod"])
    assert caught.value.playbook == ""


# --- list limits -----------------------------------------------------------------------


def test_ten_bad_items_are_named_then_the_rest_is_dots() -> None:
    typed = ",".join(f"x{i}" for i in range(1, 12))
    named = [
        f"item {i}: 'x{i}' is not an int (expected a whole number, e.g. p=3)" for i in range(1, 11)
    ]
    assert errors({"p": {"type": "list", "items": "int"}}, {"p": typed}) == [
        "p: " + "; ".join([*named, "..."])
    ]


@pytest.mark.parametrize("value", [["h"] * 1000, ",".join(["h"] * 1000)], ids=["list", "text"])
def test_a_list_holds_a_thousand_items(value: Any) -> None:
    assert len(params.coerce_value("p", one("list"), value)) == 1000


@pytest.mark.parametrize(
    "value",
    [["h"] * 1001, ",".join(["h"] * 1001), ",".join(["h"] * 1500) + ",,"],
    ids=["list", "text", "text-with-empty-items-past-the-thousandth"],
)
def test_past_a_thousand_items_the_count_is_the_problem(value: Any) -> None:
    assert errors({"p": {"type": "list"}}, {"p": value}) == [
        "p: more than 1,000 items: a list param holds at most that many"
    ]


@pytest.mark.parametrize(
    ("spec", "typed"),
    [
        ({"type": "list"}, "a,b,c"),
        ({"type": "list", "items": "int"}, "1,2,3"),
        ({"type": "list", "items": "float"}, "0.5,1.5"),
        ({"type": "list", "items": "bool"}, "true,false"),
        ({"type": "list", "choices": ["x", "y", "z"]}, "x,y"),
        ({"type": "list", "items": "int", "choices": [1, 2, 3]}, "1,2"),
    ],
    ids=["text", "int", "float", "bool", "two-of-the-choices", "two-int-choices"],
)
def test_a_list_example_is_typed_as_its_items(spec: dict[str, Any], typed: str) -> None:
    assert params.example(Param.model_validate(spec)) == typed


# --- what is kept and shown ------------------------------------------------------------

SECRETS: dict[str, Any] = {"token": {"type": "secret"}, "host": {}}


def test_secret_values_are_the_given_secrets_only() -> None:
    pb = make(SECRETS)
    assert paramsecrets.secret_values(pb, {"token": "abc123", "host": "h"}) == ["abc123"]
    assert paramsecrets.secret_values(pb, {"token": "", "host": "h"}) == []
    assert paramsecrets.secret_values(pb, {"host": "h"}) == []


def test_typed_masked_hides_secrets_and_undeclared_names() -> None:
    typed = {"token": "abc123", "host": "h", "tokn": "abc123"}
    assert paramsecrets.typed_masked(make(SECRETS), typed) == {
        "token": "***",
        "host": "h",
        "tokn": "***",
    }


def test_the_stored_definition_masks_a_secret_default_without_triggers() -> None:
    pb = make({"token": {"type": "secret", "default": "dflt-secret"}})
    assert paramsecrets.stored_definition(pb)["params"] == {
        "token": {"type": "secret", "default": "***"}
    }


def test_an_empty_secret_default_is_kept_empty() -> None:
    pb = make(
        {"token": {"type": "secret", "default": ""}},
        triggers=[{"schedule": {"cron": "0 3 * * *", "params": {"token": ""}}}],
    )
    stored = paramsecrets.stored_definition(pb)
    assert stored["params"]["token"]["default"] == ""
    assert stored["triggers"][0]["schedule"]["params"] == {"token": ""}


def test_text_keeps_non_ascii_items_as_typed() -> None:
    assert params.text(["café,x", "ü"]) == '["café,x", "ü"]'


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ({"type": "int", "min": 1}, "p (int; optional; 1..)"),
        ({"type": "int", "max": 10}, "p (int; optional; ..10)"),
        ({"type": "list", "max": 3}, "p (list; optional; ..3 items)"),
    ],
    ids=["min-only", "max-only", "list-max-only"],
)
def test_describe_shows_a_one_sided_bound(spec: dict[str, Any], line: str) -> None:
    assert params.describe(make({"p": spec})) == [line]


def test_a_long_value_is_cut_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        params.coerce_value("n", one("int"), ["x" * 1000])
    assert str(caught.value).startswith('n: ["xxx') and '..." is not' not in str(caught.value)
    assert "... is not an int (expected a whole number, e.g. n=3)" in str(caught.value)
    assert len(str(caught.value)) < 160
