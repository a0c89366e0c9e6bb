"""Properties of everything that reads outside input without a server in between: the chat
grammar, the playbook loader and validator, param coercion and every webhook parser.

The rule they share: random and mutated input is answered with Baton's own error (a
``BatonError`` with a message a person can act on) or a result, never with any other
exception. Mutations start from real inputs (the fixtures Slack and the alert senders
send, a working playbook), so the generator reaches the deep branches, not only the
"not a mapping" door."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import grammar
from bot.alerts import parsers
from engine.actions.registry import Registry
from engine.errors import BatonError
from engine.playbooks import model as playbook
from engine.playbooks import params as paramlib
from engine.playbooks import validate
from engine.playbooks.model import ITEM_TYPES, Param, ParamType, Playbook

FIXTURES = Path(__file__).parent.parent / "fakes" / "alerts"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as chat and webhooks deliver it, lone surrogates included (JSON can carry them).
TEXT = st.text(st.characters(codec=None), max_size=60)
WORDS = st.sampled_from(
    [
        "run",
        "status",
        "cancel",
        "retry",
        "approve",
        "reject",
        "schedule",
        "unschedule",
        "history",
        "alerts",
        "help",
        "describe",
        "list",
        "schedules",
        "in",
        "at",
        "every",
        "--dry-run",
        "x=1",
        "a=",
        "=b",
        '"',
        "'",
        "\\",
        "#",
        "r-123",
        "*",
        "\u0000",
        "\ud800",
        "10m",
        "cron",
        "0 * * * *",
    ]
)


@SETTINGS
@given(st.one_of(TEXT, st.lists(st.one_of(WORDS, TEXT), max_size=8).map(" ".join)))
def test_grammar_parses_or_explains(text: str) -> None:
    try:
        command = grammar.parse(text)
    except BatonError as exc:  # CommandError, or ParamError for a key=value that is not one
        assert str(exc).strip(), "a refusal must say what is wrong"
        return
    # a parsed command can be shown and named without failing
    assert isinstance(grammar.verb_of(command), str)
    assert isinstance(grammar.target_of(command), str)
    assert isinstance(grammar.shown_as_text(command), str)


# JSON values of every shape, with the floats JSON parsers accept (NaN, Infinity).
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*here, i))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    out = copy.copy(value)
    out[path[0]] = _replace(value[path[0]], path[1:], new)
    return out


@st.composite
def mutated(draw: st.DrawFn, original: Any) -> Any:
    """``original`` with a few of its values (anywhere in the tree) replaced by random JSON."""
    value = original
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(_paths(value)))
        value = _replace(value, path, draw(JSON))
    return value


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def _check_parsed(parsed: parsers.Parsed) -> None:
    for alert in parsed.alerts:
        assert alert.fingerprint
        assert alert.status in ("firing", "resolved")
    for rejected in parsed.rejected:
        assert rejected.reason.strip()


PROMETHEUS = [
    _fixture(name)
    for name in (
        "alertmanager_firing.json",
        "alertmanager_resolved.json",
        "alertmanager_mixed_truncated.json",
        "grafana_firing.json",
        "grafana_resolved.json",
    )
]
PAGERDUTY = [
    _fixture(name)
    for name in (
        "pagerduty_incident_triggered.json",
        "pagerduty_incident_resolved.json",
        "pagerduty_ping.json",
    )
]
GENERIC = [_fixture("generic_example.json")]


@SETTINGS
@given(st.one_of(JSON, st.sampled_from(PROMETHEUS).flatmap(mutated)))
def test_prometheus_family_never_raises(body: Any) -> None:
    _check_parsed(parsers.alertmanager(body))
    _check_parsed(parsers.grafana(body))


@SETTINGS
@given(st.one_of(JSON, st.sampled_from(PAGERDUTY).flatmap(mutated)))
def test_pagerduty_never_raises(body: Any) -> None:
    _check_parsed(parsers.pagerduty(body))


MAPPINGS = st.builds(
    parsers.GenericMapping,
    alerts=st.one_of(st.none(), st.sampled_from(["alerts", "data.items", "0", "x.1.y"])),
    fingerprint=st.sampled_from(["fingerprint", "id", "x.0", ""]),
    status=st.sampled_from(["status", "state", "a.b"]),
)


@SETTINGS
@given(st.one_of(JSON, st.sampled_from(GENERIC).flatmap(mutated)), MAPPINGS)
def test_generic_never_raises(body: Any, mapping: parsers.GenericMapping) -> None:
    _check_parsed(parsers.generic(body, mapping))


CHAT_RULES = [
    parsers.ChatRule(
        channel="#alerts",
        pattern=r"\[(?P<status>FIRING|RESOLVED)\] (?P<alertname>\w+) on (?P<instance>\S+)",
        fingerprint="{alertname}:{instance}",
    ),
    parsers.ChatRule(channel="C0ALERTS", pattern=r"(?P<summary>.+)", fingerprint="{summary}"),
]


@SETTINGS
@given(
    st.one_of(
        TEXT,
        st.builds(
            lambda s, a, i: f"[{s}] {a} on {i}",
            st.sampled_from(["FIRING", "RESOLVED", "firing"]),
            TEXT,
            TEXT,
        ),
    ),
    st.sampled_from(["C0ALERTS", "C0OTHER"]),
)
def test_chat_alerts_never_raise(text: str, channel: str) -> None:
    _check_parsed(parsers.chat(text, channel, CHAT_RULES, channel_name="alerts"))


GOOD_PLAYBOOK: dict[str, Any] = {
    "name": "deploy",
    "description": "Deploy a version.",
    "params": {
        "env": {"type": "choice", "choices": ["staging", "prod"], "required": True},
        "version": {"type": "string", "pattern": "v[0-9.]+", "default": "v1"},
        "n": {"type": "int", "default": 2, "min": 1, "max": 10},
    },
    "concurrency": {"key": "{{ params.env }}", "limit": 1},
    "steps": [
        {"id": "check", "action": "log", "with": {"message": "{{ params.version }}"}},
        {
            "id": "ship",
            "action": "shell",
            "needs": ["check"],
            "when": "params.env == 'prod'",
            "retry": {"attempts": 3, "backoff": "exponential", "delay": "1s"},
            "timeout": "5m",
            "with": {"script": 'echo "$PARAM_VERSION"'},
        },
    ],
    "finally": [{"id": "tell", "action": "log", "with": {"message": "done"}}],
}


def _registry() -> Registry:
    return Registry.from_entry_points()


REGISTRY = _registry()


def _load(text: str) -> None:
    try:
        pb, lines = playbook.load_text(text, "pb.yaml")
    except BatonError as exc:
        assert str(exc).strip()
        return
    for problem in validate.validate(pb, lines, "pb.yaml", REGISTRY):
        assert problem.message.strip()


@SETTINGS
@given(st.sampled_from([GOOD_PLAYBOOK]).flatmap(mutated))
def test_mutated_playbooks_load_or_explain(data: Any) -> None:
    try:
        text = yaml.safe_dump(data, allow_unicode=True)
    except yaml.YAMLError:
        return  # not a playbook anyone could write
    _load(text)


YAML_BITS = st.sampled_from(
    [
        "name: x\n",
        "steps:\n",
        "  - id: a\n",
        "    action: log\n",
        "    with: {message: hi}\n",
        "&a [1, *a]\n",
        "x: &b {k: v}\ny: *b\n",
        "- *nope\n",
        "!!python/object:os.system {}\n",
        "? [a]\n: b\n",
        "steps: [{id: '{{', action: shell}]\n",
        "params: {p: {type: int, default: '{{ 1 }}'}}\n",
        "\t",
        "%YAML 1.1\n---\n",
        "\u0000",
        "key: '\ud800'\n",
    ]
)


@SETTINGS
@given(st.one_of(TEXT, st.lists(st.one_of(YAML_BITS, TEXT), max_size=8).map("".join)))
def test_random_yaml_loads_or_explains(text: str) -> None:
    _load(text)


CHOICES: list[Any] = ["a", "b", 1, 2.5, True]


def _spec(kind: ParamType) -> st.SearchStrategy[Param]:
    """A param of ``kind``; a list's ``min``/``max`` count items (whole, not negative)."""
    listed = kind is ParamType.LIST
    return st.builds(
        Param,
        type=st.just(kind),
        required=st.booleans(),
        choices=st.sampled_from([None, CHOICES]) if listed else st.just(CHOICES),
        pattern=st.sampled_from([None, "v[0-9]+", "[a-z]*"]),
        min=st.sampled_from([None, 0.0, 2.0] if listed else [None, 0.0, -1e308]),
        max=st.sampled_from([None, 3.0, 1e308] if listed else [None, 10.0, math.inf]),
        items=st.sampled_from([None, *ITEM_TYPES]) if listed else st.none(),
    )


SPEC = st.sampled_from(list(ParamType)).flatmap(_spec)
RAW = st.one_of(
    JSON,
    st.sampled_from(["1", "1.5", "nan", "inf", "-0", "true", "no", "", "v1"]),
    st.sampled_from(["a,b", " a , 1", "a,,b", "a,", "[1,", '["x", 2]', "[]", "[[1]]"]),
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["p", "q", "tokn", "\ud800"]), RAW, max_size=3), SPEC)
def test_param_coercion_accepts_or_explains(raw: dict[str, Any], spec: Param) -> None:
    pb = Playbook.model_validate(
        {"name": "pb", "params": {"p": spec.model_dump()}, "steps": [{"id": "a", "action": "log"}]}
    )
    try:
        values = paramlib.coerce(pb, raw)
    except BatonError as exc:
        assert str(exc).strip()
        return
    assert set(values) == {"p"}


@SETTINGS
@given(st.lists(st.one_of(WORDS, TEXT), max_size=6))
def test_param_assignments_parse_or_explain(words: list[str]) -> None:
    try:
        out = paramlib.parse_assignments(words, "pb")
    except BatonError as exc:
        assert str(exc).strip()
        return
    assert all(isinstance(k, str) for k in out)


def test_the_mutation_base_is_a_good_playbook() -> None:
    """The mutations above start from a playbook with no problem, so what they find is
    the mutation's doing."""
    pb, lines = playbook.load_text(yaml.safe_dump(GOOD_PLAYBOOK), "pb.yaml")
    assert validate.validate(pb, lines, "pb.yaml", REGISTRY) == []
