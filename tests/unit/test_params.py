from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ParamError
from engine.playbooks import params, paramsecrets
from engine.playbooks.model import Playbook


def make(spec: dict[str, Any]) -> Playbook:
    return Playbook.model_validate(
        {"name": "demo", "params": spec, "steps": [{"id": "a", "action": "log"}]}
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["env=prod"], {"env": "prod"}, id="one"),
        pytest.param(
            ["env=prod", "msg=hello world"], {"env": "prod", "msg": "hello world"}, id="spaces"
        ),
        pytest.param(["q=a=b"], {"q": "a=b"}, id="equals-in-value"),
        pytest.param(["tag="], {"tag": ""}, id="empty-value"),
        pytest.param(["n=1", "n=2"], {"n": "2"}, id="last-wins"),
        pytest.param([], {}, id="none"),
    ],
)
def test_parse_assignments(args: list[str], expected: dict[str, str]) -> None:
    assert params.parse_assignments(args) == expected


def test_parse_assignments_reports_every_bad_word() -> None:
    with pytest.raises(ParamError) as excinfo:
        params.parse_assignments(["prod", "env=prod", "=x"], "deploy")
    err = excinfo.value
    assert err.playbook == "deploy"
    assert len(err.errors) == 2
    assert "'prod' is not a parameter (expected key=value, e.g. env=prod)" in err.errors[0]
    assert "'=x' has no name before '='" in err.errors[1]
    assert "key=value" in str(err)


SCHEMA: dict[str, Any] = {
    "host": {"required": True, "help": "the host to restart"},
    "replicas": {"type": "int", "default": 2, "min": 1, "max": 10},
    "ratio": {"type": "float", "min": 0, "max": 1},
    "dry": {"type": "bool", "default": False},
    "env": {"type": "choice", "choices": ["prod", "staging"], "default": "staging"},
    "port": {"type": "choice", "choices": [80, 443]},
    "token": {"type": "secret", "pattern": "[a-z0-9]{6,}"},
    "name": {"pattern": "[a-z-]+"},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"host": "web-1"}, {"host": "web-1"}, id="string"),
        pytest.param({"host": 42}, {"host": "42"}, id="number-as-string"),
        pytest.param({"host": "h", "replicas": "3"}, {"replicas": 3}, id="int-from-str"),
        pytest.param({"host": "h", "replicas": " 4 "}, {"replicas": 4}, id="int-stripped"),
        pytest.param({"host": "h", "replicas": 5}, {"replicas": 5}, id="int-typed"),
        pytest.param({"host": "h", "replicas": 6.0}, {"replicas": 6}, id="int-from-whole-float"),
        pytest.param({"host": "h", "ratio": "0.5"}, {"ratio": 0.5}, id="float-from-str"),
        pytest.param({"host": "h", "ratio": 1}, {"ratio": 1.0}, id="float-from-int"),
        pytest.param({"host": "h", "dry": "YES"}, {"dry": True}, id="bool-yes"),
        pytest.param({"host": "h", "dry": "on"}, {"dry": True}, id="bool-on"),
        pytest.param({"host": "h", "dry": "1"}, {"dry": True}, id="bool-1"),
        pytest.param({"host": "h", "dry": "False"}, {"dry": False}, id="bool-false"),
        pytest.param({"host": "h", "dry": "off"}, {"dry": False}, id="bool-off"),
        pytest.param({"host": "h", "dry": True}, {"dry": True}, id="bool-typed"),
        pytest.param({"host": "h", "env": "prod"}, {"env": "prod"}, id="choice"),
        pytest.param({"host": "h", "env": "PROD"}, {"env": "prod"}, id="choice-case"),
        pytest.param({"host": "h", "port": "443"}, {"port": 443}, id="int-choice-from-str"),
        pytest.param({"host": "h", "port": 80}, {"port": 80}, id="int-choice-typed"),
        pytest.param({"host": "h", "token": "abc123"}, {"token": "abc123"}, id="secret"),
        pytest.param({"host": "h", "name": "web-api"}, {"name": "web-api"}, id="pattern"),
    ],
)
def test_coerce_values(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    result = params.coerce(make(SCHEMA), raw)
    for key, value in expected.items():
        assert result[key] == value
        assert type(result[key]) is type(value)


def test_coerce_applies_defaults_and_sets_absent_to_none() -> None:
    assert params.coerce(make(SCHEMA), {"host": "h"}) == {
        "host": "h",
        "replicas": 2,
        "ratio": None,
        "dry": False,
        "env": "staging",
        "port": None,
        "token": None,
        "name": None,
    }


def test_coerce_converts_defaults_to_their_type() -> None:
    pb = make({"n": {"type": "int", "default": "3"}, "on": {"type": "bool", "default": "yes"}})
    assert params.coerce(pb, {}) == {"n": 3, "on": True}


def test_none_counts_as_not_given() -> None:
    assert params.coerce(make(SCHEMA), {"host": "h", "replicas": None})["replicas"] == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({}, "missing required param host (string: the host to restart)", id="missing"),
        pytest.param({"host": ""}, "missing required param host", id="empty-required"),
        pytest.param(
            {"host": "h", "hots": "x"}, "unknown param 'hots' (did you mean host?)", id="unknown"
        ),
        pytest.param(
            {"host": "h", "replicas": "many"},
            "replicas: 'many' is not an int (expected a whole number, e.g. replicas=3)",
            id="int",
        ),
        pytest.param({"host": "h", "replicas": 2.5}, "replicas: 2.5 is not an int", id="int-frac"),
        pytest.param({"host": "h", "replicas": True}, "replicas: true is not an int", id="bool"),
        pytest.param(
            {"host": "h", "replicas": "0"}, "replicas: 0 is below the minimum 1", id="int-min"
        ),
        pytest.param(
            {"host": "h", "replicas": 11}, "replicas: 11 is above the maximum 10", id="int-max"
        ),
        pytest.param(
            {"host": "h", "ratio": "half"},
            "ratio: 'half' is not a number (expected a number, e.g. ratio=0.5)",
            id="float",
        ),
        pytest.param({"host": "h", "ratio": "nan"}, "ratio: 'nan' is not a number", id="nan"),
        pytest.param(
            {"host": "h", "ratio": "1.5"}, "ratio: 1.5 is above the maximum 1", id="float-max"
        ),
        pytest.param(
            {"host": "h", "dry": "maybe"},
            "dry: 'maybe' is not a bool (expected true or false, e.g. dry=true)",
            id="bool",
        ),
        pytest.param(
            {"host": "h", "env": "qa"}, "env: 'qa' is not one of prod, staging", id="choice"
        ),
        pytest.param(
            {"host": "h", "env": "prdo"},
            "env: 'prdo' is not one of prod, staging (did you mean prod?)",
            id="choice-hint",
        ),
        pytest.param({"host": "h", "port": "80x"}, "port: '80x' is not one of 80, 443", id="ints"),
        pytest.param(
            {"host": "h", "name": "Web API"},
            "name: 'Web API' does not match the pattern [a-z-]+",
            id="pattern",
        ),
        pytest.param({"host": ["a"]}, 'host: ["a"] is not a string', id="not-a-string"),
    ],
)
def test_coerce_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(SCHEMA), raw)
    assert excinfo.value.playbook == "demo"
    [error] = excinfo.value.errors
    assert error.startswith(message)


def test_coerce_collects_every_problem() -> None:
    raw = {"replicas": "x", "dry": "maybe", "env": "qa", "nope": "1"}
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(SCHEMA), raw)
    assert len(excinfo.value.errors) == 5
    assert str(excinfo.value).startswith("Bad parameters for 'demo': ")


def test_unknown_param_lists_declared_when_nothing_is_close() -> None:
    with pytest.raises(ParamError, match=r"unknown param 'zzz' \(this playbook takes host, "):
        params.coerce(make(SCHEMA), {"host": "h", "zzz": "1"})
    with pytest.raises(ParamError, match="this playbook takes no params"):
        params.coerce(make({}), {"zzz": "1"})


def test_secret_value_is_never_echoed() -> None:
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(SCHEMA), {"host": "h", "token": "HUNTER2"})
    assert "HUNTER2" not in str(excinfo.value)
    assert "token: the given value does not match the pattern" in str(excinfo.value)
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(SCHEMA), {"host": "h", "token": {"v": "HUNTER2"}})
    assert "HUNTER2" not in str(excinfo.value)


@pytest.mark.parametrize("value", ["x", "ab", "k1x"])
def test_a_secret_too_short_to_mask_is_refused_without_echoing_it(value: str) -> None:
    pb = make({"key": {"type": "secret"}})
    with pytest.raises(ParamError) as excinfo:
        params.coerce(pb, {"key": value})
    message = str(excinfo.value)
    assert f"key: the given value is {len(value)} character" in message
    assert "a secret needs at least 4" in message and repr(value) not in message
    assert params.coerce(pb, {"key": "k1x2"}) == {"key": "k1x2"}
    assert params.coerce(pb, {"key": ""}) == {"key": ""}  # empty hides nothing


def test_bad_default_is_reported_as_the_playbooks() -> None:
    with pytest.raises(ParamError, match=r"n: 'x' is not an int .*\(the playbook's default\)"):
        params.coerce(make({"n": {"type": "int", "default": "x"}}), {})


def test_coerce_value_raises_value_error() -> None:
    spec = make(SCHEMA).params["replicas"]
    assert params.coerce_value("replicas", spec, "7") == 7
    with pytest.raises(ValueError, match="replicas: 'x' is not an int"):
        params.coerce_value("replicas", spec, "x")


def test_secret_names_and_masked() -> None:
    pb = make(SCHEMA)
    assert paramsecrets.secret_names(pb) == {"token"}
    values = params.coerce(pb, {"host": "h", "token": "abc123"})
    shown = paramsecrets.masked(pb, values)
    assert shown["token"] == "***"
    assert shown["host"] == "h"
    assert paramsecrets.masked(pb, {"token": None}) == {"token": None}


def test_describe() -> None:
    assert params.describe(make(SCHEMA)) == [
        "host (string; required) - the host to restart",
        "replicas (int; default 2; 1..10)",
        "ratio (float; optional; 0..1)",
        "dry (bool; default false)",
        "env (choice: prod, staging; default staging)",
        "port (choice: 80, 443; optional)",
        "token (secret; optional; pattern [a-z0-9]{6,})",
        "name (string; optional; pattern [a-z-]+)",
    ]


def test_describe_hides_secret_defaults() -> None:
    lines = params.describe(make({"key": {"type": "secret", "default": "topsecret"}}))
    assert lines == ["key (secret; default ***)"]


def test_the_stored_definition_holds_no_secret_default() -> None:
    pb = Playbook.model_validate(
        {
            "name": "demo",
            "params": {
                "token": {"type": "secret", "default": "dflt-secret"},
                "host": {"default": "web-1"},
            },
            "triggers": [
                {
                    "schedule": {
                        "cron": "0 3 * * *",
                        "params": {"token": "cron-secret", "host": "h"},
                    }
                },
                {"alert": {"params": {"token": "{{ alert.labels.key }}"}}},
            ],
            "steps": [{"id": "a", "action": "log"}],
        }
    )
    stored = paramsecrets.stored_definition(pb)
    assert stored["params"] == {
        "token": {"type": "secret", "default": "***"},
        "host": {"default": "web-1"},
    }
    assert stored["triggers"][0]["schedule"]["params"] == {"token": "***", "host": "h"}
    assert stored["triggers"][1]["alert"]["params"] == {"token": "***"}
    assert "dflt-secret" not in repr(stored) and "cron-secret" not in repr(stored)
    assert pb.params["token"].default == "dflt-secret"  # the playbook itself is untouched


# --- list params -----------------------------------------------------------------------

LISTS: dict[str, Any] = {
    "hosts": {"type": "list", "required": True, "pattern": "[a-z0-9,.-]+"},
    "ports": {"type": "list", "items": "int", "default": [80, 443], "min": 1, "max": 3},
    "ratios": {"type": "list", "items": "float"},
    "flags": {"type": "list", "items": "bool"},
    "envs": {"type": "list", "choices": ["prod", "staging"], "default": "staging"},
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"hosts": "a,b,c"}, {"hosts": ["a", "b", "c"]}, id="commas"),
        pytest.param({"hosts": " a , b,c "}, {"hosts": ["a", "b", "c"]}, id="blanks-trimmed"),
        pytest.param({"hosts": "web-1"}, {"hosts": ["web-1"]}, id="one"),
        pytest.param({"hosts": '["a,b", "c"]'}, {"hosts": ["a,b", "c"]}, id="json-text"),
        pytest.param({"hosts": ["a", " b "]}, {"hosts": ["a", "b"]}, id="json-list"),
        pytest.param({"hosts": "h", "ports": "22, 8080"}, {"ports": [22, 8080]}, id="int-items"),
        pytest.param({"hosts": "h", "ports": [22.0]}, {"ports": [22]}, id="int-whole-float"),
        pytest.param({"hosts": "h", "ratios": "0.5,1"}, {"ratios": [0.5, 1.0]}, id="float-items"),
        pytest.param({"hosts": "h", "flags": "yes,off"}, {"flags": [True, False]}, id="bools"),
        pytest.param(
            {"hosts": "h", "envs": "PROD,staging"}, {"envs": ["prod", "staging"]}, id="ch"
        ),
        pytest.param({"hosts": "h", "ratios": ""}, {"ratios": []}, id="empty-optional"),
        pytest.param({"hosts": "h", "ratios": "[]"}, {"ratios": []}, id="empty-json"),
        pytest.param({"hosts": "h"}, {"ports": [80, 443], "envs": ["staging"]}, id="defaults"),
    ],
)
def test_coerce_lists(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    result = params.coerce(make(LISTS), raw)
    for key, value in expected.items():
        assert result[key] == value
        assert [type(v) for v in result[key]] == [type(v) for v in value]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({}, "missing required param hosts (list), e.g. hosts=a,b", id="missing"),
        pytest.param({"hosts": ""}, "missing required param hosts", id="empty-required"),
        pytest.param({"hosts": []}, "missing required param hosts", id="empty-list-required"),
        pytest.param(
            {"hosts": "a,,b"},
            "hosts: item 2 is empty (separate items with one comma: hosts=a,b,c)",
            id="empty-item",
        ),
        pytest.param({"hosts": "a,"}, "hosts: item 2 is empty", id="trailing-comma"),
        pytest.param({"hosts": ["a", None]}, "hosts: item 2 is empty", id="null-item"),
        pytest.param({"hosts": [["a"]]}, "hosts: item 1 is not a single value", id="nested-list"),
        pytest.param(
            {"hosts": '["a", "b"'},
            "hosts: '[\"a\", \"b\"' is not a JSON list (Expecting ',' delimiter",
            id="bad-json",
        ),
        pytest.param(
            {"hosts": 5},
            "hosts: 5 is not a list (expected items separated by commas, e.g. hosts=a,b,c",
            id="not-a-list",
        ),
        pytest.param(
            {"hosts": "a,B c"},
            "hosts: item 2: 'B c' does not match the pattern",
            id="pattern-per-item",
        ),
        pytest.param(
            {"hosts": "h", "ports": "80,http"},
            "ports: item 2: 'http' is not an int",
            id="int-item",
        ),
        pytest.param(
            {"hosts": "h", "envs": "prod,qa"},
            "envs: item 2: 'qa' is not one of prod, staging",
            id="choice-per-item",
        ),
        pytest.param(
            {"hosts": "h", "ports": []},
            "ports: 0 items given, fewer than the minimum 1 item",
            id="min-items",
        ),
        pytest.param(
            {"hosts": "h", "ports": "1,2,3,4"},
            "ports: 4 items given, more than the maximum 3 items",
            id="max-items",
        ),
    ],
)
def test_coerce_list_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(LISTS), raw)
    [error] = excinfo.value.errors
    assert error.startswith(message)


def test_every_bad_item_is_named_at_once() -> None:
    with pytest.raises(ParamError) as excinfo:
        params.coerce(make(LISTS), {"hosts": "h", "ports": "x,80,,y"})
    [error] = excinfo.value.errors
    assert "item 1: 'x'" in error and "item 3 is empty" in error and "item 4: 'y'" in error


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"type": "list", "items": "choice"}, "a list's `items` is one of", id="items"),
        pytest.param({"type": "string", "items": "int"}, "`items` is for list params", id="str"),
        pytest.param({"type": "list", "min": 1.5}, "a list's `min` counts its items", id="min"),
        pytest.param({"type": "list", "max": -1}, "a list's `max` counts its items", id="max"),
    ],
)
def test_a_list_param_is_declared_sensibly(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make({"p": spec})


@pytest.mark.parametrize(
    ("value", "typed"),
    [
        pytest.param(["a", "b"], "a,b", id="plain"),
        pytest.param(["a,b", "c"], '["a,b", "c"]', id="comma-in-item"),
        pytest.param(["[x]", "c"], '["[x]", "c"]', id="bracket-first"),
        pytest.param([" a"], '[" a"]', id="blank-kept"),
        pytest.param([], "[]", id="empty"),
        pytest.param([80, True], "80,true", id="typed-items"),
        pytest.param("a b", "a b", id="not-a-list"),
    ],
)
def test_text_reads_back_the_same(value: Any, typed: str) -> None:
    assert params.text(value) == typed
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        spec = make({"p": {"type": "list"}}).params["p"]
        assert params.coerce_value("p", spec, typed) == [v.strip() for v in value]


def test_describe_lists() -> None:
    assert params.describe(make(LISTS)) == [
        "hosts (list; required; pattern [a-z0-9,.-]+)",
        "ports (list of int; default 80,443; 1..3 items)",
        "ratios (list of float; optional)",
        "flags (list of bool; optional)",
        "envs (list, each one of prod, staging; default staging)",
    ]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("[" * 100_000, "nested too deep"),
        ('["a\\u0000b"]', "NUL"),
        ('["\\ud800x"]', "surrogate"),
        ("[]", "missing required param hosts"),
        (",".join(["h"] * 5000), "more than 1,000 items"),
        (["h"] * 2000, "more than 1,000 items"),
        ("[" + "9" * 5000 + "]", "too long to read"),
    ],
    ids=["deep", "nul", "surrogate", "empty-json", "long-text", "long-list", "huge-number"],
)
def test_a_list_param_refuses_what_it_cannot_hold(value: Any, needle: str) -> None:
    pb = Playbook.model_validate(
        {
            "name": "p",
            "params": {"hosts": {"type": "list", "required": True}},
            "steps": [{"id": "a", "action": "log"}],
        }
    )
    with pytest.raises(ParamError, match="hosts") as caught:
        params.coerce(pb, {"hosts": value})
    assert needle in str(caught.value), str(caught.value)


def _with(action: str) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "big",
            "params": {"a": {}, "b": {}},
            "steps": [{"id": "first", "action": "log"}, {"id": "go", "action": action}],
        }
    )


def test_params_an_ssh_command_line_cannot_carry_are_refused_at_start() -> None:
    """Each param fits its own variable, but an ssh step carries all of them in one
    command line, which the remote shell gets as one argument (MAX_ARG_STRLEN)."""
    half = "x" * 70_000
    assert params.coerce(_with("shell"), {"a": half, "b": half}) == {"a": half, "b": half}
    assert params.coerce(_with("log"), {"a": half * 2, "b": ""})["a"] == half * 2
    with pytest.raises(ParamError) as refused:
        params.coerce(_with("ssh"), {"a": half, "b": half})
    assert refused.value.errors == [
        f"the params take {2 * len(f'PARAM_A={half} '):,} bytes of ssh step 'go''s command "
        "line, over the 131,072 bytes (128 KiB) the kernel lets one variable or argument "
        "take (MAX_ARG_STRLEN), so it could not start: pass a smaller value, such as a path "
        "or a URL to the data"
    ]
    with pytest.raises(
        ParamError, match=r"^Bad parameters for 'big': a: 140,009 bytes as \$PARAM_A"
    ):
        params.coerce(_with("ssh"), {"a": half * 2, "b": ""})
